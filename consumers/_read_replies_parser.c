/* A read reply's entries straight from Redis's bytes, without an object per field.
 *
 * ReplyReader().feed(data) -> None while the reply is incomplete, then (kind, value):
 *   (0, ReplyEntries)  an XREADGROUP/XREAD reply of one stream (RESP2 or 3): its entries, maybe none
 *   (1, None)          a nil reply (a BLOCK that timed out)
 *   (2, bytes)         an error reply's message, without its '-'
 *   (3, bytes)         any other complete reply, as it came, for a general parser
 * Raises ValueError for bytes that are not RESP, or for bytes past the reply
 * (one command is in flight: the caller drops the connection).  RESP3 pushes
 * before the reply are skipped: the consumer's connection subscribes to
 * nothing.
 *
 * Each entry must be what Redis 6 and 7 send, in RESP2 and RESP3 alike
 * (t_stream.c: addReplyStreamID, addReplyBulkCBuffer, addReplyNullArray):
 *
 *   entry       an array of 2: [id, fields]
 *   id          a bulk string
 *   fields      an array of an even count of bulk strings (field, value, ...),
 *               or a null (`*-1` in RESP2, `_` in RESP3: a pending entry that
 *               was trimmed), given as None
 *
 * Anything else there (sets, maps, attributes, pushes, doubles, big numbers,
 * booleans, verbatim strings, errors, integers, simple strings, nulls where
 * no null belongs, an entry of another length) is refused by feed() with a
 * ValueError naming the entry, the place and what was found (check_entry),
 * not accepted and left to fail when the entry is built: the caller turns
 * that ValueError into redis-py's InvalidResponse and reads again on another
 * connection, and every entry it is handed can be built, rendered and
 * acknowledged.  consumers.reply_parser.ReplyReaderPython is the reference
 * of all of this, message for message.
 *
 * Why: hiredis makes two lists and eleven bytes objects of every entry, and
 * creating and freeing them was about a quarter of the file consumer's CPU
 * (perf).  Here an entry is a row of offsets into the one buffer the reply
 * was read into; json_lines and text_lines read the usual entries from it
 * (usual_at in _read_replies.c), and any other entry, or any index a
 * caller asks for, is built as the list hiredis would have made
 * ([id, [field, value, ...]]), so every Python path works unchanged.
 * tests/consumers/test_reply_parser.py checks that against hiredis.
 */
#include "_read_replies.h"

/* Deepest nesting of a reply this parser follows; XREADGROUP's is 4. */
#define MAX_DEPTH 16

/* What resp_skip and read_header return besides a position. */
static const char incomplete_, malformed_;
#define INCOMPLETE (&incomplete_)
#define MALFORMED (&malformed_)
#define FAILED(q) ((q) == INCOMPLETE || (q) == MALFORMED)

/* The integer of a line (`*3\r\n`, `$12\r\n`, `:-5\r\n`) at p, whose first
 * byte is the type, of at most max_digits digits; returns the position past
 * its "\r\n". */
static const char *read_integer(const char *p, const char *end, long long *value, int max_digits) {
    const char *q = p + 1;
    int negative = 0;
    long long n = 0;
    int digits = 0;
    if (q < end && *q == '-') negative = 1, q++;
    while (q < end && *q >= '0' && *q <= '9') {
        if (++digits > max_digits) return MALFORMED;
        n = n * 10 + (*q++ - '0');
    }
    if (end - q < 2) return INCOMPLETE;
    if (digits == 0 || q[0] != '\r' || q[1] != '\n') return MALFORMED;
    *value = negative ? -n : n;
    return q + 2;
}

/* A length: no length Redis sends has more than 12 digits. */
static const char *read_header(const char *p, const char *end, long long *value) {
    return read_integer(p, end, value, 12);
}

/* Past a line-valued element (`+OK\r\n`, `:12\r\n`, `-ERR ...\r\n`). */
static const char *skip_line(const char *p, const char *end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL) return INCOMPLETE;
    if (nl == p || nl[-1] != '\r') return MALFORMED;
    return nl + 1;
}

