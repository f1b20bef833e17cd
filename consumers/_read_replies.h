/* What the parts of consumers._read_replies share.
 *
 *   _read_replies.c         the module: entries, JSON lines, XACK ids
 *   _read_replies_lines.c   text lines of a logging format
 *   _read_replies_parser.c  ReplyReader, ReplyEntries: a read reply kept as its bytes
 */
#ifndef CONSUMERS_READ_REPLIES_H
#define CONSUMERS_READ_REPLIES_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

typedef struct {
    char *data;
    Py_ssize_t size, capacity;
} Buffer;

static inline int buffer_reserve(Buffer *b, Py_ssize_t more) {
    if (b->size + more <= b->capacity) return 0;
    Py_ssize_t capacity = b->capacity ? b->capacity : 65536;
    while (capacity < b->size + more) {
        if (capacity > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        capacity *= 2;
    }
    char *data = PyMem_Realloc(b->data, (size_t)capacity);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->capacity = capacity;
    return 0;
}

static inline void buffer_put(Buffer *b, const char *data, Py_ssize_t size) {
    if (size == 0) return; /* an empty buffer may have no memory yet */
    memcpy(b->data + b->size, data, (size_t)size);
    b->size += size;
}

/* End the run of rendered lines: its bytes become one piece. */
static inline int flush_lines(Buffer *b, PyObject *pieces) {
    if (b->size == 0) return 0;
    PyObject *chunk = PyBytes_FromStringAndSize(b->data, b->size);
    if (chunk == NULL) return -1;
    int failed = PyList_Append(pieces, chunk);
    Py_DECREF(chunk);
    b->size = 0;
    return failed;
}

/* Bytes in place: in a bytes object, or in the buffer of a ReplyEntries. */
typedef struct {
    const char *p;
    Py_ssize_t n;
} Span;

static inline Span span_of(PyObject *bytes) {
    Span span = {PyBytes_AS_STRING(bytes), PyBytes_GET_SIZE(bytes)};
    return span;
}

static inline int same_span(Span a, Span b) {
    return a.n == b.n && (a.p == b.p || memcmp(a.p, b.p, (size_t)a.n) == 0);
}

/* A stream id as Redis writes them: digits, one dash, digits. */
static inline int is_stream_id_span(Span id) {
    int dashes = 0;
    if (id.n < 3 || id.p[0] == '-' || id.p[id.n - 1] == '-') return 0;
    for (Py_ssize_t i = 0; i < id.n; i++) {
        if (id.p[i] == '-') dashes++;
        else if (id.p[i] < '0' || id.p[i] > '9') return 0;
    }
    return dashes == 1;
}

static inline int is_stream_id(PyObject *value) {
    return PyBytes_CheckExact(value) && is_stream_id_span(span_of(value));
}

static inline int is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* The values of the usual entry, as a catcher writes it: fields exactly v=1,
 * record, client, catcher, received, in that order, then, in an entry
 * written since records have an identity, seq (relay.common.stream), under
 * an id of digits and one dash.  seq is {NULL, -1} in an entry of ten fields
 * (written before, or replayed from the dead letters): absent, not empty. */
typedef struct {
    Span id, record, client, catcher, received, seq;
} Usual;

/* The two lengths of a usual entry's field list. */
#define USUAL_FIELDS_WITHOUT_SEQ 10
#define USUAL_FIELDS_WITH_SEQ 12

/* _read_replies_parser.c: the entries of a reply read from its bytes. */
int is_reply_entries(PyObject *object);
Py_ssize_t reply_entries_count(PyObject *object);
int reply_usual_at(PyObject *object, Py_ssize_t i, Usual *usual);
Span reply_id_at(PyObject *object, Py_ssize_t i); /* n == -1: the entry has no bytes id */
int add_reply_types(PyObject *module);

/* How many entries a reply's entry list holds: a list (as hiredis makes
 * it) or a ReplyEntries; -1 for anything else. */
static inline Py_ssize_t entries_count(PyObject *items) {
    if (PyList_CheckExact(items)) return PyList_GET_SIZE(items);
    if (is_reply_entries(items)) return reply_entries_count(items);
    return -1;
}

/* Whether an entry's field list, of count fields, is the usual one: v=1,
 * record, client, catcher, received, in that order (values at 3, 5, 7 and 9),
 * and nothing else, or those and seq (its value at 11).  The names are the
 * stream contract's (tests/relay/common/test_stream.py reads this table). */
static inline int usual_fields(const Span *fields, Py_ssize_t count) {
    static const struct {
        int at;
        const char *text;
        Py_ssize_t size;
    } names[7] = {{0, "v", 1},       {1, "1", 1},        {2, "record", 6}, {4, "client", 6},
                  {6, "catcher", 7}, {8, "received", 8}, {10, "seq", 3}};
    if (count != USUAL_FIELDS_WITHOUT_SEQ && count != USUAL_FIELDS_WITH_SEQ) return 0;
    for (int k = 0; k < 7 && names[k].at < count; k++) {
        Span name = fields[names[k].at];
        if (name.n != names[k].size || memcmp(name.p, names[k].text, (size_t)name.n) != 0) return 0;
    }
    return 1;
}

/* The usual entry's values from its checked field list (usual_fields said yes). */
static inline void usual_values(Usual *usual, Span id, const Span *fields, Py_ssize_t count) {
    Span absent = {NULL, -1};
    usual->id = id;
    usual->record = fields[3];
    usual->client = fields[5];
    usual->catcher = fields[7];
    usual->received = fields[9];
    usual->seq = count == USUAL_FIELDS_WITH_SEQ ? fields[11] : absent;
}

/* Entry i of items (entries_count said it is one of the two), if it is the
 * usual entry: sets its values (borrowed: items holds them); 0 if it is
 * anything else. */
static inline int usual_at(PyObject *items, Py_ssize_t i, Usual *usual) {
    if (!PyList_CheckExact(items)) return reply_usual_at(items, i, usual);
    PyObject *item = PyList_GET_ITEM(items, i);
    if (!PyList_CheckExact(item) || PyList_GET_SIZE(item) != 2) return 0;
    PyObject *id = PyList_GET_ITEM(item, 0), *list = PyList_GET_ITEM(item, 1);
    if (!is_stream_id(id) || !PyList_CheckExact(list)) return 0;
    Py_ssize_t count = PyList_GET_SIZE(list);
    if (count != USUAL_FIELDS_WITHOUT_SEQ && count != USUAL_FIELDS_WITH_SEQ) return 0;
    Span fields[USUAL_FIELDS_WITH_SEQ];
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *field = PyList_GET_ITEM(list, k);
        if (!PyBytes_CheckExact(field)) return 0;
        fields[k] = span_of(field);
    }
    if (!usual_fields(fields, count)) return 0;
    usual_values(usual, span_of(id), fields, count);
    return 1;
}

