/* Text lines of a logging %-format, straight from a reply's entry list.
 *
 * text_lines(items, plan, metadata, second_text, is_object) -> list[bytes | int]
 *
 * What consumers.formatting.LineFormatter.format_items writes, for formats
 * whose fields are all plain %(name)s, without building a dict per record:
 * the record's JSON is scanned once for the attributes the format names, and
 * the line is written from their text.
 *
 * plan = (segments, keys, required, placeholder), made by
 * consumers.formatting.text_plan:
 *   segments     tuple of bytes (literal text, %% already unescaped) and ints:
 *                n >= 0 is the record attribute keys[n], rendered as str()
 *                renders it; the negative FIELD_* codes below are the message
 *                (str(msg)), asctime and the relay metadata.
 *   keys         tuple of bytes, the attribute names to find; the first six
 *                are always msg, created, msecs, exc_info, exc_text, stack_info.
 *   required     the first `required` keys must be in the record; a later
 *                one that is missing renders as the placeholder.
 *   placeholder  bytes.
 * metadata(client, catcher, received) -> (bytes, bytes, bytes): how
 *   %(client)s, %(catcher)s and %(received)s render; called once per run of
 *   entries sharing those three values.
 * second_text(second: int) -> bytes: asctime's text of that second, without
 *   the milliseconds; called once per second of records.
 * is_object(record) -> bool: the record is one JSON object (consumers.json_check);
 *   None: the same check in C (_json_scan.h), without a call per record.
 *
 * Taken here, as in the Python path: the usual entry (_read_replies.h),
 * whose record is one JSON object holding every required key, with
 * exc_info null.  Rendered here: strings (escapes decoded; a key written
 * with an escape makes the entry the caller's), integers of up to 18 digits,
 * true, false and null ("True", "False", "None"), asctime from a created of
 * less than 10**15 seconds and msecs in [0, 1000); exc_text and stack_info
 * when null, false or a string.  Anything else (floats, containers, long
 * integers, lone surrogates, ...) leaves the entry to the caller: its index
 * goes into pieces, between the lines of the entries around it.
 * tests/consumers/test_formatting.py checks this against the Python path.
 *
 * Records come from the network: every read is checked against the end,
 * whatever is_object said.
 */
#include "_read_replies.h"

#include <math.h>

enum { FIELD_MESSAGE = -1, FIELD_ASCTIME = -2, FIELD_CLIENT = -3, FIELD_CATCHER = -4, FIELD_RECEIVED = -5,
       FIELD_ENTRY_ID = -6 };
enum { KEY_MSG, KEY_CREATED, KEY_MSECS, KEY_EXC_INFO, KEY_EXC_TEXT, KEY_STACK_INFO, FIXED_KEYS };

/* A format names a few attributes; a plan with more goes to Python. */
#define MAX_KEYS 64
#define MAX_SEGMENTS 256

enum { V_MISSING, V_STRING, V_NUMBER, V_TRUE, V_FALSE, V_NULL, V_CONTAINER };

typedef struct {
    int kind;
    int escaped; /* V_STRING: has a backslash; V_NUMBER: has '.', 'e' or 'E' */
    const char *start;
    Py_ssize_t size; /* the string's text between its quotes, or the number's */
} Value;

typedef struct {
    Py_ssize_t count, required;
    const char *key[MAX_KEYS];
    Py_ssize_t key_size[MAX_KEYS];
    Py_ssize_t segment_count;
    int segment[MAX_SEGMENTS]; /* a field code, or SEGMENT_TEXT */
    const char *text[MAX_SEGMENTS];
    Py_ssize_t text_size[MAX_SEGMENTS];
    const char *placeholder;
    Py_ssize_t placeholder_size;
} Plan;

#define SEGMENT_TEXT (-100)