/* Past one RESP2 or RESP3 element at p. */
static const char *resp_skip(const char *p, const char *end, int depth) {
    long long n;
    const char *q;
    if (p >= end) return INCOMPLETE;
    switch (*p) {
    case '$':
    case '=':
    case '!':
        q = read_header(p, end, &n);
        if (FAILED(q)) return q;
        if (n < 0) return n == -1 && *p == '$' ? q : MALFORMED;
        if (end - q < n + 2) return INCOMPLETE;
        if (q[n] != '\r' || q[n + 1] != '\n') return MALFORMED;
        return q + n + 2;
    case '*':
    case '~':
    case '>':
    case '%':
    case '|':
        q = read_header(p, end, &n);
        if (FAILED(q)) return q;
        if (n < 0) return n == -1 && *p == '*' ? q : MALFORMED;
        if (depth >= MAX_DEPTH) return MALFORMED;
        if (*p == '%' || *p == '|') n *= 2;
        for (long long k = 0; k < n; k++) {
            q = resp_skip(q, end, depth + 1);
            if (FAILED(q)) return q;
        }
        return q;
    case '+':
    case '-':
    case ':':
    case '_':
    case ',':
    case '#':
    case '(':
        return skip_line(p, end);
    default:
        return MALFORMED;
    }
}

/* The bulk string at *p, whole before end: its span, and *p moved past it;
 * 0 if there is none (never in an entry check_entry passed).  The length is
 * checked against end before q + n is formed: it comes from the network. */
static int take_bulk(const char **p, const char *end, Span *span) {
    long long n;
    if (*p >= end || **p != '$') return 0;
    const char *q = read_header(*p, end, &n);
    if (FAILED(q) || n < 0 || end - q < n + 2) return 0;
    span->p = q;
    span->n = (Py_ssize_t)n;
    *p = q + n + 2;
    return 1;
}

/* ------------------------------------------------------------ the entry check */

/* Where in an entry check_entry stopped, and why: the error message. */
enum { POS_ENTRY, POS_ID, POS_FIELDS, POS_FIELD };
enum { FAULT_TYPE, FAULT_HEADER, FAULT_LENGTH, FAULT_BULK_END };

typedef struct {
    int position; /* POS_* */
    Py_ssize_t field; /* POS_FIELD: the element's index in the field list */
    int fault; /* FAULT_* */
    char type; /* the element's type byte */
    long long length; /* FAULT_LENGTH: the count or length its header gave */
} EntryFault;

static const char *entry_fault(EntryFault *fault, int what, char type, long long length) {
    fault->fault = what, fault->type = type, fault->length = length;
    return MALFORMED;
}

/* The bulk string at p, checked (fault->position set by the caller): past it,
 * INCOMPLETE or MALFORMED. */
static const char *check_bulk(const char *p, const char *end, EntryFault *fault) {
    long long n;
    if (p >= end) return INCOMPLETE;
    if (*p != '$') return entry_fault(fault, FAULT_TYPE, *p, 0);
    const char *q = read_header(p, end, &n);
    if (q == INCOMPLETE) return q;
    if (q == MALFORMED) return entry_fault(fault, FAULT_HEADER, '$', 0);
    if (n < 0) return entry_fault(fault, FAULT_LENGTH, '$', n);
    if (end - q < n + 2) return INCOMPLETE;
    if (q[n] != '\r' || q[n + 1] != '\n') return entry_fault(fault, FAULT_BULK_END, '$', n);
    return q + n + 2;
}

/* The entry at p as Redis sends it (the grammar at the top): the position
 * past it; INCOMPLETE if the bytes end before it does; MALFORMED, with fault
 * set, as soon as a byte shows it is anything else.  Every entry a
 * ReplyEntries holds passed this: entry_object and reply_id_at read only
 * these shapes. */
