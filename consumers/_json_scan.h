/* Is this exactly one JSON object that orjson.loads accepts?  Without
 * building it: the consumer's JSON formatter only needs to know that a record
 * will not make a broken line, and orjson.loads builds a whole dict for that.
 *
 * is_json_object(data: bytes) -> bool
 *
 * Contract: True only if orjson.loads(data) returns a dict, i.e. data is one
 * JSON object (RFC 8259, strict) with nothing but JSON whitespace around it,
 * as orjson (3.x) reads it:
 *   - strings: strict UTF-8 (no overlongs, no UTF-8-encoded surrogates,
 *     nothing above U+10FFFF), no raw byte below 0x20, only the eight
 *     one-letter escapes and \uXXXX, a \u high surrogate immediately followed
 *     by a \u low one, never a lone low surrogate;
 *   - numbers: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?  orjson reads
 *     any of them (big ints become floats) but refuses one that overflows a
 *     double to infinity, so a number that might be 1e308 or more is False;
 *   - true, false, null; no trailing commas, no NaN, no BOM.  Duplicate keys
 *     are fine (orjson keeps the last).
 * False means "not sure": the caller runs orjson.loads, which decides and
 * words the error.  So anything unusual may be False (nesting deeper than
 * MAX_DEPTH, numbers near the double range); ordinary records must be True.
 *
 * One pass, no allocation, no recursion (a fixed stack of open containers),
 * and every read is checked against the end: records come from the network.
 * tests/consumers/test_json_check.py checks it against orjson.
 */
#ifndef CONSUMERS_JSON_SCAN_H
#define CONSUMERS_JSON_SCAN_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* orjson's own limit is 1024 levels; anything deeper than ours goes to it. */
#define MAX_DEPTH 128
/* A number below 10**308 is finite as a double (DBL_MAX is 1.79e308). */
#define MAX_DECIMAL_DIGITS 308
/* Exponents are clamped here while read: far beyond anything that matters,
 * small enough that digit counts plus exponents cannot overflow. */
#define EXPONENT_CLAMP 1000000

typedef const unsigned char *Ptr;

/* What a byte means inside a string.  UTF-8 lead bytes are split by the range
 * their second byte must fall in (Unicode table 3-7, well-formed UTF-8). */
enum {
    C_PLAIN = 0, /* printable ASCII, 0x7F included: nothing to check */
    C_QUOTE,
    C_ESCAPE,
    C_BAD, /* control characters, continuation bytes, C0, C1, F5..FF */
    C_LEAD2,    /* C2..DF 80..BF */
    C_LEAD_E0,  /* E0 A0..BF 80..BF (no overlongs) */
    C_LEAD3,    /* E1..EC, EE..EF 80..BF 80..BF */
    C_LEAD_ED,  /* ED 80..9F 80..BF (no surrogates D800..DFFF) */
    C_LEAD_F0,  /* F0 90..BF 80..BF 80..BF (no overlongs) */
    C_LEAD4,    /* F1..F3 80..BF 80..BF 80..BF */
    C_LEAD_F4,  /* F4 80..8F 80..BF 80..BF (nothing above U+10FFFF) */
};

static const struct {
    unsigned char length, low, high; /* sequence length, range of its second byte */
} LEADS[] = {
    [C_LEAD2] = {2, 0x80, 0xBF},   [C_LEAD_E0] = {3, 0xA0, 0xBF}, [C_LEAD3] = {3, 0x80, 0xBF},
    [C_LEAD_ED] = {3, 0x80, 0x9F}, [C_LEAD_F0] = {4, 0x90, 0xBF}, [C_LEAD4] = {4, 0x80, 0xBF},
    [C_LEAD_F4] = {4, 0x80, 0x8F},
};

static unsigned char string_class[256]; /* filled once by init_classes */