static int read_plan(PyObject *object, Plan *plan) {
    PyObject *segments, *keys, *placeholder;
    Py_ssize_t required;
    if (!PyTuple_CheckExact(object) || !PyArg_ParseTuple(object, "O!O!nO!", &PyTuple_Type, &segments, &PyTuple_Type,
                                                           &keys, &required, &PyBytes_Type, &placeholder))
        goto bad;
    plan->count = PyTuple_GET_SIZE(keys);
    plan->segment_count = PyTuple_GET_SIZE(segments);
    if (plan->count < FIXED_KEYS || plan->count > MAX_KEYS || required < FIXED_KEYS || required > plan->count ||
        plan->segment_count > MAX_SEGMENTS)
        goto bad;
    plan->required = required;
    for (Py_ssize_t k = 0; k < plan->count; k++) {
        PyObject *key = PyTuple_GET_ITEM(keys, k);
        if (!PyBytes_CheckExact(key)) goto bad;
        plan->key[k] = PyBytes_AS_STRING(key);
        plan->key_size[k] = PyBytes_GET_SIZE(key);
    }
    for (Py_ssize_t s = 0; s < plan->segment_count; s++) {
        PyObject *segment = PyTuple_GET_ITEM(segments, s);
        if (PyBytes_CheckExact(segment)) {
            plan->segment[s] = SEGMENT_TEXT;
            plan->text[s] = PyBytes_AS_STRING(segment);
            plan->text_size[s] = PyBytes_GET_SIZE(segment);
            continue;
        }
        long code = PyLong_Check(segment) ? PyLong_AsLong(segment) : FIELD_ENTRY_ID - 1;
        if (code == -1 && PyErr_Occurred()) return -1;
        if (code < FIELD_ENTRY_ID || code >= plan->count) goto bad;
        plan->segment[s] = (int)code;
    }
    plan->placeholder = PyBytes_AS_STRING(placeholder);
    plan->placeholder_size = PyBytes_GET_SIZE(placeholder);
    return 0;
bad:
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "text_lines: not a plan made by text_plan");
    return -1;
}

/* ---------------------------------------------------------------- scanning a record */

static inline const char *skip_space(const char *p, const char *end) {
    while (p < end && is_json_space(*p)) p++;
    return p;
}

/* p at the opening quote: the closing quote, or NULL.  Notes a backslash.
 * memchr, not a byte loop: messages and tracebacks are most of a record. */
static const char *string_end(const char *p, const char *end, int *escaped) {
    const char *quote = NULL;
    for (p++;;) {
        /* The quote found last time stands unless an escape skipped it. */
        if (quote == NULL || quote < p) {
            quote = memchr(p, '"', (size_t)(end - p));
            if (quote == NULL) return NULL;
        }
        const char *backslash = memchr(p, '\\', (size_t)(quote - p));
        if (backslash == NULL) return quote;
        *escaped = 1;
        p = backslash + 2; /* at most quote + 1, so never past end */
    }
}

/* p at a value: just after it, or NULL. */
static const char *value_end(const char *p, const char *end, Value *value) {
    value->start = p;
    value->escaped = 0;
    if (p >= end) return NULL;
    switch (*p) {
    case '"': {
        const char *close = string_end(p, end, &value->escaped);
        if (close == NULL) return NULL;
        value->kind = V_STRING;
        value->start = p + 1;
        value->size = close - p - 1;
        return close + 1;
    }
    case '{':
    case '[': {
        Py_ssize_t depth = 0;
        int ignored;
        for (; p < end; p++) {
            if (*p == '"') {
                p = string_end(p, end, &ignored);
                if (p == NULL) return NULL;
            } else if (*p == '{' || *p == '[') {
                depth++;
            } else if ((*p == '}' || *p == ']') && --depth == 0) {
                value->kind = V_CONTAINER;
                return p + 1;
            }
        }
        return NULL;
    }
    case 't':
        value->kind = V_TRUE;
        return end - p >= 4 && memcmp(p, "true", 4) == 0 ? p + 4 : NULL;
    case 'f':
        value->kind = V_FALSE;
        return end - p >= 5 && memcmp(p, "false", 5) == 0 ? p + 5 : NULL;
    case 'n':
        value->kind = V_NULL;
        return end - p >= 4 && memcmp(p, "null", 4) == 0 ? p + 4 : NULL;
    default:
        value->kind = V_NUMBER;
        while (p < end && (*p == '-' || *p == '+' || *p == '.' || *p == 'e' || *p == 'E' || (*p >= '0' && *p <= '9'))) {
            if (*p == '.' || *p == 'e' || *p == 'E') value->escaped = 1;
            p++;
        }
        value->size = p - value->start;
        return value->size ? p : NULL;
    }
}

/* The values of the plan's keys in one object (a key given twice: its last
 * value, as orjson keeps it).  0 if the record is not what this path takes. */
