/* C speedup of relay.decode.syslog_message.syslog_record_python: the usual RFC 5424 message to its JSON.
 *
 * rfc5424_json(message, received) returns the exact bytes syslog_record_python(message, received)
 * returns (orjson's key order, float and string forms), or None where this code is not sure, and the
 * Python reference then decides (refusals included).  What is handled here: the messages the
 * reference's one-regex fast path (_FAST_5424) matches, PRI 0-191, a timestamp that is nil or a valid
 * RFC 3339 date and time (the Unix time computed in integers, as datetime(...).timestamp() gives it),
 * a nil STRUCTURED-DATA or none, and a MSG that is valid UTF-8 (after the BOM).  Everything else is
 * None: structured data, a timestamp datetime would refuse, a MSG Python would render with
 * backslashreplace, a float orjson would write in exponent form, a `received` that is not a finite
 * float.  tests/relay/decode/test_syslog_c.py and tests/fuzz/syslog.py (also under AddressSanitizer and
 * UBSan: scripts/fuzz-sanitized) compare the two.
 *
 * This code reads bytes from outside: every read is within [0, length) of the message, checked before
 * it happens; nothing recurses; the one allocation is the result, whose size is computed exactly from
 * the message (a JSON string escape is at most 6 bytes a byte) before it is written.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static const char *const LEVELNAMES[8] = {"CRITICAL", "CRITICAL", "CRITICAL", "ERROR",
                                          "WARNING",  "INFO",     "INFO",     "DEBUG"};
static const int LEVELNOS[8] = {50, 50, 50, 40, 30, 20, 20, 10};

typedef struct {
    const unsigned char *at;
    Py_ssize_t length;
} Span;

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int is_print(unsigned char c) { return c >= '!' && c <= '~'; }

/* A field of printable ASCII, 1 to `limit` bytes, starting at *pos and ended by a space or the end
 * (the next byte is not consumed).  0 where there is none. */
static int field(const unsigned char *text, Py_ssize_t length, Py_ssize_t *pos, Py_ssize_t limit, Span *out) {
    Py_ssize_t start = *pos, i = start;
    while (i < length && is_print(text[i])) {
        i++;
    }
    if (i == start || i - start > limit) {
        return 0;
    }
    out->at = text + start;
    out->length = i - start;
    *pos = i;
    return 1;
}

static int two_digits(const unsigned char *p) { return (p[0] - '0') * 10 + (p[1] - '0'); }

/* Days from 1970-01-01 to the proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int year, int month) {
    static const int DAYS[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month == 2 && (year % 4 == 0 && (year % 100 != 0 || year % 400 == 0))) {
        return 29;
    }
    return DAYS[month - 1];
}

/* The timestamp at text[*pos..]: nil ("-", *nil set) or YYYY-MM-DDTHH:MM:SS[.F{1,6}](Z|+HH:MM|-HH:MM),
 * followed by a space (consumed).  0 where it is not of that form or not a time datetime accepts. */
static int timestamp(const unsigned char *text, Py_ssize_t length, Py_ssize_t *pos, int *nil, double *created) {
    Py_ssize_t i = *pos;
    if (i + 1 < length && text[i] == '-' && text[i + 1] == ' ') {
        *nil = 1;
        *pos = i + 2;
        return 1;
    }
    *nil = 0;
    /* "YYYY-MM-DDTHH:MM:SS" is 19 bytes. */
    if (length - i < 19) {
        return 0;
    }
    const unsigned char *p = text + i;
    static const char SHAPE[] = "dddd-dd-ddTdd:dd:dd";
    for (int k = 0; k < 19; k++) {
        if (SHAPE[k] == 'd' ? !is_digit(p[k]) : p[k] != (unsigned char)SHAPE[k]) {
            return 0;
        }
    }
    const int year = two_digits(p) * 100 + two_digits(p + 2);
    const int month = two_digits(p + 5), day = two_digits(p + 8);
    const int hour = two_digits(p + 11), minute = two_digits(p + 14), second = two_digits(p + 17);
    i += 19;
    long micro = 0;
    int has_fraction = 0;
    if (i < length && text[i] == '.') {
        i++;
        int digits = 0;
        while (i < length && is_digit(text[i]) && digits < 7) {
            micro = micro * 10 + (text[i] - '0');
            digits++;
            i++;
        }
        if (digits < 1 || digits > 6) {
            return 0;
        }
        for (int k = digits; k < 6; k++) {
            micro *= 10;
        }
        has_fraction = 1;
    }
    int64_t offset = 0;
    if (i < length && text[i] == 'Z') {
        i++;
    } else if (i < length && (text[i] == '+' || text[i] == '-')) {
        if (length - i < 6) {
            return 0;
        }
        const unsigned char *z = text + i;
        if (!is_digit(z[1]) || !is_digit(z[2]) || z[3] != ':' || !is_digit(z[4]) || !is_digit(z[5])) {
            return 0;
        }
        const int hours = two_digits(z + 1), minutes = two_digits(z + 4);
        if (hours > 23 || minutes > 59) {
            return 0; /* refused by the reference: its words, not ours */
        }
        offset = (int64_t)(hours * 3600 + minutes * 60) * (z[0] == '-' ? -1 : 1);
        i += 6;
    } else {
        return 0;
    }
    if (i >= length || text[i] != ' ') {
        return 0;
    }
    /* What datetime(...) accepts; anything else is the reference's to refuse. */
    if (year < 1 || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) || hour > 23 ||
        minute > 59 || second > 59) {
        return 0;
    }
    const int64_t seconds =
        days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset;
    /* base + int(fraction.ljust(6, "0")) / 1_000_000: both exact doubles, one rounding each. */
    *created = has_fraction ? (double)seconds + (double)micro / 1000000.0 : (double)seconds;
    *pos = i + 1;
    return 1;
}