static void json_scan_init(void) {
    for (int b = 0; b < 256; b++) {
        unsigned char c = C_BAD;
        if (b == '"')
            c = C_QUOTE;
        else if (b == '\\')
            c = C_ESCAPE;
        else if (b >= 0x20 && b < 0x80)
            c = C_PLAIN;
        else if (b >= 0xC2 && b <= 0xDF)
            c = C_LEAD2;
        else if (b == 0xE0)
            c = C_LEAD_E0;
        else if (b == 0xED)
            c = C_LEAD_ED;
        else if (b >= 0xE1 && b <= 0xEF)
            c = C_LEAD3;
        else if (b == 0xF0)
            c = C_LEAD_F0;
        else if (b >= 0xF1 && b <= 0xF3)
            c = C_LEAD4;
        else if (b == 0xF4)
            c = C_LEAD_F4;
        string_class[b] = c;
    }
}

static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static inline int is_space(unsigned char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

static inline Ptr skip_space(Ptr p, Ptr end) {
    while (p < end && is_space(*p)) p++;
    return p;
}

/* The four hex digits at p (the caller made sure there are four), or -1. */
static long hex4(Ptr p) {
    long value = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i], lower = c | 0x20;
        int digit;
        if (is_digit(c))
            digit = c - '0';
        else if (lower >= 'a' && lower <= 'f')
            digit = lower - 'a' + 10;
        else
            return -1;
        value = value << 4 | digit;
    }
    return value;
}

/* The bytes of w that are not C_PLAIN (below 0x20, at or above 0x80, '"'
 * or '\\'), as their high bits.  The usual bit tricks: (x - 0x01..) & ~x
 * sets a byte's high bit where x has a zero byte, x ^ '"'.. turns quotes
 * into zeros, and (w - 0x20..) & ~w does the same for bytes below 0x20.  A
 * borrow may also mark bytes above a marked one, never below: the lowest
 * mark is exact, which is all scan_string uses. */
static inline uint64_t special8(uint64_t w) {
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
    uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');
    uint64_t found = ((w - ones * 0x20) & ~w) | ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash) | w;
    return found & high;
}

/* The index of the first byte that special8 marked, where the first byte in
 * memory is the lowest (little-endian); elsewhere the byte loop finds it. */
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define FIRST_MARKED(special) (__builtin_ctzll(special) >> 3)
#endif

/* p is just past the opening quote; returns just past the closing one, or
 * NULL.  Sets *names_logrelay (where not NULL) if the string's last eight
 * bytes, as written, are logrelay (see json_object_check). */
static Ptr scan_string(Ptr p, Ptr end, int *names_logrelay) {
    Ptr start = p;
    for (;;) {
        /* Most of a record is plain ASCII text: eight bytes at a time
         * (memcpy: no alignment assumed), straight to the first byte that
         * is not plain (its index is the lowest mark's, little-endian). */
        while (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            uint64_t special = special8(w);
            if (special) {
#ifdef FIRST_MARKED
                p += FIRST_MARKED(special);
#endif
                break;
            }
            p += 8;
        }
        while (p < end && string_class[*p] == C_PLAIN) p++;
        if (p >= end) return NULL;
        int c = string_class[*p];
        if (c == C_QUOTE) {
            if (names_logrelay != NULL && p - start >= 8 && memcmp(p - 8, "logrelay", 8) == 0) *names_logrelay = 1;
            return p + 1;
        }
        if (c == C_ESCAPE) {
            if (end - p < 2) return NULL;
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                continue;
            case 'u':
                break;
            default:
                return NULL;
            }
            long unit = end - p >= 6 ? hex4(p + 2) : -1;
            if (unit < 0) return NULL;
            p += 6;
            if (unit >= 0xDC00 && unit <= 0xDFFF) return NULL; /* a low surrogate with no high one */
            if (unit >= 0xD800 && unit <= 0xDBFF) {
                /* orjson wants the low half right here, as another \u escape */
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u') return NULL;
                long low = hex4(p + 2);
                if (low < 0xDC00 || low > 0xDFFF) return NULL;
                p += 6;
            }
            continue;
        }
        if (c == C_BAD) return NULL;
        /* A UTF-8 lead byte: the second byte's range depends on the lead,
         * the rest are plain continuation bytes. */
        Py_ssize_t length = LEADS[c].length;
        if (end - p < length || p[1] < LEADS[c].low || p[1] > LEADS[c].high) return NULL;
        for (Py_ssize_t i = 2; i < length; i++)
            if ((p[i] & 0xC0) != 0x80) return NULL;
        p += length;
    }
}