static int find_keys(const Plan *plan, const char *p, const char *end, Value *values) {
    for (Py_ssize_t k = 0; k < plan->count; k++) values[k].kind = V_MISSING;
    p = skip_space(p, end);
    if (p >= end || *p != '{') return 0;
    p = skip_space(p + 1, end);
    if (p < end && *p == '}') return 1;
    for (;;) {
        if (p >= end || *p != '"') return 0;
        int escaped = 0;
        const char *close = string_end(p, end, &escaped);
        /* A key spelled with an escape might be one of ours: Python's. */
        if (close == NULL || escaped) return 0;
        const char *key = p + 1;
        Py_ssize_t key_size = close - key;
        p = skip_space(close + 1, end);
        if (p >= end || *p != ':') return 0;
        p = skip_space(p + 1, end);
        Value value;
        p = value_end(p, end, &value);
        if (p == NULL) return 0;
        for (Py_ssize_t k = 0; k < plan->count; k++) {
            if (plan->key_size[k] == key_size && plan->key[k][0] == key[0] &&
                memcmp(plan->key[k], key, (size_t)key_size) == 0) {
                values[k] = value;
                break;
            }
        }
        p = skip_space(p, end);
        if (p < end && *p == ',') {
            p = skip_space(p + 1, end);
            continue;
        }
        return p < end && *p == '}';
    }
}

/* ---------------------------------------------------------------- writing */

static inline int put(Buffer *out, const char *data, Py_ssize_t size) {
    if (buffer_reserve(out, size) < 0) return -1;
    buffer_put(out, data, size);
    return 0;
}

static int hex4(const char *p, const char *end, unsigned *unit) {
    if (end - p < 4) return 0;
    *unit = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        unsigned nibble;
        if (c >= '0' && c <= '9') nibble = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') nibble = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') nibble = (unsigned)(c - 'A' + 10);
        else return 0;
        *unit = *unit << 4 | nibble;
    }
    return 1;
}

/* A JSON string's text, decoded, as UTF-8.  1 done, 0 not ours (a lone
 * surrogate: Python writes it with backslashreplace), -1 error. */
static int put_string(Buffer *out, const Value *value) {
    if (!value->escaped) return put(out, value->start, value->size) < 0 ? -1 : 1;
    /* Decoded text is never longer than its escapes. */
    if (buffer_reserve(out, value->size) < 0) return -1;
    const char *p = value->start, *end = value->start + value->size;
    char *w = out->data + out->size;
    while (p < end) {
        if (*p != '\\') {
            *w++ = *p++;
            continue;
        }
        if (end - p < 2) return 0;
        char c = p[1];
        p += 2;
        switch (c) {
        case '"': case '\\': case '/': *w++ = c; continue;
        case 'b': *w++ = '\b'; continue;
        case 'f': *w++ = '\f'; continue;
        case 'n': *w++ = '\n'; continue;
        case 'r': *w++ = '\r'; continue;
        case 't': *w++ = '\t'; continue;
        case 'u': break;
        default: return 0;
        }
        unsigned unit, low;
        if (!hex4(p, end, &unit)) return 0;
        p += 4;
        unsigned long point = unit;
        if (unit >= 0xD800 && unit <= 0xDBFF) {
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, end, &low) || low < 0xDC00 ||
                low > 0xDFFF)
                return 0;
            p += 6;
            point = 0x10000 + ((unsigned long)(unit - 0xD800) << 10) + (low - 0xDC00);
        } else if (unit >= 0xDC00 && unit <= 0xDFFF) {
            return 0;
        }
        /* \uXXXX is 6 bytes of input for at most 3 of output; a pair 12 for 4. */
        if (point < 0x80) {
            *w++ = (char)point;
        } else if (point < 0x800) {
            *w++ = (char)(0xC0 | point >> 6);
            *w++ = (char)(0x80 | (point & 0x3F));
        } else if (point < 0x10000) {
            *w++ = (char)(0xE0 | point >> 12);
            *w++ = (char)(0x80 | (point >> 6 & 0x3F));
            *w++ = (char)(0x80 | (point & 0x3F));
        } else {
            *w++ = (char)(0xF0 | point >> 18);
            *w++ = (char)(0x80 | (point >> 12 & 0x3F));
            *w++ = (char)(0x80 | (point >> 6 & 0x3F));
            *w++ = (char)(0x80 | (point & 0x3F));
        }
    }
    out->size = w - out->data;
    return 1;
}

/* str() of a JSON value.  1 done, 0 not ours, -1 error. */
static int put_value(Buffer *out, const Value *value) {
    switch (value->kind) {
    case V_STRING:
        return put_string(out, value);
    case V_NUMBER: {
        /* An int of up to 18 digits is its own text ("-0" is 0 in Python). */
        Py_ssize_t digits = value->size - (value->start[0] == '-');
        if (value->escaped || digits < 1 || digits > 18 || (value->size == 2 && value->start[1] == '0' && digits == 1))
            return 0;
        return put(out, value->start, value->size) < 0 ? -1 : 1;
    }
    case V_TRUE:
        return put(out, "True", 4) < 0 ? -1 : 1;
    case V_FALSE:
        return put(out, "False", 5) < 0 ? -1 : 1;
    case V_NULL:
        return put(out, "None", 4) < 0 ? -1 : 1;
    default:
        return 0;
    }
}

