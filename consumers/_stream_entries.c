/* Stream entries from an XREADGROUP or XAUTOCLAIM reply, as plain lists.
 *
 * entries(items: list) -> list[tuple[bytes, dict[bytes, bytes] | None]] | None
 *
 * Each item of a reply's entry list is [id, [field, value, field, value, ...]]
 * (or [id, nil] for a pending entry that was trimmed).  This builds what
 * redis-py's response callback would, (id, {field: value}) or (id, None),
 * with the loop in C: per entry the callback costs more than the parser that
 * made the lists.  Anything not of that shape returns None and the Python
 * reference (consumers.streamentries.entries_python) decides, errors included.
 * tests/consumers/test_streamentries.py checks the two agree.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *entries(PyObject *module, PyObject *items) {
    (void)module;
    if (!PyList_CheckExact(items)) Py_RETURN_NONE;
    Py_ssize_t count = PyList_GET_SIZE(items);
    PyObject *result = PyList_New(count);
    if (result == NULL) return NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (!PyList_CheckExact(item) || PyList_GET_SIZE(item) != 2) goto not_mine;
        PyObject *entry_id = PyList_GET_ITEM(item, 0);
        PyObject *pairs = PyList_GET_ITEM(item, 1);
        if (!PyBytes_CheckExact(entry_id)) goto not_mine;
        PyObject *fields;
        if (pairs == Py_None) {
            fields = Py_NewRef(Py_None);
        } else {
            if (!PyList_CheckExact(pairs) || PyList_GET_SIZE(pairs) % 2) goto not_mine;
            fields = PyDict_New();
            if (fields == NULL) goto error;
            for (Py_ssize_t k = 0; k < PyList_GET_SIZE(pairs); k += 2) {
                PyObject *name = PyList_GET_ITEM(pairs, k);
                if (!PyBytes_CheckExact(name)) {
                    Py_DECREF(fields);
                    goto not_mine;
                }
                /* a field given twice keeps its last value, as dict(zip(...)) does */
                if (PyDict_SetItem(fields, name, PyList_GET_ITEM(pairs, k + 1)) < 0) {
                    Py_DECREF(fields);
                    goto error;
                }
            }
        }
        PyObject *entry = PyTuple_Pack(2, entry_id, fields);
        Py_DECREF(fields);
        if (entry == NULL) goto error;
        PyList_SET_ITEM(result, i, entry);
    }
    return result;
not_mine:
    Py_DECREF(result);
    Py_RETURN_NONE;
error:
    Py_DECREF(result);
    return NULL;
}

static PyMethodDef methods[] = {
    {"entries", entries, METH_O,
     "entries(items) -> [(id, {field: value} or None), ...], or None if the reply is not of that shape"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "consumers._stream_entries", "Stream entries from a reply's lists, in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__stream_entries(void) { return PyModule_Create(&module_def); }