static const char *check_entry(const char *p, const char *end, EntryFault *fault) {
    long long n;
    const char *q;
    fault->position = POS_ENTRY;
    if (p >= end) return INCOMPLETE;
    if (*p != '*') return entry_fault(fault, FAULT_TYPE, *p, 0);
    q = read_header(p, end, &n);
    if (q == INCOMPLETE) return q;
    if (q == MALFORMED) return entry_fault(fault, FAULT_HEADER, '*', 0);
    if (n != 2) return entry_fault(fault, FAULT_LENGTH, '*', n);
    fault->position = POS_ID;
    q = check_bulk(q, end, fault);
    if (FAILED(q)) return q;
    fault->position = POS_FIELDS;
    if (q >= end) return INCOMPLETE;
    if (*q == '_') { /* RESP3's null: exactly "_\r\n" */
        if (end - q < 3) return INCOMPLETE;
        if (q[1] != '\r' || q[2] != '\n') return entry_fault(fault, FAULT_HEADER, '_', 0);
        return q + 3;
    }
    if (*q != '*') return entry_fault(fault, FAULT_TYPE, *q, 0);
    p = q;
    q = read_header(p, end, &n);
    if (q == INCOMPLETE) return q;
    if (q == MALFORMED) return entry_fault(fault, FAULT_HEADER, '*', 0);
    if (n == -1) return q; /* RESP2's null array */
    if (n < 0 || n % 2 != 0) return entry_fault(fault, FAULT_LENGTH, '*', n);
    fault->position = POS_FIELD;
    for (fault->field = 0; fault->field < n; fault->field++) {
        q = check_bulk(q, end, fault);
        if (FAILED(q)) return q;
    }
    return q;
}

/* What a RESP type byte is, with its article; NULL for a byte that is none. */
static const char *type_name(char type) {
    switch (type) {
    case '*': return "an array";
    case '$': return "a bulk string";
    case '~': return "a set";
    case '%': return "a map";
    case '|': return "an attribute";
    case '>': return "a push";
    case ',': return "a double";
    case '(': return "a big number";
    case '#': return "a boolean";
    case '=': return "a verbatim string";
    case '!': return "a blob error";
    case '_': return "a null";
    case ':': return "an integer";
    case '+': return "a simple string";
    case '-': return "an error";
    default: return NULL;
    }
}

/* ValueError: entry `index` is not what Redis sends (fault says how). */
static PyObject *entry_malformed(Py_ssize_t index, const EntryFault *fault) {
    static const char *const where[] = {"the entry", "its id", "its field list"};
    static const char *const expected[] = {"an array of 2 (id, fields)", "a bulk string",
                                           "an array of field-value pairs, or a null", "a bulk string"};
    const char *head = "malformed reply from Redis: stream entry", *wanted = expected[fault->position];
    PyObject *place = fault->position == POS_FIELD
                          ? PyUnicode_FromFormat("element %zd of its field list", fault->field)
                          : PyUnicode_FromString(where[fault->position]);
    PyObject *what = NULL;
    if (place == NULL) return NULL;
    switch (fault->fault) {
    case FAULT_HEADER:
        PyErr_Format(PyExc_ValueError, "%s %zd: %U has a malformed header ('%c')", head, index, place, fault->type);
        goto done;
    case FAULT_BULK_END:
        PyErr_Format(PyExc_ValueError, "%s %zd: %U does not end where its length says", head, index, place);
        goto done;
    case FAULT_LENGTH:
        if (fault->length == -1)
            what = PyUnicode_FromString(fault->type == '*' ? "a null array" : "a null bulk string");
        else if (fault->type == '*')
            what = PyUnicode_FromFormat("an array of %lld elements", fault->length);
        else
            what = PyUnicode_FromFormat("a bulk string of length %lld", fault->length);
        break;
    default: /* FAULT_TYPE */
        if (type_name(fault->type) != NULL)
            what = PyUnicode_FromFormat("%s ('%c')", type_name(fault->type), fault->type);
        else
            what = PyUnicode_FromFormat("the byte 0x%x, no RESP type", (unsigned char)fault->type);
    }
    if (what != NULL)
        PyErr_Format(PyExc_ValueError, "%s %zd: %U is %U; Redis sends %s there", head, index, place, what, wanted);
done:
    Py_DECREF(place);
    Py_XDECREF(what);
    return NULL;
}