/* floor() of a JSON number of the usual shape, digits[.digits] with at most
 * 10 before the point (a Unix time, msecs), without parsing a double: 1, or
 * 0 to leave it to number_value.  Exact: the integer part I is a double, and
 * the number lies in [I, I + 1 - 1e-6) unless its fraction starts with six
 * nines, while a double below 1e10 is within 1e-6 of it (half a unit in the
 * last place is at most 2**-20), so its double's floor is I. */
static int number_floor(const Value *value, long long *result) {
    if (value->kind != V_NUMBER) return 0;
    const char *p = value->start, *end = value->start + value->size;
    long long whole = 0;
    const char *digits = p;
    while (p < end && *p >= '0' && *p <= '9') {
        if (p - digits == 10) return 0; /* checked before it could overflow */
        whole = whole * 10 + (*p++ - '0');
    }
    if (p == digits) return 0;
    if (p < end) {
        if (*p != '.') return 0; /* a sign or an exponent */
        const char *fraction = ++p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        if (p != end || p == fraction) return 0;
        Py_ssize_t nines = 0;
        while (nines < 6 && fraction + nines < end && fraction[nines] == '9') nines++;
        if (nines == 6) return 0;
    }
    *result = whole;
    return 1;
}

/* A JSON number as a double (either notation), or 0 if it is not one. */
static int number_value(const Value *value, double *result) {
    char text[64];
    if (value->kind != V_NUMBER || value->size >= (Py_ssize_t)sizeof text) return 0;
    memcpy(text, value->start, (size_t)value->size);
    text[value->size] = '\0';
    char *stop;
    *result = PyOS_string_to_double(text, &stop, NULL);
    if (*result == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return stop == text + value->size && isfinite(*result);
}

/* The state of one call: the asctime text of the last second seen. */
typedef struct {
    PyObject *second_text;
    long long second;
    PyObject *text; /* bytes, or NULL */
} Clock;

/* "%s,%03d" % (second's text, msecs), as logging.Formatter.formatTime writes it.  1, 0 or -1. */
static int put_asctime(Buffer *out, Clock *clock, const Value *created, const Value *msecs) {
    long long second, ms;
    /* The usual numbers without a double (strtod was a tenth of the time here). */
    if (!number_floor(created, &second) || !number_floor(msecs, &ms) || ms >= 1000) {
        double when, millis;
        if (!number_value(created, &when) || !number_value(msecs, &millis)) return 0;
        if (fabs(when) >= 1e15 || millis < 0 || millis >= 1000) return 0;
        second = (long long)floor(when);
        ms = (long long)millis; /* %d of a float truncates: 999.9 is 999 */
    }
    if (clock->text == NULL || second != clock->second) {
        PyObject *number = PyLong_FromLongLong(second);
        if (number == NULL) return -1;
        PyObject *text = PyObject_CallOneArg(clock->second_text, number);
        Py_DECREF(number);
        if (text == NULL) return -1;
        if (!PyBytes_CheckExact(text)) {
            Py_DECREF(text);
            PyErr_SetString(PyExc_TypeError, "text_lines: second_text() must return bytes");
            return -1;
        }
        Py_XSETREF(clock->text, text);
        clock->second = second;
    }
    char tail[5] = {',', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 0};
    if (put(out, PyBytes_AS_STRING(clock->text), PyBytes_GET_SIZE(clock->text)) < 0 || put(out, tail, 4) < 0)
        return -1;
    return 1;
}

/* exc_text or stack_info: appended on a line of its own when it is a
 * non-empty string; nothing when null, false or empty.  1, 0 or -1. */
static int put_appendix(Buffer *out, Py_ssize_t line_start, const Value *value) {
    if (value->kind == V_NULL || value->kind == V_FALSE || (value->kind == V_STRING && value->size == 0)) return 1;
    if (value->kind != V_STRING) return 0;
    if ((out->size == line_start || out->data[out->size - 1] != '\n') && put(out, "\n", 1) < 0) return -1;
    return put_string(out, value);
}

/* The run's (client, catcher, received) texts, checked once per run. */
static int load_metadata(MetadataRun *run, const Usual *entry) {
    PyObject *before = run->value;
    if (metadata_for(run, entry) < 0) return -1;
    PyObject *texts = run->value;
    if (texts == before) return 0;
    if (!PyTuple_CheckExact(texts) || PyTuple_GET_SIZE(texts) != 3 || !PyBytes_CheckExact(PyTuple_GET_ITEM(texts, 0)) ||
        !PyBytes_CheckExact(PyTuple_GET_ITEM(texts, 1)) || !PyBytes_CheckExact(PyTuple_GET_ITEM(texts, 2))) {
        Py_CLEAR(run->value);
        PyErr_SetString(PyExc_TypeError, "text_lines: metadata() must return three bytes");
        return -1;
    }
    return 0;
}

static int put_text_of(Buffer *out, PyObject *texts, Py_ssize_t index) {
    PyObject *text = PyTuple_GET_ITEM(texts, index);
    return put(out, PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text)) < 0 ? -1 : 1;
}