/* p is at '-' or a digit; returns just past the number, or NULL if it is not
 * one or might not be finite as a double (see MAX_DECIMAL_DIGITS).  What
 * follows is the caller's business ("01" is "0" then a stray "1"). */
static Ptr scan_number(Ptr p, Ptr end) {
    if (*p == '-') p++;
    if (p >= end || !is_digit(*p)) return NULL;
    /* The value is below 10**(integer_digits + exponent). */
    Py_ssize_t integer_digits = 0;
    if (*p == '0') {
        p++; /* "0" then a fraction: below 1, counts as no digits */
    } else {
        while (p < end && is_digit(*p)) p++, integer_digits++;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit(*p)) return NULL;
        while (p < end && is_digit(*p)) p++;
    }
    long exponent = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int negative = 0;
        if (p < end && (*p == '+' || *p == '-')) negative = *p++ == '-';
        if (p >= end || !is_digit(*p)) return NULL;
        for (; p < end && is_digit(*p); p++)
            if (exponent < EXPONENT_CLAMP) exponent = exponent * 10 + (*p - '0');
        /* Clamping a negative exponent only makes the number look bigger:
         * still a safe answer. */
        if (negative) exponent = -exponent;
    }
    if (integer_digits > MAX_DECIMAL_DIGITS - exponent) return NULL;
    return p;
}

/* 1 if [p, end) is one JSON object that orjson.loads accepts, 0 if not or
 * unsure (the contract at the top).  Where names_logrelay is not NULL, sets
 * it to 1 if some string (a name or a value) ends with the bytes logrelay
 * as written: in a valid object that includes every place where the bytes
 * "logrelay" (quotes included) occur, since inside a string the second
 * quote can only be the one that closes it.  The JSON lines renderer leaves
 * such records to the Python formatter, which merges its own "logrelay"
 * member by parsing. */
static int json_object_check(Ptr p, Ptr end, int *names_logrelay) {
    /* The open containers, innermost last: '{' or '['. */
    unsigned char open[MAX_DEPTH];
    int depth = 0;

    p = skip_space(p, end);
    if (p >= end || *p != '{') return 0;
    p++;
    open[depth++] = '{';

object_start: /* just past '{' */
    p = skip_space(p, end);
    if (p < end && *p == '}') goto closed;
member: /* a key, a colon and a value */
    if (p >= end || *p != '"') return 0;
    if (!(p = scan_string(p + 1, end, names_logrelay))) return 0;
    p = skip_space(p, end);
    if (p >= end || *p != ':') return 0;
    p++;
value:
    p = skip_space(p, end);
    if (p >= end) return 0;
    switch (*p) {
    case '{':
    case '[':
        if (depth == MAX_DEPTH) return 0;
        open[depth++] = *p++;
        if (open[depth - 1] == '{') goto object_start;
        p = skip_space(p, end);
        if (p < end && *p == ']') goto closed;
        goto value;
    case '"':
        p = scan_string(p + 1, end, names_logrelay);
        break;
    case 't':
        p = end - p >= 4 && memcmp(p, "true", 4) == 0 ? p + 4 : NULL;
        break;
    case 'f':
        p = end - p >= 5 && memcmp(p, "false", 5) == 0 ? p + 5 : NULL;
        break;
    case 'n':
        p = end - p >= 4 && memcmp(p, "null", 4) == 0 ? p + 4 : NULL;
        break;
    default:
        p = *p == '-' || is_digit(*p) ? scan_number(p, end) : NULL;
        break;
    }
    if (!p) return 0;
after_value: /* a comma or the close of the innermost container */
    p = skip_space(p, end);
    if (p >= end) return 0;
    if (*p == ',') {
        p = skip_space(p + 1, end);
        /* A trailing comma ("[1,]", "{...,}") fails in member/value. */
        if (open[depth - 1] == '{') goto member;
        goto value;
    }
    if (*p != (open[depth - 1] == '{' ? '}' : ']')) return 0;
closed: /* p is at the byte that closes open[depth - 1] */
    p++;
    if (--depth > 0) goto after_value;
    /* The top object is closed: only whitespace may follow. */
    return skip_space(p, end) == end;
}

#endif