/* Offsets into the reply's buffer (it moves while the reply is read). */
typedef struct {
    Py_ssize_t begin, end; /* the whole entry, [id, [field, value, ...]] */
    /* id, record, client, catcher, received, seq: as Usual has them (seq's
     * size -1 when the entry has none) */
    Py_ssize_t offset[6], size[6];
    int usual;
} EntryRow;

/* What read_usual_entry returns for anything but the usual entry. */
static const char not_usual_;
#define NOT_USUAL (&not_usual_)

/* The bulk string at p, complete: its span, and the position past it. */
static const char *usual_bulk(const char *p, const char *end, Span *span) {
    long long n;
    if (p >= end) return INCOMPLETE;
    if (*p != '$') return NOT_USUAL;
    const char *q = read_header(p, end, &n);
    if (q == INCOMPLETE) return INCOMPLETE;
    if (q == MALFORMED || n < 0) return NOT_USUAL;
    if (end - q < n + 2) return INCOMPLETE;
    if (q[n] != '\r' || q[n + 1] != '\n') return NOT_USUAL; /* check_entry then says what is wrong */
    span->p = q;
    span->n = (Py_ssize_t)n;
    return q + n + 2;
}

/* The usual entry at p, [id, [v, 1, record, R, client, C, catcher, K,
 * received, T]] or [id, [..., received, T, seq, S]], in one pass: fills row
 * and returns the position past it; INCOMPLETE if the bytes end before it
 * does (read again from p with more); NOT_USUAL for any other element, which
 * the caller reads with check_entry. */
static const char *read_usual_entry(const char *data, const char *p, const char *end, EntryRow *row) {
    long long n;
    const char *begin = p;
    Span id, fields[USUAL_FIELDS_WITH_SEQ];
    if (p >= end) return INCOMPLETE;
    if (*p != '*') return NOT_USUAL;
    p = read_header(p, end, &n);
    if (p == INCOMPLETE || p == MALFORMED) return p == INCOMPLETE ? INCOMPLETE : NOT_USUAL;
    if (n != 2) return NOT_USUAL;
    p = usual_bulk(p, end, &id);
    if (FAILED(p) || p == NOT_USUAL) return p == INCOMPLETE ? INCOMPLETE : NOT_USUAL;
    if (p >= end) return INCOMPLETE;
    if (*p != '*') return NOT_USUAL;
    p = read_header(p, end, &n);
    if (p == INCOMPLETE || p == MALFORMED) return p == INCOMPLETE ? INCOMPLETE : NOT_USUAL;
    /* the count checked before any field is read into fields[] */
    if (n != USUAL_FIELDS_WITHOUT_SEQ && n != USUAL_FIELDS_WITH_SEQ) return NOT_USUAL;
    for (int k = 0; k < (int)n; k++) {
        p = usual_bulk(p, end, &fields[k]);
        if (p == INCOMPLETE || p == NOT_USUAL) return p;
    }
    if (!usual_fields(fields, (Py_ssize_t)n) || !is_stream_id_span(id)) return NOT_USUAL;
    Usual usual;
    usual_values(&usual, id, fields, (Py_ssize_t)n);
    const Span values[6] = {usual.id, usual.record, usual.client, usual.catcher, usual.received, usual.seq};
    for (int k = 0; k < 6; k++) {
        /* an absent seq keeps its -1 and no offset: NULL - data is undefined */
        if (values[k].n < 0) {
            row->offset[k] = 0, row->size[k] = -1;
            continue;
        }
        row->offset[k] = values[k].p - data;
        row->size[k] = values[k].n;
    }
    row->begin = begin - data, row->end = p - data, row->usual = 1;
    return p;
}

/* ------------------------------------------------------------ ReplyEntries */

typedef struct {
    PyObject_HEAD
    PyObject *owner; /* NULL: owns data and rows; else the ReplyEntries this one is a slice of */
    char *data;
    EntryRow *rows;
    Py_ssize_t count;
} ReplyEntries;

static PyTypeObject ReplyEntriesType;