/* Bytes of `s` as a JSON string body, escaped as orjson escapes. */
static Py_ssize_t escaped_length(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char c = s[i];
        if (c == '"' || c == '\\' || c == '\b' || c == '\t' || c == '\n' || c == '\f' || c == '\r') {
            total += 2;
        } else if (c < 0x20) {
            total += 6;
        } else {
            total += 1;
        }
    }
    return total;
}

static char *write_escaped(char *out, const unsigned char *s, Py_ssize_t n) {
    static const char HEX[] = "0123456789abcdef";
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char c = s[i];
        switch (c) {
        case '"': *out++ = '\\'; *out++ = '"'; break;
        case '\\': *out++ = '\\'; *out++ = '\\'; break;
        case '\b': *out++ = '\\'; *out++ = 'b'; break;
        case '\t': *out++ = '\\'; *out++ = 't'; break;
        case '\n': *out++ = '\\'; *out++ = 'n'; break;
        case '\f': *out++ = '\\'; *out++ = 'f'; break;
        case '\r': *out++ = '\\'; *out++ = 'r'; break;
        default:
            if (c < 0x20) {
                memcpy(out, "\\u00", 4);
                out[4] = HEX[c >> 4];
                out[5] = HEX[c & 15];
                out += 6;
            } else {
                *out++ = (char)c;
            }
        }
    }
    return out;
}

