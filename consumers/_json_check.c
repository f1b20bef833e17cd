/* consumers._json_check: is_json_object(data: bytes) -> bool, the check of
 * _json_scan.h (its contract) for Python callers.  The JSON and text lines
 * renderers of consumers._read_replies call the same check in C. */
#include "_json_scan.h"

static PyObject *is_json_object(PyObject *module, PyObject *data) {
    (void)module;
    if (!PyBytes_Check(data)) {
        PyErr_Format(PyExc_TypeError, "is_json_object() argument must be bytes, not %.200s", Py_TYPE(data)->tp_name);
        return NULL;
    }
    Ptr start = (Ptr)PyBytes_AS_STRING(data);
    return PyBool_FromLong(json_object_check(start, start + PyBytes_GET_SIZE(data), NULL));
}

static PyMethodDef methods[] = {
    {"is_json_object", is_json_object, METH_O,
     "is_json_object(data: bytes) -> bool: True only if orjson.loads(data) would return a dict; "
     "False when it would not, or when unsure"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "consumers._json_check", "Is this bytes one JSON object? (without building it)", -1,
    methods,
};

PyMODINIT_FUNC PyInit__json_check(void) {
    json_scan_init();
    return PyModule_Create(&module_def);
}