int is_reply_entries(PyObject *object) { return Py_IS_TYPE(object, &ReplyEntriesType); }

Py_ssize_t reply_entries_count(PyObject *object) { return ((ReplyEntries *)object)->count; }

static Span row_span(const ReplyEntries *entries, const EntryRow *row, int k) {
    Span span = {entries->data + row->offset[k], row->size[k]};
    if (row->size[k] < 0) span.p = NULL; /* seq absent: as Usual says it */
    return span;
}

int reply_usual_at(PyObject *object, Py_ssize_t i, Usual *usual) {
    ReplyEntries *entries = (ReplyEntries *)object;
    const EntryRow *row = &entries->rows[i];
    if (!row->usual) return 0;
    usual->id = row_span(entries, row, 0);
    usual->record = row_span(entries, row, 1);
    usual->client = row_span(entries, row, 2);
    usual->catcher = row_span(entries, row, 3);
    usual->received = row_span(entries, row, 4);
    usual->seq = row_span(entries, row, 5);
    return 1;
}

/* The id of a checked entry, [id, ...]: its first element, a bulk string. */
Span reply_id_at(PyObject *object, Py_ssize_t i) {
    ReplyEntries *entries = (ReplyEntries *)object;
    const EntryRow *row = &entries->rows[i];
    if (row->usual) return row_span(entries, row, 0);
    const char *p = entries->data + row->begin, *end = entries->data + row->end;
    long long n;
    Span id = {NULL, -1}; /* only if the row were not a checked entry */
    p = read_header(p, end, &n);
    if (!FAILED(p)) take_bulk(&p, end, &id);
    return id;
}

/* Entry i as hiredis makes it (without an encoding): [id, [field, value,
 * ...]] of bytes, or [id, None].  The row passed check_entry, so the reads
 * below cannot fail; each is still bounded by the row's end. */
static PyObject *entry_object(ReplyEntries *entries, Py_ssize_t i) {
    const EntryRow *row = &entries->rows[i];
    const char *p = entries->data + row->begin, *end = entries->data + row->end;
    long long n;
    Span id, field;
    PyObject *fields = NULL, *id_bytes = NULL, *entry;
    p = read_header(p, end, &n); /* "*2" */
    if (FAILED(p) || !take_bulk(&p, end, &id) || p >= end) goto broken;
    if (*p == '_') {
        fields = Py_NewRef(Py_None);
    } else {
        p = read_header(p, end, &n);
        if (FAILED(p) || n < -1 || n > end - p) goto broken;
        if (n == -1) {
            fields = Py_NewRef(Py_None);
        } else {
            fields = PyList_New((Py_ssize_t)n);
            if (fields == NULL) return NULL;
            for (Py_ssize_t k = 0; k < (Py_ssize_t)n; k++) {
                if (!take_bulk(&p, end, &field)) goto broken;
                PyObject *value = PyBytes_FromStringAndSize(field.p, field.n);
                if (value == NULL) goto error;
                PyList_SET_ITEM(fields, k, value);
            }
        }
    }
    id_bytes = PyBytes_FromStringAndSize(id.p, id.n);
    if (id_bytes == NULL) goto error;
    entry = PyList_New(2);
    if (entry == NULL) goto error;
    PyList_SET_ITEM(entry, 0, id_bytes);
    PyList_SET_ITEM(entry, 1, fields);
    return entry;
broken:
    PyErr_Format(PyExc_SystemError, "ReplyEntries: entry %zd is not one check_entry passed", i);
error:
    Py_XDECREF(fields);
    Py_XDECREF(id_bytes);
    return NULL;
}

static Py_ssize_t entries_length(PyObject *self) { return ((ReplyEntries *)self)->count; }

static PyObject *entries_item(PyObject *self, Py_ssize_t i) {
    ReplyEntries *entries = (ReplyEntries *)self;
    if (i < 0 || i >= entries->count) {
        PyErr_SetString(PyExc_IndexError, "ReplyEntries index out of range");
        return NULL;
    }
    return entry_object(entries, i);
}

