/* The JSON text of relay.decode._fast_path: strings escaped and floats formatted
 * as orjson writes them, measured once and then written into a buffer of the
 * exact size. */
#include "_fast_path.h"

static int pj_format_int(int64_t value, char *out);

/* Per byte: what it costs in a JSON string (orjson's escapes); 0 marks the
 * lead byte of a multi-byte UTF-8 sequence (or an invalid byte). */
static unsigned char json_cost[256];

void pj_init_json_cost(void) {
    for (int c = 0; c < 256; c++) json_cost[c] = c < 0x20 ? 6 : c < 0x80 ? 1 : 0;
    json_cost['"'] = json_cost['\\'] = 2;
    json_cost['\b'] = json_cost['\t'] = json_cost['\n'] = json_cost['\f'] = json_cost['\r'] = 2;
}

/* Strict UTF-8 check and the length of the JSON string body, or -1. */
/* Eight bytes that are printable ASCII other than '"' and '\\' (each costs
 * 1): checked as one word, the bulk of most strings. */
static int plain_word(const unsigned char *s) {
    uint64_t w;
    memcpy(&w, s, sizeof w);
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
#define HAS_ZERO_BYTE(x) (((x) - ones) & ~(x) & highs)
    uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');
    /* below 0x20: subtracting 0x20 borrows into the high bit of that byte */
    uint64_t control = (w - ones * 0x20) & ~w & highs;
    return !((w & highs) | control | HAS_ZERO_BYTE(quote) | HAS_ZERO_BYTE(backslash));
#undef HAS_ZERO_BYTE
}

Py_ssize_t pj_json_string_size(const unsigned char *s, Py_ssize_t size) {
    Py_ssize_t out = 0;
    Py_ssize_t i = 0;
    while (i < size) {
        if (size - i >= 8 && plain_word(s + i)) {
            out += 8;
            i += 8;
            continue;
        }
        unsigned char c = s[i];
        if (json_cost[c]) {
            out += json_cost[c];
            i++;
            continue;
        }
        Py_ssize_t n;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            cp = c & 0x07;
        } else {
            return -1;
        }
        if (size - i < n) return -1;
        for (Py_ssize_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return -1;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        /* overlong forms, surrogates (orjson refuses them) and beyond U+10FFFF */
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
            return -1;
        out += n;
        i += n;
    }
    return out;
}

/* orjson's text for a finite double: the shortest round-trip digits (as repr
 * finds them), positioned the way orjson does (checked against orjson on
 * random doubles by tests/relay/decode/test_fast_path.py). */
/* The shortest decimal that reads back as value, for 1 <= value < 2**52
 * (created, relativeCreated, most msecs), with integer arithmetic: value is
 * m * 2**e (m of 53 bits, -52 <= e <= -1) and every x strictly between
 * (2m-1) * 2**(e-1) and (2m+1) * 2**(e-1) rounds to it.  For f = 0, 1, ...
 * fractional digits, the first f whose grid has a point in that interval
 * gives the shortest digits; of its points, the one nearest to value (ties
 * to even), as repr chooses.  Whether the ends themselves round to value
 * never matters: they have 1-e fractional digits, value itself has at most
 * -e, so the search stops before a grid could hold an end.  Writes
 * the significant digits (no trailing zeros) and returns their count, with
 * *point the number of integer digits; -1 where this does not apply (the
 * caller asks PyOS_double_to_string).  tests/relay/decode/test_fast_path.py checks
 * it against repr on random and edge doubles. */
static const uint64_t POW10[18] = {
    1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL, 100000000ULL, 1000000000ULL,
    10000000000ULL, 100000000000ULL, 1000000000000ULL, 10000000000000ULL, 100000000000000ULL,
    1000000000000000ULL, 10000000000000000ULL, 100000000000000000ULL,
};

/* Whether the grid of multiples of 1/scale has a point strictly inside
 * (low, high) / 2**shift (see shortest_digits). */
