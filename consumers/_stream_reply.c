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
 * Why: hiredis makes two lists and eleven bytes objects of every entry, and
 * creating and freeing them was about a quarter of the file consumer's CPU
 * (perf).  Here an entry is a row of offsets into the one buffer the reply
 * was read into; json_lines and text_lines read the usual entries from it
 * (usual_at in _stream_entries.c), and any other entry, or any index a
 * caller asks for, is built as the list hiredis would have made
 * ([id, [field, value, ...]]), so every Python path works unchanged.
 * tests/consumers/test_streamreply.py checks that against hiredis.
 */
#include "_stream_entries.h"

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

/* The bulk string at *p (within an element known complete): its span; 0 if
 * the element there is anything else.  Moves *p past it. */
static int take_bulk(const char **p, const char *end, Span *span) {
    long long n;
    if (**p != '$') return 0;
    const char *q = read_header(*p, end, &n);
    if (FAILED(q) || n < 0) return 0;
    span->p = q;
    span->n = (Py_ssize_t)n;
    *p = q + n + 2;
    return 1;
}

/* Offsets into the reply's buffer (it moves while the reply is read). */
typedef struct {
    Py_ssize_t begin, end; /* the whole entry, [id, [field, value, ...]] */
    Py_ssize_t offset[5], size[5]; /* id, record, client, catcher, received */
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
    if (q[n] != '\r' || q[n + 1] != '\n') return NOT_USUAL; /* resp_skip then says what is wrong */
    span->p = q;
    span->n = (Py_ssize_t)n;
    return q + n + 2;
}

/* The usual entry at p, [id, [v, 1, record, R, client, C, catcher, K,
 * received, T]], in one pass: fills row and returns the position past it;
 * INCOMPLETE if the bytes end before it does (read again from p with more);
 * NOT_USUAL for any other element, which the caller reads with resp_skip. */
static const char *read_usual_entry(const char *data, const char *p, const char *end, EntryRow *row) {
    long long n;
    const char *begin = p;
    Span id, fields[10];
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
    if (n != 10) return NOT_USUAL;
    for (int k = 0; k < 10; k++) {
        p = usual_bulk(p, end, &fields[k]);
        if (p == INCOMPLETE || p == NOT_USUAL) return p;
    }
    if (!usual_fields(fields) || !is_stream_id_span(id)) return NOT_USUAL;
    const Span values[5] = {id, fields[3], fields[5], fields[7], fields[9]};
    for (int k = 0; k < 5; k++) {
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
    return 1;
}

Span reply_id_at(PyObject *object, Py_ssize_t i) {
    ReplyEntries *entries = (ReplyEntries *)object;
    const EntryRow *row = &entries->rows[i];
    if (row->usual) return row_span(entries, row, 0);
    /* [id, ...] with a bulk id: its first element */
    const char *p = entries->data + row->begin, *end = entries->data + row->end;
    long long n;
    Span id = {NULL, -1};
    if (*p != '*') return id;
    p = read_header(p, end, &n);
    if (!FAILED(p) && n >= 1) take_bulk(&p, end, &id); /* leaves id as it is if not a bulk */
    return id;
}

/* The element at *p as hiredis makes it (without an encoding): lists,
 * bytes, None, ints.  The element is complete (resp_skip said so). */
static PyObject *to_python(const char **p, const char *end, int depth) {
    long long n;
    const char *q;
    char type = **p;
    if (type == '$') {
        q = read_header(*p, end, &n);
        if (FAILED(q)) goto bad;
        if (n < 0) {
            *p = q;
            Py_RETURN_NONE;
        }
        *p = q + n + 2;
        return PyBytes_FromStringAndSize(q, (Py_ssize_t)n);
    }
    if (type == '*') {
        q = read_header(*p, end, &n);
        if (FAILED(q) || depth >= MAX_DEPTH) goto bad;
        *p = q;
        if (n < 0) Py_RETURN_NONE;
        PyObject *list = PyList_New((Py_ssize_t)n);
        if (list == NULL) return NULL;
        for (Py_ssize_t k = 0; k < (Py_ssize_t)n; k++) {
            PyObject *item = to_python(p, end, depth + 1);
            if (item == NULL) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, k, item);
        }
        return list;
    }
    if (type == ':') {
        q = read_integer(*p, end, &n, 18);
        if (FAILED(q)) goto bad;
        *p = q;
        return PyLong_FromLongLong(n);
    }
    if (type == '+') {
        q = skip_line(*p, end);
        if (FAILED(q)) goto bad;
        const char *text = *p + 1;
        *p = q;
        return PyBytes_FromStringAndSize(text, q - 2 - text);
    }
bad:
    PyErr_Format(PyExc_ValueError, "stream entry: unexpected RESP element of type %c", type);
    return NULL;
}

static PyObject *entry_object(ReplyEntries *entries, Py_ssize_t i) {
    const EntryRow *row = &entries->rows[i];
    const char *p = entries->data + row->begin;
    return to_python(&p, entries->data + row->end, 0);
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
    slice->rows = entries->rows + start;
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
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "consumers._stream_entries.ReplyEntries",
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
            q = resp_skip(p, end, 3);
            if (q == INCOMPLETE) Py_RETURN_NONE;
            if (q == MALFORMED) return malformed("stream entry");
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
    if (reader->size + view.len > reader->capacity) {
        Py_ssize_t capacity = reader->capacity ? reader->capacity : 65536;
        while (capacity < reader->size + view.len) capacity *= 2;
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
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "consumers._stream_entries.ReplyReader",
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
