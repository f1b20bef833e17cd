/* The well-known classes of relay.decode._fast_path: the value types log records
 * carry most (datetime, date, Decimal, set), rebuilt exactly as
 * relay/decode/inert.py rebuilds them.
 *
 * A GLOBAL (or STACK_GLOBAL) naming one of these pushes an N_CLASS node; a
 * REDUCE of it with exactly the arguments its pickles carry becomes the value
 * relay/decode/inert.py rebuilds, rendered as relay/decode/to_json.py renders it:
 * datetime and date as ISO 8601 strings, Decimal as its digits, set and
 * frozenset as a list in the pickle's order.  Any other argument shape
 * (which the Python path may still render, as an opaque object) is BAIL. */
#include "_fast_path.h"

static const struct {
    const char *module, *name;
    int code;
} known_classes[] = {
    {"datetime", "datetime", C_DATETIME}, {"datetime", "date", C_DATE},
    {"datetime", "timezone", C_TIMEZONE}, {"datetime", "timedelta", C_TIMEDELTA},
    {"decimal", "Decimal", C_DECIMAL},   {"_pydecimal", "Decimal", C_DECIMAL},
    {"_codecs", "encode", C_ENCODE},     {"codecs", "encode", C_ENCODE},
    /* protocols 0-2 spell builtins "__builtin__"; the unpickler translates it */
    {"builtins", "set", C_SET},          {"__builtin__", "set", C_SET},
    {"builtins", "frozenset", C_FROZENSET}, {"__builtin__", "frozenset", C_FROZENSET},
};

int pj_push_class(Parser *p, const unsigned char *module, Py_ssize_t module_size, const unsigned char *name,
                  Py_ssize_t name_size) {
    for (size_t k = 0; k < sizeof known_classes / sizeof known_classes[0]; k++) {
        if (strlen(known_classes[k].module) == (size_t)module_size &&
            strlen(known_classes[k].name) == (size_t)name_size &&
            memcmp(known_classes[k].module, module, (size_t)module_size) == 0 &&
            memcmp(known_classes[k].name, name, (size_t)name_size) == 0) {
            int32_t index = pj_new_node(p, N_CLASS);
            if (index < 0) return index;
            p->nodes[index].u.i = known_classes[k].code;
            return pj_push(p, index);
        }
    }
    return BAIL; /* any other class: the restricted unpickler decides */
}

/* The bytes a datetime state holds: raw bytes (protocol 3+), or the str that
 * _codecs.encode(str, "latin1") turns into bytes (protocols 0-2). */
static int state_bytes(const Parser *p, const Node *node, unsigned char *out, int want) {
    /* only string-like nodes have an offset into the pickle: check the kind first */
    if (node->kind != N_BYTES && node->kind != N_LATIN1) return -1;
    const unsigned char *s = p->data + node->u.s.offset;
    Py_ssize_t size = node->u.s.size;
    if (node->kind == N_BYTES) {
        if (size != want) return -1;
        memcpy(out, s, (size_t)want);
        return 0;
    }
    int n = 0;
    /* valid UTF-8 (push_string checked): code points below 256 take 1 or 2 bytes */
    for (Py_ssize_t i = 0; i < size; n++) {
        if (n == want) return -1;
        if (s[i] < 0x80) {
            out[n] = s[i];
            i += 1;
        } else if ((s[i] == 0xC2 || s[i] == 0xC3) && i + 1 < size) {
            out[n] = (unsigned char)(((s[i] & 0x1F) << 6) | (s[i + 1] & 0x3F));
            i += 2;
        } else {
            return -1; /* beyond latin-1: the Python path keeps it opaque */
        }
    }
    return n == want ? 0 : -1;
}

static int days_in_month(int year, int month) {
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    return month == 2 && leap ? 29 : days[month - 1];
}

/* Decimal(text) when str() gives the text back: [-](0|[1-9][0-9]*)[.[0-9]+],
 * and for 0.xxx at most 6 decimals (beyond, str() may switch to exponent
 * notation: Decimal("0.0000001") is "1E-7"). */
