/* The records of a publish batch in Redis's wire format (RESP), in one pass.
 *
 * record_args(batch: list) -> tuple[bytes, int] | None
 *
 * For every record entry of the batch (a 3-tuple: record bytes, client str,
 * received str), in order, its three script arguments as RESP bulk strings:
 * $<len>\r\n<record>\r\n$<len>\r\n<client>\r\n$<len>\r\n<received>\r\n.
 * Dead-letter entries (4-tuples) are skipped: they follow the records in
 * the script's arguments and are packed by the caller.  The int is how many
 * records there were.  Anything else
 * returns None and the Python reference decides
 * (relay.publish.packing.record_args_python); tests/relay/publish/test_publisher.py
 * checks the two agree and that the whole command is what redis-py packs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "_resp_bulk.h"

static PyObject *record_args(PyObject *module, PyObject *batch) {
    (void)module;
    if (!PyList_CheckExact(batch)) Py_RETURN_NONE;
    Py_ssize_t count = PyList_GET_SIZE(batch), total = 0, records = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *entry = PyList_GET_ITEM(batch, i);
        if (!PyTuple_Check(entry)) Py_RETURN_NONE;
        Py_ssize_t fields = PyTuple_GET_SIZE(entry);
        if (fields == 4) continue; /* a dead letter */
        if (fields != 3) Py_RETURN_NONE;
        records++;
        PyObject *record = PyTuple_GET_ITEM(entry, 0), *client = PyTuple_GET_ITEM(entry, 1),
                 *received = PyTuple_GET_ITEM(entry, 2);
        if (!PyBytes_CheckExact(record) || !PyUnicode_CheckExact(client) || !PyUnicode_CheckExact(received))
            Py_RETURN_NONE;
        Py_ssize_t client_size, received_size;
        /* UTF-8, cached in the str: consecutive records share these objects */
        if (PyUnicode_AsUTF8AndSize(client, &client_size) == NULL) return NULL;
        if (PyUnicode_AsUTF8AndSize(received, &received_size) == NULL) return NULL;
        total += PyBytes_GET_SIZE(record) + client_size + received_size + 3 * RESP_BULK_OVERHEAD;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, total);
    if (result == NULL) return NULL;
    char *p = PyBytes_AS_STRING(result);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *entry = PyList_GET_ITEM(batch, i);
        if (PyTuple_GET_SIZE(entry) != 3) continue;
        PyObject *record = PyTuple_GET_ITEM(entry, 0);
        Py_ssize_t size;
        p = resp_put_bulk(p, PyBytes_AS_STRING(record), (size_t)PyBytes_GET_SIZE(record));
        const char *text = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(entry, 1), &size);
        p = resp_put_bulk(p, text, (size_t)size);
        text = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(entry, 2), &size);
        p = resp_put_bulk(p, text, (size_t)size);
    }
    if (_PyBytes_Resize(&result, p - PyBytes_AS_STRING(result)) < 0) return NULL;
    return Py_BuildValue("(Nn)", result, records);
}

static PyMethodDef methods[] = {
    {"record_args", record_args, METH_O,
     "record_args(batch) -> (the record entries' script arguments as RESP bulk strings, how many), or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "relay.publish._packing", "A publish batch's records in RESP, in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__packing(void) { return PyModule_Create(&module_def); }