/* One entry's line(s) at the end of out.  1 written, 0 not ours (out as it was), -1 error. */
static int render(Buffer *out, const Plan *plan, Clock *clock, MetadataRun *meta, const Usual *entry) {
    Value values[MAX_KEYS];
    const char *text = entry->record.p;
    if (!find_keys(plan, text, text + entry->record.n, values)) return 0;
    for (Py_ssize_t k = 0; k < plan->required; k++)
        if (values[k].kind == V_MISSING) return 0;
    if (values[KEY_EXC_INFO].kind != V_NULL) return 0;
    Py_ssize_t line_start = out->size;
    int done = 1;
    for (Py_ssize_t s = 0; s < plan->segment_count && done == 1; s++) {
        int code = plan->segment[s];
        switch (code) {
        case SEGMENT_TEXT:
            done = put(out, plan->text[s], plan->text_size[s]) < 0 ? -1 : 1;
            break;
        case FIELD_MESSAGE:
            done = put_value(out, &values[KEY_MSG]);
            break;
        case FIELD_ASCTIME:
            done = put_asctime(out, clock, &values[KEY_CREATED], &values[KEY_MSECS]);
            break;
        case FIELD_CLIENT:
        case FIELD_CATCHER:
        case FIELD_RECEIVED:
            done = load_metadata(meta, entry) < 0 ? -1 : put_text_of(out, meta->value, FIELD_CLIENT - code);
            break;
        case FIELD_ENTRY_ID:
            done = put(out, entry->id.p, entry->id.n) < 0 ? -1 : 1;
            break;
        default:
            if (values[code].kind == V_MISSING)
                done = put(out, plan->placeholder, plan->placeholder_size) < 0 ? -1 : 1;
            else
                done = put_value(out, &values[code]);
        }
    }
    if (done == 1) done = put_appendix(out, line_start, &values[KEY_EXC_TEXT]);
    if (done == 1) done = put_appendix(out, line_start, &values[KEY_STACK_INFO]);
    if (done == 1) done = put(out, "\n", 1) < 0 ? -1 : 1;
    if (done == 0) out->size = line_start;
    return done;
}

PyObject *text_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    Py_ssize_t count = nargs == 5 ? entries_count(args[0]) : -1;
    if (count < 0) {
        PyErr_SetString(PyExc_TypeError,
                        "text_lines(items: list | ReplyEntries, plan, metadata, second_text, is_object)");
        return NULL;
    }
    PyObject *items = args[0], *is_object = args[4];
    Plan plan;
    if (read_plan(args[1], &plan) < 0) return NULL;
    PyObject *pieces = PyList_New(0);
    if (pieces == NULL) return NULL;
    Buffer out = {NULL, 0, 0};
    Clock clock = {args[3], 0, NULL};
    MetadataRun meta = {args[2], NULL, {NULL, 0}, {NULL, 0}, {NULL, 0}};
    for (Py_ssize_t i = 0; i < count; i++) {
        Usual entry;
        int done = 0;
        if (usual_at(items, i, &entry)) {
            int sure;
            if (is_object == Py_None) {
                sure = record_check(entry.record, NULL);
            } else {
                PyObject *record = PyBytes_FromStringAndSize(entry.record.p, entry.record.n);
                if (record == NULL) goto error;
                PyObject *verdict = PyObject_CallOneArg(is_object, record);
                Py_DECREF(record);
                if (verdict == NULL) goto error;
                sure = verdict == Py_True;
                Py_DECREF(verdict);
            }
            if (sure) done = render(&out, &plan, &clock, &meta, &entry);
        }
        if (done < 0) goto error;
        if (done == 0 && leave_to_caller(&out, pieces, i) < 0) goto error;
    }
    if (flush_lines(&out, pieces) < 0) goto error;
    PyMem_Free(out.data);
    Py_XDECREF(clock.text);
    Py_XDECREF(meta.value);
    return pieces;
error:
    PyMem_Free(out.data);
    Py_XDECREF(clock.text);
    Py_XDECREF(meta.value);
    Py_DECREF(pieces);
    return NULL;
}