static int canonical_decimal(const unsigned char *s, Py_ssize_t size) {
    Py_ssize_t i = size > 0 && s[0] == '-' ? 1 : 0;
    if (i == size) return 0;
    int zero = s[i] == '0';
    if (zero) {
        i++;
    } else {
        if (s[i] < '1' || s[i] > '9') return 0;
        while (i < size && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i == size) return 1;
    if (s[i++] != '.') return 0;
    Py_ssize_t decimals = size - i;
    if (decimals < 1 || (zero && decimals > 6)) return 0;
    for (; i < size; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

/* The n-th item (0-based) of a container node, or -1. */
static int32_t item(const Parser *p, const Node *container, int n) {
    int32_t child = container->u.c.first;
    while (child >= 0 && n-- > 0) child = p->nodes[child].next;
    return child;
}

/* REDUCE: class and argument tuple on the stack become the rebuilt value. */
int pj_reduce(Parser *p) {
    if (!pj_has_items(p, 2)) return BAIL;
    const Node *callable = &p->nodes[p->stack[p->depth - 2]];
    const Node *args = &p->nodes[p->stack[p->depth - 1]];
    if (callable->kind != N_CLASS || args->kind != N_TUPLE) return BAIL;
    int count = args->u.c.count;
    int32_t first = item(p, args, 0), second = item(p, args, 1);
    int kind0 = count >= 1 ? p->nodes[first].kind : -1;
    int kind1 = count >= 2 ? p->nodes[second].kind : -1;
    int32_t result;
    switch ((int)callable->u.i) {
    case C_ENCODE: { /* _codecs.encode(text, "latin1"): a datetime's state in protocols 0-2 */
        if (count != 2 || kind0 != N_STR || kind1 != N_STR) return BAIL;
        const Node *encoding = &p->nodes[second];
        const char *e = (const char *)p->data + encoding->u.s.offset;
        Py_ssize_t n = encoding->u.s.size;
        if (!((n == 6 && memcmp(e, "latin1", 6) == 0) || (n == 7 && memcmp(e, "latin-1", 7) == 0))) return BAIL;
        p->nodes[first].kind = N_LATIN1;
        result = first;
        break;
    }
    case C_TIMEDELTA: { /* timedelta(days, seconds, microseconds): only a time zone's offset here */
        if (count != 3 || kind0 != N_INT || kind1 != N_INT || p->nodes[item(p, args, 2)].kind != N_INT) return BAIL;
        int64_t days = p->nodes[first].u.i, seconds = p->nodes[second].u.i;
        int64_t microseconds = p->nodes[item(p, args, 2)].u.i;
        /* small enough that the total cannot overflow; a time zone needs less */
        if (days < -2 || days > 2 || seconds < -1000000 || seconds > 1000000 || microseconds < -1000000000 ||
            microseconds > 1000000000)
            return BAIL;
        result = pj_new_node(p, N_TIMEDELTA);
        if (result < 0) return result;
        p->nodes[result].u.t.offset_us = (days * 86400 + seconds) * 1000000 + microseconds;
        break;
    }
    case C_TIMEZONE: { /* timezone(offset[, name]): strictly within a day, as datetime.timezone requires */
        if (count < 1 || count > 2 || kind0 != N_TIMEDELTA || (count == 2 && kind1 != N_STR && kind1 != N_NONE))
            return BAIL;
        int64_t offset = p->nodes[first].u.t.offset_us;
        if (offset <= -86400LL * 1000000 || offset >= 86400LL * 1000000) return BAIL;
        result = pj_new_node(p, N_TIMEZONE);
        if (result < 0) return result;
        p->nodes[result].u.t.offset_us = offset;
        break;
    }
    case C_DATETIME:
    case C_DATE: { /* datetime(state[, tz]), date(state): the fields, checked as their constructors do */
        int is_date = callable->u.i == C_DATE;
        unsigned char b[10];
        if (count < 1 || count > (is_date ? 1 : 2) || state_bytes(p, &p->nodes[first], b, is_date ? 4 : 10))
            return BAIL;
        if (count == 2 && kind1 != N_NONE && kind1 != N_TIMEZONE) return BAIL;
        int year = (b[0] << 8) | b[1], month = is_date ? b[2] : b[2] & 0x7F, day = b[3];
        if (year < 1 || year > 9999 || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month))
            return BAIL;
        int64_t offset = count == 2 && kind1 == N_TIMEZONE ? p->nodes[second].u.t.offset_us : 0;
        result = pj_new_node(p, N_DATETIME);
        if (result < 0) return result;
        Node *node = &p->nodes[result];
        node->u.t.year = (uint16_t)year;
        node->u.t.month = (uint8_t)month;
        node->u.t.day = (uint8_t)day;
        node->u.t.is_date = (uint8_t)is_date;
        node->u.t.has_tz = count == 2 && kind1 == N_TIMEZONE;
        node->u.t.offset_us = offset;
        node->u.t.hour = node->u.t.minute = node->u.t.second = 0;
        node->u.t.microsecond = 0;
        if (!is_date) {
            int microsecond = (b[7] << 16) | (b[8] << 8) | b[9];
            if (b[4] > 23 || b[5] > 59 || b[6] > 59 || microsecond > 999999) return BAIL;
            node->u.t.hour = b[4];
            node->u.t.minute = b[5];
            node->u.t.second = b[6];
            node->u.t.microsecond = microsecond;
        }
        break;
    }
    case C_DECIMAL: { /* Decimal(text): written as str() writes it, which is the text itself */
        if (count != 1 || kind0 != N_STR) return BAIL;
        if (!canonical_decimal(p->data + p->nodes[first].u.s.offset, p->nodes[first].u.s.size)) return BAIL;
        p->nodes[first].kind = N_DECIMAL;
        result = first;
        break;
    }
    case C_SET:
    case C_FROZENSET: /* set(list): the items in the pickle's order (the stand-in keeps it) */
        if (count != 1 || kind0 != N_LIST) return BAIL;
        p->nodes[first].kind = N_SET;
        result = first;
        break;
    default:
        return BAIL;
    }
    p->depth -= 2;
    return pj_push(p, result);
}

/* Zero-padded decimal digits of a non-negative value. */
static char *put_digits(char *o, int64_t value, int width) {
    for (int k = width - 1; k >= 0; k--) {
        o[k] = (char)('0' + value % 10);
        value /= 10;
    }
    return o + width;
}

/* isoformat() of a date or datetime (at most 42 characters), as CPython's
 * datetime writes it: microseconds only when not zero, and the offset as
 * +HH:MM, with :SS and .ffffff only when not zero. */
int pj_format_datetime(const Node *node, char *out) {
    char *o = out;
    o = put_digits(o, node->u.t.year, 4);
    *o++ = '-';
    o = put_digits(o, node->u.t.month, 2);
    *o++ = '-';
    o = put_digits(o, node->u.t.day, 2);
    if (node->u.t.is_date) return (int)(o - out);
    *o++ = 'T';
    o = put_digits(o, node->u.t.hour, 2);
    *o++ = ':';
    o = put_digits(o, node->u.t.minute, 2);
    *o++ = ':';
    o = put_digits(o, node->u.t.second, 2);
    if (node->u.t.microsecond) {
        *o++ = '.';
        o = put_digits(o, node->u.t.microsecond, 6);
    }
    if (node->u.t.has_tz) {
        int64_t offset = node->u.t.offset_us;
        *o++ = offset < 0 ? '-' : '+';
        if (offset < 0) offset = -offset;
        int64_t seconds = offset / 1000000, microseconds = offset % 1000000;
        o = put_digits(o, seconds / 3600, 2);
        *o++ = ':';
        o = put_digits(o, seconds / 60 % 60, 2);
        if (seconds % 60 || microseconds) {
            *o++ = ':';
            o = put_digits(o, seconds % 60, 2);
        }
        if (microseconds) {
            *o++ = '.';
            o = put_digits(o, microseconds, 6);
        }
    }
    return (int)(o - out);
}