static inline int grid_has_point(unsigned __int128 low, unsigned __int128 high, int shift, uint64_t scale) {
    /* in 128 bits: at fine grids, large values have more than 64 bits of digits */
    return ((low * scale) >> shift) + 1 <= ((high * scale) >> shift);
}

static int shortest_digits(double value, char *digits, int *point) {
    if (!(value >= 1.0 && value < 4503599627370496.0)) return -1;
    int e;
    double fraction = frexp(value, &e); /* value = fraction * 2**e, 0.5 <= fraction < 1 */
    uint64_t m = (uint64_t)ldexp(fraction, 53);
    e -= 53;
    if (e > -1 || e < -52 || m == ((uint64_t)1 << 52)) return -1; /* (an uneven interval at a power of two) */
    int shift = 1 - e; /* interval ends are (2m -+ 1) / 2**shift */
    typedef unsigned __int128 u128;
    u128 low = 2 * m - 1, mid = 2 * m, high = 2 * m + 1;
    u128 unit = (u128)1 << shift, half = unit >> 1;
    /* A grid that has a point in the interval passes that point on to every
     * finer grid: the smallest such f is found by bisection (created, with
     * seven fractional digits, took eight rounds one f after the other). */
    int f_low = 0, f_high = 17;
    if (!grid_has_point(low, high, shift, POW10[f_high])) return -1;
    while (f_low < f_high) {
        int f_mid = (f_low + f_high) / 2;
        if (grid_has_point(low, high, shift, POW10[f_mid]))
            f_high = f_mid;
        else
            f_low = f_mid + 1;
    }
    int f = f_low;
    u128 scale = POW10[f];
    u128 l = low * scale, h = high * scale, c = mid * scale;
    /* the grid points (multiples of 10**-f, as integers) inside the interval */
    uint64_t first = (uint64_t)(l >> shift) + 1, last = (uint64_t)(h >> shift);
    uint64_t n = (uint64_t)(c >> shift);
    u128 c_rest = c & (unit - 1);
    if (c_rest > half || (c_rest == half && (n & 1))) n += 1;
    if (n < first) n = first;
    if (n > last) n = last;
    char text[24];
    int size = 0;
    do {
        text[size++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    int integer_digits = size - f;
    int start = 0; /* text is reversed: trailing zeros come first */
    while (start < size - 1 && text[start] == '0') start++;
    int len = size - start;
    for (int k = 0; k < len; k++) digits[k] = text[size - 1 - k];
    *point = integer_digits;
    return len;
}

/* orjson's text for a finite double: the shortest round-trip digits (as repr
 * finds them), positioned the way orjson does (checked against orjson on
 * random doubles by tests/relay/decode/test_fast_path.py).  Writes at most
 * FLOAT_TEXT bytes to out, no NUL, and returns how many; -1 when out of
 * memory, -2 for a text longer than FLOAT_TEXT (none is: the caller bails). */
int pj_format_float(double value, char *out) {
    char buffer[FLOAT_SCRATCH];
    char digits[32];
    /* the longest text any branch below writes: a sign, "0." and four zeros,
     * or 16 integer digits and a point, every digit held, an exponent */
    _Static_assert(FLOAT_SCRATCH >= 1 + 16 + 2 + (int)sizeof digits + 6, "FLOAT_SCRATCH too small");
    char *o = buffer;
    int kk, len;
    const char *dg = digits;
    if (value == floor(value) && fabs(value) < 1e15 && (value != 0 || !signbit(value))) {
        /* integral (msecs is, often): its digits and ".0", without dtoa */
        int size = pj_format_int((int64_t)value, buffer);
        memcpy(buffer + size, ".0", 2);
        len = size + 2;
        goto copy;
    }
    len = shortest_digits(value, digits, &kk);
    if (len < 0) {
        char *repr = PyOS_double_to_string(value, 'r', 0, 0, NULL);
        if (repr == NULL) return -1;
        const char *r = repr;
        if (*r == '-') *o++ = *r++;
        int n = 0, point = -1, exponent = 0;
        for (; *r && *r != 'e'; r++) {
            if (*r == '.') point = n;
            else if (n < (int)sizeof digits - 1) digits[n++] = *r;
        }
        if (*r == 'e') exponent = atoi(r + 1);
        PyMem_Free(repr);
        if (point < 0) point = n;
        /* value = 0.DIGITS x 10^kk after stripping zeros on both ends */
        int start = 0;
        while (start < n - 1 && digits[start] == '0') start++;
        kk = point - start + exponent;
        int stop = n;
        while (stop > start + 1 && digits[stop - 1] == '0') stop--;
        len = stop - start;
        dg = digits + start;
        if (len == 1 && dg[0] == '0') {
            memcpy(o, "0.0", 3);
            o += 3;
            len = (int)(o - buffer);
            goto copy;
        }
    }
    if (kk > 0 && kk <= 16) {
        if (len <= kk) {
            memcpy(o, dg, (size_t)len);
            o += len;
            for (int k = len; k < kk; k++) *o++ = '0';
            *o++ = '.';
            *o++ = '0';
        } else {
            memcpy(o, dg, (size_t)kk);
            o += kk;
            *o++ = '.';
            memcpy(o, dg + kk, (size_t)(len - kk));
            o += len - kk;
        }
    } else if (kk > -5 && kk <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int k = 0; k < -kk; k++) *o++ = '0';
        memcpy(o, dg, (size_t)len);
        o += len;
    } else {
        *o++ = dg[0];
        if (len > 1) {
            *o++ = '.';
            memcpy(o, dg + 1, (size_t)(len - 1));
            o += len - 1;
        }
        /* the exponent of a double has at most 3 digits */
        int exponent = kk - 1;
        *o++ = 'e';
        *o++ = exponent > 0 ? '+' : '-';
        o += pj_format_int(exponent < 0 ? -exponent : exponent, o);
    }
    len = (int)(o - buffer);
copy:
    if (len > FLOAT_TEXT) return -2;
    memcpy(out, buffer, (size_t)len);
    return len;
}


static int pj_format_int(int64_t value, char *out) {
    char buffer[24];
    int n = 0;
    uint64_t magnitude = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
    do {
        buffer[n++] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    int len = 0;
    if (value < 0) out[len++] = '-';
    while (n) out[len++] = buffer[--n];
    return len;
}

/* What the Python walk charges a scalar at most (relay/decode/to_json.py): 24 for
 * a number, 8 for None or a bool; strings pay their length (code points, at
 * most their UTF-8 bytes) plus 2, or 3 as keys; containers 8. */
#define WALK_SCALAR_COST 24
#define WALK_CONTAINER_COST 8

/* The walk's visits (relay/decode/to_json.py): a container 2, a stand-in (a
 * datetime, a Decimal, a set) 4, a scalar 1 as an item of a sequence, a
 * dict's pair 1, its value's own if that is not a scalar. */
#define VISITS_CONTAINER 2
#define VISITS_STAND_IN 4

static int is_scalar(const Node *node) { return node->kind <= N_STR; }

/* JSON size of a node, into *walk_cost an upper bound of the walk's charge
 * and into *visits the walk's visits; -1 when it nests deeper than max_depth
 * (BAIL) or on error. */
Py_ssize_t pj_measure(Parser *p, int32_t index, int level, int max_depth, Py_ssize_t *walk_cost,
                      Py_ssize_t *visits) {
    Node *node = &p->nodes[index];
    switch (node->kind) {
    case N_NONE:
    case N_TRUE:
    case N_FALSE:
        *walk_cost += WALK_SCALAR_COST;
        return node->kind == N_FALSE ? 5 : 4;
    case N_INT: {
        char text[24];
        *walk_cost += WALK_SCALAR_COST;
        return pj_format_int(node->u.i, text);
    }
    case N_FLOAT:
        *walk_cost += WALK_SCALAR_COST;
        return node->text_size;
    case N_STR:
        *walk_cost += node->u.s.size + 3;
        return node->u.s.json_size + 2;
    case N_DATETIME:
    case N_DECIMAL: {
        /* a stand-in: the walk checks its depth and charges it as a container, plus its text */
        if (level > max_depth) return -1;
        char text[DATETIME_TEXT];
        Py_ssize_t size = node->kind == N_DECIMAL ? node->u.s.size : pj_format_datetime(node, text);
        *walk_cost += WALK_CONTAINER_COST + size + 2;
        *visits += VISITS_STAND_IN;
        return size + 2;
    }
    case N_LIST:
    case N_TUPLE:
    case N_DICT:
    case N_SET:
        break;
    default:
        return -1; /* a class, bytes, a time zone as a value: Python renders those */
    }
    if (level > max_depth || level > MAX_LEVELS) return -1;
    *walk_cost += WALK_CONTAINER_COST;
    *visits += node->kind == N_SET ? VISITS_STAND_IN : VISITS_CONTAINER;
    int dict = node->kind == N_DICT;
    /* brackets, and a separator between items; a dict's items come in pairs */
    Py_ssize_t size = 2 + (node->u.c.count > 0 ? node->u.c.count - 1 : 0);
    int position = 0;
    for (int32_t child = node->u.c.first; child >= 0; child = p->nodes[child].next, position++) {
        Py_ssize_t part = pj_measure(p, child, level + 1, max_depth, walk_cost, visits);
        if (part < 0) return -1;
        size += part;
        /* a key costs nothing of its own; a pair, or a scalar item, one visit */
        if (dict ? position & 1 : is_scalar(&p->nodes[child])) *visits += 1;
    }
    return size;
}

static char *write_string(const Parser *p, const Node *node, char *o) {
    const unsigned char *s = p->data + node->u.s.offset;
    Py_ssize_t size = node->u.s.size;
    *o++ = '"';
    if (node->u.s.json_size == size) {
        memcpy(o, s, (size_t)size);
        o += size;
    } else {
        static const char hex[] = "0123456789abcdef";
        for (Py_ssize_t i = 0; i < size; i++) {
            unsigned char c = s[i];
            if (c >= 0x20 && c != '"' && c != '\\') {
                *o++ = (char)c;
                continue;
            }
            *o++ = '\\';
            switch (c) {
            case '"': *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '\b': *o++ = 'b'; break;
            case '\t': *o++ = 't'; break;
            case '\n': *o++ = 'n'; break;
            case '\f': *o++ = 'f'; break;
            case '\r': *o++ = 'r'; break;
            default:
                memcpy(o, "u00", 3);
                o[3] = hex[c >> 4];
                o[4] = hex[c & 15];
                o += 5;
            }
        }
    }
    *o++ = '"';
    return o;
}

char *pj_write_node(const Parser *p, int32_t index, char *o) {
    const Node *node = &p->nodes[index];
    switch (node->kind) {
    case N_NONE: memcpy(o, "null", 4); return o + 4;
    case N_TRUE: memcpy(o, "true", 4); return o + 4;
    case N_FALSE: memcpy(o, "false", 5); return o + 5;
    case N_INT: return o + pj_format_int(node->u.i, o);
    case N_FLOAT: memcpy(o, node->u.text, (size_t)node->text_size); return o + node->text_size;
    case N_STR:
    case N_DECIMAL: /* canonical_decimal: nothing to escape */
        return write_string(p, node, o);
    case N_DATETIME:
        *o++ = '"';
        o += pj_format_datetime(node, o);
        *o++ = '"';
        return o;
    default: break;
    }
    int dict = node->kind == N_DICT;
    *o++ = dict ? '{' : '[';
    int position = 0;
    for (int32_t child = node->u.c.first; child >= 0; child = p->nodes[child].next, position++) {
        if (position) *o++ = dict && (position & 1) ? ':' : ',';
        o = pj_write_node(p, child, o);
    }
    *o++ = dict ? '}' : ']';
    return o;
}

