/* What the parts of consumers._stream_entries share.
 *
 *   _stream_entries.c  the module: entries, JSON lines, XACK ids
 *   _text_lines.c      text lines of a logging format
 */
#ifndef CONSUMERS_STREAM_ENTRIES_H
#define CONSUMERS_STREAM_ENTRIES_H

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

static inline int is_name(PyObject *value, const char *name, Py_ssize_t size) {
    return PyBytes_CheckExact(value) && PyBytes_GET_SIZE(value) == size &&
           memcmp(PyBytes_AS_STRING(value), name, (size_t)size) == 0;
}

/* A stream id as Redis writes them: digits, one dash, digits. */
static inline int is_stream_id(PyObject *value) {
    if (!PyBytes_CheckExact(value)) return 0;
    const char *p = PyBytes_AS_STRING(value);
    Py_ssize_t n = PyBytes_GET_SIZE(value);
    int dashes = 0;
    if (n < 3 || p[0] == '-' || p[n - 1] == '-') return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (p[i] == '-') dashes++;
        else if (p[i] < '0' || p[i] > '9') return 0;
    }
    return dashes == 1;
}

/* Two bytes objects (the caller checked both are) with the same contents:
 * without PyObject_RichCompareBool's generic dispatch, which the renderers
 * paid three times per entry (the parser makes new objects for every entry,
 * so the identity check before this one rarely hits). */
static inline int same_bytes(PyObject *a, PyObject *b) {
    return a == b || (PyBytes_GET_SIZE(a) == PyBytes_GET_SIZE(b) &&
                      memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(a)) == 0);
}

static inline int is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* The usual entry's fields, as a catcher writes them: v=1, record, client,
 * catcher, received, in that order, all bytes, under an id of digits and one
 * dash.  Sets the four values (borrowed); 0 if the item is anything else. */
static inline int usual_entry(PyObject *item, PyObject **id, PyObject **record, PyObject **client,
                              PyObject **catcher, PyObject **received) {
    if (!PyList_CheckExact(item) || PyList_GET_SIZE(item) != 2) return 0;
    PyObject *fields = PyList_GET_ITEM(item, 1);
    *id = PyList_GET_ITEM(item, 0);
    if (!is_stream_id(*id) || !PyList_CheckExact(fields) || PyList_GET_SIZE(fields) != 10) return 0;
    if (!is_name(PyList_GET_ITEM(fields, 0), "v", 1) || !is_name(PyList_GET_ITEM(fields, 1), "1", 1) ||
        !is_name(PyList_GET_ITEM(fields, 2), "record", 6) || !is_name(PyList_GET_ITEM(fields, 4), "client", 6) ||
        !is_name(PyList_GET_ITEM(fields, 6), "catcher", 7) || !is_name(PyList_GET_ITEM(fields, 8), "received", 8))
        return 0;
    *record = PyList_GET_ITEM(fields, 3);
    *client = PyList_GET_ITEM(fields, 5);
    *catcher = PyList_GET_ITEM(fields, 7);
    *received = PyList_GET_ITEM(fields, 9);
    return PyBytes_CheckExact(*record) && PyBytes_CheckExact(*client) && PyBytes_CheckExact(*catcher) &&
           PyBytes_CheckExact(*received);
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

/* The JSON object check of _json_scan.h on a bytes record (1: sure it is
 * one); names_logrelay as there, or NULL. */
int record_check(PyObject *record, int *names_logrelay);

#endif