/* Whether s[0..n) is UTF-8 that Python's strict decoder accepts (no surrogates, no overlongs, <= U+10FFFF). */
static int valid_utf8(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        const unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        Py_ssize_t need;
        unsigned char low = 0x80, high = 0xBF; /* the range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) {
                low = 0xA0;
            } else if (c == 0xED) {
                high = 0x9F;
            }
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) {
                low = 0x90;
            } else if (c == 0xF4) {
                high = 0x8F;
            }
        } else {
            return 0;
        }
        if (n - i <= need) {
            return 0;
        }
        if (s[i + 1] < low || s[i + 1] > high) {
            return 0;
        }
        for (Py_ssize_t k = 2; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80) {
                return 0;
            }
        }
        i += need + 1;
    }
    return 1;
}

/* A float as orjson writes it, into out (at least 32 bytes); its length, or -1 where this code is not
 * sure (exponent form, inf, nan, or a repr too long): the caller answers None. */
static Py_ssize_t format_float(double x, char *out) {
    if (!isfinite(x)) {
        return -1;
    }
    char *repr = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (repr == NULL) {
        PyErr_Clear();
        return -1;
    }
    const size_t n = strlen(repr);
    if (n >= 32 || strpbrk(repr, "eEni") != NULL) {
        PyMem_Free(repr);
        return -1;
    }
    memcpy(out, repr, n);
    PyMem_Free(repr);
    return (Py_ssize_t)n;
}

/* ,"key":"value" or ,"key":null for a header field ("-" is nil). */
static Py_ssize_t field_length(Span f) {
    if (f.length == 1 && f.at[0] == '-') {
        return 4;
    }
    return 2 + escaped_length(f.at, f.length);
}

static char *write_field(char *out, Span f) {
    if (f.length == 1 && f.at[0] == '-') {
        memcpy(out, "null", 4);
        return out + 4;
    }
    *out++ = '"';
    out = write_escaped(out, f.at, f.length);
    *out++ = '"';
    return out;
}

#define PUT(literal)                                                                                               \
    do {                                                                                                           \
        memcpy(out, literal, sizeof(literal) - 1);                                                                 \
        out += sizeof(literal) - 1;                                                                                \
    } while (0)

static PyObject *rfc5424_json(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "rfc5424_json(message, received) takes 2 arguments");
        return NULL;
    }
    if (!PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "rfc5424_json: message must be bytes");
        return NULL;
    }
    if (!PyFloat_CheckExact(args[1])) {
        Py_RETURN_NONE; /* an int would be written as an int: the reference's to do */
    }
    const double received = PyFloat_AS_DOUBLE(args[1]);
    const unsigned char *text = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t length = PyBytes_GET_SIZE(args[0]);
    if (length > PY_SSIZE_T_MAX / 8 - 1024) {
        Py_RETURN_NONE;
    }
    while (length > 0 && (text[length - 1] == '\n' || text[length - 1] == '\r' || text[length - 1] == 0)) {
        length--;
    }

    /* <PRI>1 SP: PRI 0, or 1-3 digits without a leading zero, at most 191. */
    Py_ssize_t pos = 0;
    if (length < 4 || text[0] != '<') {
        Py_RETURN_NONE;
    }
    pos = 1;
    int pri = 0, digits = 0;
    while (pos < length && is_digit(text[pos]) && digits < 4) {
        pri = pri * 10 + (text[pos] - '0');
        digits++;
        pos++;
    }
    if (digits < 1 || digits > 3 || (digits > 1 && text[1] == '0') || pri > 191) {
        Py_RETURN_NONE;
    }
    if (length - pos < 3 || text[pos] != '>' || text[pos + 1] != '1' || text[pos + 2] != ' ') {
        Py_RETURN_NONE;
    }
    pos += 3;

    int nil = 0;
    double created = received;
    if (!timestamp(text, length, &pos, &nil, &created)) {
        Py_RETURN_NONE;
    }
    if (nil) {
        created = received;
    }
    Span host, app, proc, msgid;
    if (!field(text, length, &pos, 255, &host) || pos >= length || text[pos++] != ' ' ||
        !field(text, length, &pos, 48, &app) || pos >= length || text[pos++] != ' ' ||
        !field(text, length, &pos, 128, &proc) || pos >= length || text[pos++] != ' ' ||
        !field(text, length, &pos, 32, &msgid)) {
        Py_RETURN_NONE;
    }
    if (pos < length) {
        if (text[pos] != ' ') {
            Py_RETURN_NONE;
        }
        pos++;
    }
    /* STRUCTURED-DATA: nil ("-", then a space if there is one) or nothing at all; the rest is Python's. */
    if (pos < length) {
        if (text[pos] != '-') {
            Py_RETURN_NONE;
        }
        pos += (pos + 1 < length && text[pos + 1] == ' ') ? 2 : 1;
    }
    if (length - pos >= 3 && text[pos] == 0xEF && text[pos + 1] == 0xBB && text[pos + 2] == 0xBF) {
        pos += 3;
    }
    const unsigned char *msg = text + pos;
    const Py_ssize_t msg_length = length - pos;
    if (!valid_utf8(msg, msg_length)) {
        Py_RETURN_NONE;
    }

    if (!isfinite(created) || fabs(created) >= 9007199254740992.0) {
        Py_RETURN_NONE;
    }
    /* (created - int(created)) * 1000.0: the int made a float again, so -0.0 - 0 is -0.0 (trunc would give -0.0) */
    const double msecs = (created - (double)(long long)created) * 1000.0;
    char created_text[32], msecs_text[32];
    const Py_ssize_t created_length = format_float(created, created_text);
    const Py_ssize_t msecs_length = format_float(msecs, msecs_text);
    if (created_length < 0 || msecs_length < 0) {
        Py_RETURN_NONE;
    }
    const int facility = pri / 8, severity = pri % 8;
    int has_process = proc.length <= 10;
    long long process = 0;
    for (Py_ssize_t k = 0; k < proc.length && has_process; k++) {
        if (!is_digit(proc.at[k])) {
            has_process = 0;
        } else {
            process = process * 10 + (proc.at[k] - '0');
        }
    }
    char numbers[96];
    const int levelno = LEVELNOS[severity];
    const char *levelname = LEVELNAMES[severity];

    /* {"name":N,"msg":M,"args":null,"levelname":"L","levelno":n,"created":c,"msecs":m[,"process":p],
     *  "syslog":{"rfc":5424,"hostname":h,"appname":a,"procid":p,"msgid":i,"facility":f,"severity":s}} */
    const Py_ssize_t name_length = (app.length == 1 && app.at[0] == '-') ? 8 : field_length(app);
    int process_length = 0;
    if (has_process) {
        process_length = snprintf(numbers, sizeof numbers, "%lld", process);
        if (process_length <= 0 || process_length >= (int)sizeof numbers) {
            Py_RETURN_NONE;
        }
    }
    const Py_ssize_t size = (Py_ssize_t)(sizeof("{\"name\":,\"msg\":\"\",\"args\":null,\"levelname\":\"\",\"levelno\":,"
                                                "\"created\":,\"msecs\":,\"syslog\":{\"rfc\":5424,\"hostname\":,"
                                                "\"appname\":,\"procid\":,\"msgid\":,\"facility\":,\"severity\":}}") -
                                         1) +
                            name_length + escaped_length(msg, msg_length) + (Py_ssize_t)strlen(levelname) + 2 +
                            created_length + msecs_length +
                            (has_process ? (Py_ssize_t)sizeof(",\"process\":") - 1 + process_length : 0) +
                            field_length(host) + field_length(app) + field_length(proc) + field_length(msgid) +
                            (facility >= 10 ? 2 : 1) + 1;
    PyObject *result = PyBytes_FromStringAndSize(NULL, size);
    if (result == NULL) {
        return NULL;
    }
    char *const start = PyBytes_AS_STRING(result);
    char *out = start;
    PUT("{\"name\":");
    if (app.length == 1 && app.at[0] == '-') {
        PUT("\"syslog\"");
    } else {
        out = write_field(out, app);
    }
    PUT(",\"msg\":\"");
    out = write_escaped(out, msg, msg_length);
    PUT("\",\"args\":null,\"levelname\":\"");
    memcpy(out, levelname, strlen(levelname));
    out += strlen(levelname);
    PUT("\",\"levelno\":");
    *out++ = (char)('0' + levelno / 10);
    *out++ = (char)('0' + levelno % 10);
    PUT(",\"created\":");
    memcpy(out, created_text, (size_t)created_length);
    out += created_length;
    PUT(",\"msecs\":");
    memcpy(out, msecs_text, (size_t)msecs_length);
    out += msecs_length;
    if (has_process) {
        PUT(",\"process\":");
        memcpy(out, numbers, (size_t)process_length);
        out += process_length;
    }
    PUT(",\"syslog\":{\"rfc\":5424,\"hostname\":");
    out = write_field(out, host);
    PUT(",\"appname\":");
    out = write_field(out, app);
    PUT(",\"procid\":");
    out = write_field(out, proc);
    PUT(",\"msgid\":");
    out = write_field(out, msgid);
    PUT(",\"facility\":");
    if (facility >= 10) {
        *out++ = (char)('0' + facility / 10);
    }
    *out++ = (char)('0' + facility % 10);
    PUT(",\"severity\":");
    *out++ = (char)('0' + severity);
    PUT("}}");
    if (out - start != size) {
        /* A miscount is a bug here, never the sender's: say so rather than return a torn record. */
        Py_DECREF(result);
        PyErr_Format(PyExc_SystemError, "rfc5424_json wrote %zd bytes of %zd", (Py_ssize_t)(out - start), size);
        return NULL;
    }
    return result;
}

static PyMethodDef METHODS[] = {
    {"rfc5424_json", (PyCFunction)(void (*)(void))rfc5424_json, METH_FASTCALL,
     "rfc5424_json(message, received) -> bytes | None: the record JSON of a usual RFC 5424 message, exactly as "
     "relay.decode.syslog_message.syslog_record_python returns it, or None (use the Python path)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {
    PyModuleDef_HEAD_INIT, "relay.decode._syslog",
    "C speedup of relay.decode.syslog_message: the usual RFC 5424 message straight to its record JSON.", -1, METHODS,
};

PyMODINIT_FUNC PyInit__syslog(void) { return PyModule_Create(&MODULE); }