static PyObject *entries_subscript(PyObject *self, PyObject *key) {
    ReplyEntries *entries = (ReplyEntries *)self;
    if (PyIndex_Check(key)) {
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred()) return NULL;
        if (i < 0) i += entries->count;
        return entries_item(self, i);
    }
    if (!PySlice_Check(key)) {
        PyErr_Format(PyExc_TypeError, "ReplyEntries indices must be integers or slices, not %.200s",
                     Py_TYPE(key)->tp_name);
        return NULL;
    }
    Py_ssize_t start, stop, step;
    if (PySlice_Unpack(key, &start, &stop, &step) < 0) return NULL;
    Py_ssize_t length = PySlice_AdjustIndices(entries->count, &start, &stop, step);
    if (step != 1) {
        PyObject *list = PyList_New(length);
        if (list == NULL) return NULL;
        for (Py_ssize_t k = 0, i = start; k < length; k++, i += step) {
            PyObject *item = entry_object(entries, i);
            if (item == NULL) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, k, item);
        }
        return list;
    }
    ReplyEntries *slice = PyObject_New(ReplyEntries, &ReplyEntriesType);
    if (slice == NULL) return NULL;
    slice->owner = Py_NewRef(entries->owner != NULL ? entries->owner : self);
    slice->data = entries->data;
    /* No entries, no rows: rows may be NULL, and NULL + 0 is undefined. */
    slice->rows = length > 0 ? entries->rows + start : NULL;
    slice->count = length;
    return (PyObject *)slice;
}

static void entries_dealloc(PyObject *self) {
    ReplyEntries *entries = (ReplyEntries *)self;
    if (entries->owner != NULL) {
        Py_DECREF(entries->owner);
    } else {
        PyMem_Free(entries->data);
        PyMem_Free(entries->rows);
    }
    PyObject_Free(self);
}

static PySequenceMethods entries_as_sequence = {.sq_length = entries_length, .sq_item = entries_item};
static PyMappingMethods entries_as_mapping = {.mp_length = entries_length, .mp_subscript = entries_subscript};

static PyTypeObject ReplyEntriesType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "consumers._read_replies.ReplyEntries",
    .tp_basicsize = sizeof(ReplyEntries),
    .tp_dealloc = entries_dealloc,
    .tp_as_sequence = &entries_as_sequence,
    .tp_as_mapping = &entries_as_mapping,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_SEQUENCE,
    .tp_doc = "The entries of one read reply, kept as its bytes; an item is built as [id, [field, value, ...]] "
              "when asked for.",
};

/* ------------------------------------------------------------ ReplyReader */

enum { AT_HEAD, AT_ENTRIES, AT_OTHER, DONE };
enum { KIND_ENTRIES, KIND_NIL, KIND_ERROR, KIND_OTHER };

typedef struct {
    PyObject_HEAD
    char *data;
    Py_ssize_t size, capacity;
    int stage;
    Py_ssize_t position; /* AT_ENTRIES: where the next entry starts */
    Py_ssize_t announced; /* AT_ENTRIES: how many entries the reply holds */
    EntryRow *rows;
    Py_ssize_t count, rows_capacity;
} ReplyReader;

static PyObject *reader_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "ReplyReader() takes no arguments");
        return NULL;
    }
    ReplyReader *reader = (ReplyReader *)type->tp_alloc(type, 0);
    if (reader != NULL) reader->stage = AT_HEAD;
    return (PyObject *)reader;
}