/* The metadata of a run of entries sharing client, catcher and received:
 * metadata(client, catcher, received) called once per run, its result kept. */
typedef struct {
    PyObject *function;
    PyObject *value; /* the current run's, or NULL */
    Span client, catcher, received; /* what it was made from (items hold them) */
} MetadataRun;

/* Load the run's metadata for this entry: 0 (value set) or -1. */
static inline int metadata_for(MetadataRun *run, const Usual *usual) {
    if (run->value != NULL && same_span(usual->client, run->client) && same_span(usual->catcher, run->catcher) &&
        same_span(usual->received, run->received)) {
        run->client = usual->client, run->catcher = usual->catcher, run->received = usual->received;
        return 0;
    }
    PyObject *client = PyBytes_FromStringAndSize(usual->client.p, usual->client.n);
    PyObject *catcher = PyBytes_FromStringAndSize(usual->catcher.p, usual->catcher.n);
    PyObject *received = PyBytes_FromStringAndSize(usual->received.p, usual->received.n);
    PyObject *value = NULL;
    if (client != NULL && catcher != NULL && received != NULL)
        value = PyObject_CallFunctionObjArgs(run->function, client, catcher, received, NULL);
    Py_XDECREF(client);
    Py_XDECREF(catcher);
    Py_XDECREF(received);
    if (value == NULL) return -1;
    Py_XSETREF(run->value, value);
    run->client = usual->client, run->catcher = usual->catcher, run->received = usual->received;
    return 0;
}

/* Append the index of an entry left to the caller, after the lines before it. */
static inline int leave_to_caller(Buffer *out, PyObject *pieces, Py_ssize_t index) {
    if (flush_lines(out, pieces) < 0) return -1;
    PyObject *number = PyLong_FromSsize_t(index);
    if (number == NULL) return -1;
    int failed = PyList_Append(pieces, number);
    Py_DECREF(number);
    return failed;
}

PyObject *text_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* The JSON object check of _json_scan.h on a record (1: sure it is one);
 * names_logrelay as there, or NULL. */
int record_check(Span record, int *names_logrelay);

#endif