static void reader_dealloc(PyObject *self) {
    ReplyReader *reader = (ReplyReader *)self;
    PyMem_Free(reader->data);
    PyMem_Free(reader->rows);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *malformed(const char *what) {
    PyErr_Format(PyExc_ValueError, "malformed reply from Redis: %s", what);
    return NULL;
}

/* The reply ended at q: fail if bytes follow it (nothing else was asked). */
static int ends_at(ReplyReader *reader, const char *q) {
    if (q != reader->data + reader->size) {
        PyErr_SetString(PyExc_ValueError, "malformed reply from Redis: bytes after the reply");
        return -1;
    }
    reader->stage = DONE;
    return 0;
}

static PyObject *result(int kind, PyObject *value) {
    if (value == NULL) return NULL;
    PyObject *pair = Py_BuildValue("(iN)", kind, value);
    return pair;
}

/* The header of the map or array holding one stream's name and its entries,
 * *1 *2 $name *count (RESP2) or %1 $name *count (RESP3), at p.  Returns the
 * position of the first entry (count set); INCOMPLETE; or MALFORMED for any
 * other reply (which the general parser then reads). */
static const char *entries_header(const char *p, const char *end, long long *count) {
    long long n;
    const char *q = read_header(p, end, &n);
    if (FAILED(q)) return q;
    if (n != 1) return MALFORMED;
    if (*p == '*') {
        if (q >= end) return INCOMPLETE;
        if (*q != '*') return MALFORMED;
        q = read_header(q, end, &n);
        if (FAILED(q)) return q;
        if (n != 2) return MALFORMED;
    }
    q = resp_skip(q, end, 2); /* the stream's name */
    if (FAILED(q)) return q;
    if (q >= end) return INCOMPLETE;
    if (*q != '*') return MALFORMED;
    q = read_header(q, end, count);
    if (FAILED(q)) return q;
    return *count < 0 ? MALFORMED : q;
}

/* AT_HEAD: what the reply is.  None (more bytes needed), a result, or NULL:
 * with an error set, a failure; without, go on at the stage set. */
static PyObject *read_head(ReplyReader *reader) {
    const char *p = reader->data, *end = p + reader->size, *q;
    long long n;
    /* RESP3 pushes and attributes come out of band, before a reply: not
     * ours (this connection subscribes to nothing), skipped. */
    while (p < end && (*p == '>' || *p == '|')) {
        q = resp_skip(p, end, 0);
        if (q == INCOMPLETE) break;
        if (q == MALFORMED) return malformed("push");
        p = q;
    }
    if (p > reader->data) {
        reader->size = end - p;
        memmove(reader->data, p, (size_t)reader->size);
        p = reader->data, end = p + reader->size;
    }
    if (p == end || *p == '>' || *p == '|') Py_RETURN_NONE;
    switch (*p) {
    case '-':
        q = skip_line(p, end);
        if (q == INCOMPLETE) Py_RETURN_NONE;
        if (q == MALFORMED) return malformed("error reply");
        if (ends_at(reader, q) < 0) return NULL;
        return result(KIND_ERROR, PyBytes_FromStringAndSize(p + 1, q - 2 - (p + 1)));
    case '_':
        q = skip_line(p, end);
        if (q == INCOMPLETE) Py_RETURN_NONE;
        if (q == MALFORMED || q != p + 3) return malformed("null");
        if (ends_at(reader, q) < 0) return NULL;
        return result(KIND_NIL, Py_NewRef(Py_None));
    case '*':
        q = read_header(p, end, &n);
        if (q == INCOMPLETE) Py_RETURN_NONE;
        if (q != MALFORMED && n == -1) {
            if (ends_at(reader, q) < 0) return NULL;
            return result(KIND_NIL, Py_NewRef(Py_None));
        }
        /* fall through */
    case '%':
        q = entries_header(p, end, &n);
        if (q == INCOMPLETE) Py_RETURN_NONE;
        if (q != MALFORMED) {
            reader->stage = AT_ENTRIES;
            reader->position = q - reader->data;
            reader->announced = (Py_ssize_t)n;
            return NULL;
        }
    }
    reader->stage = AT_OTHER;
    return NULL;
}

static PyObject *read_entries(ReplyReader *reader) {
    const char *end = reader->data + reader->size;
    while (reader->count < reader->announced) {
        if (reader->count == reader->rows_capacity) {
            Py_ssize_t capacity = reader->rows_capacity ? reader->rows_capacity * 2 : 256;
            if (capacity > reader->announced) capacity = reader->announced;
            EntryRow *rows = PyMem_Realloc(reader->rows, (size_t)capacity * sizeof(EntryRow));
            if (rows == NULL) return PyErr_NoMemory();
            reader->rows = rows;
            reader->rows_capacity = capacity;
        }
        const char *p = reader->data + reader->position;
        EntryRow *row = &reader->rows[reader->count];
        const char *q = read_usual_entry(reader->data, p, end, row);
        if (q == INCOMPLETE) Py_RETURN_NONE;
        if (q == NOT_USUAL) {
            EntryFault fault;
            q = check_entry(p, end, &fault);
            if (q == INCOMPLETE) Py_RETURN_NONE;
            if (q == MALFORMED) return entry_malformed(reader->count, &fault);
            row->begin = p - reader->data, row->end = q - reader->data, row->usual = 0;
        }
        reader->count++;
        reader->position = q - reader->data;
    }
    if (ends_at(reader, reader->data + reader->position) < 0) return NULL;
    ReplyEntries *entries = PyObject_New(ReplyEntries, &ReplyEntriesType);
    if (entries == NULL) return NULL;
    /* The buffer and the rows go to the entries. */
    entries->owner = NULL;
    entries->data = reader->data;
    entries->rows = reader->rows;
    entries->count = reader->count;
    reader->data = NULL, reader->size = reader->capacity = 0;
    reader->rows = NULL, reader->count = reader->rows_capacity = 0;
    return result(KIND_ENTRIES, (PyObject *)entries);
}

static PyObject *reader_feed(PyObject *self, PyObject *arg) {
    ReplyReader *reader = (ReplyReader *)self;
    Py_buffer view;
    if (reader->stage == DONE) {
        PyErr_SetString(PyExc_ValueError, "ReplyReader: the reply was read already");
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    if (view.len > PY_SSIZE_T_MAX - reader->size) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    if (reader->size + view.len > reader->capacity) {
        Py_ssize_t capacity = reader->capacity ? reader->capacity : 65536;
        /* doubling, but never past what a Py_ssize_t holds */
        while (capacity < reader->size + view.len)
            capacity = capacity > PY_SSIZE_T_MAX / 2 ? reader->size + view.len : capacity * 2;
        char *data = PyMem_Realloc(reader->data, (size_t)capacity);
        if (data == NULL) {
            PyBuffer_Release(&view);
            return PyErr_NoMemory();
        }
        reader->data = data;
        reader->capacity = capacity;
    }
    if (view.len) memcpy(reader->data + reader->size, view.buf, (size_t)view.len);
    reader->size += view.len;
    PyBuffer_Release(&view);
    if (reader->size == 0) Py_RETURN_NONE;
    if (reader->stage == AT_HEAD) {
        PyObject *found = read_head(reader);
        if (found != NULL || PyErr_Occurred()) return found;
    }
    if (reader->stage == AT_ENTRIES) return read_entries(reader);
    /* AT_OTHER */
    const char *q = resp_skip(reader->data, reader->data + reader->size, 0);
    if (q == INCOMPLETE) Py_RETURN_NONE;
    if (q == MALFORMED) return malformed("not RESP");
    if (ends_at(reader, q) < 0) return NULL;
    return result(KIND_OTHER, PyBytes_FromStringAndSize(reader->data, reader->size));
}

static PyMethodDef reader_methods[] = {
    {"feed", reader_feed, METH_O,
     "feed(data) -> None until the reply is complete, then (kind, value): (0, ReplyEntries), (1, None), "
     "(2, error message), (3, raw reply)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReplyReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "consumers._read_replies.ReplyReader",
    .tp_basicsize = sizeof(ReplyReader),
    .tp_dealloc = reader_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = reader_new,
    .tp_methods = reader_methods,
    .tp_doc = "Reads one reply from Redis's bytes; an XREADGROUP reply's entries without an object per field.",
};

int add_reply_types(PyObject *module) {
    if (PyType_Ready(&ReplyEntriesType) < 0 || PyType_Ready(&ReplyReaderType) < 0) return -1;
    if (PyModule_AddObjectRef(module, "ReplyEntries", (PyObject *)&ReplyEntriesType) < 0) return -1;
    return PyModule_AddObjectRef(module, "ReplyReader", (PyObject *)&ReplyReaderType);
}
