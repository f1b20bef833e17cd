/* C version of relay.pickleops.scan_python: one pass over a pickle's opcodes.
 *
 * Same contract and same verdicts as the Python reference implementation
 * (tests/relay/test_pickleops.py checks both on the same inputs, fuzzed):
 * scan(data) returns a flag word (FLAG_NAMES_CLASSES when the pickle names a
 * class: GLOBAL, INST, STACK_GLOBAL or OBJ; FLAG_SHARES_OBJECTS for DUP and
 * memo GETs) or a str describing why the
 * pickle is refused; the Python wrapper raises UnsafePickle with it.
 *
 * The opcode table (argument layout per opcode byte) is built in Python from
 * pickletools and handed over once by configure(), so both implementations
 * read the same table.  Every read is bounds-checked against the buffer:
 * this code sees hostile bytes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Kinds: keep in step with relay/pickleops.py. */
#define K_LINE (-1)
#define K_LEN1 (-2)
#define K_LEN4S (-3)
#define K_LEN4U (-4)
#define K_LEN8U (-5)
#define K_TWO_LINES (-6)
#define K_MEMO_PUT_LINE (-7)
#define K_MEMO_PUT_U4 (-8)
#define K_STOP (-9)
#define K_FORBIDDEN (-10)
#define K_UNKNOWN (-11)
#define K_FRAME (-12)
#define K_NUMBER_LINE (-13)
#define K_NUMBER_LEN1 (-14)
#define K_NUMBER_LEN4 (-15)
#define K_CLASS (-16)
#define K_SHARE0 (-17)
#define K_SHARE1 (-18)
#define K_SHARE4 (-19)
#define K_SHARE_LINE (-20)
#define K_NUMBER_FIXED (-100)

#define FLAG_NAMES_CLASSES 1
#define FLAG_SHARES_OBJECTS 2

static signed char table[256];
static int configured = 0;
static long max_numbers = 0;

static uint32_t read_u32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t read_u64(const unsigned char *p) {
    return (uint64_t)read_u32(p) | ((uint64_t)read_u32(p + 4) << 32);
}

/* Offset of the next newline at or after pos, or -1. */
static Py_ssize_t find_newline(const unsigned char *d, Py_ssize_t pos, Py_ssize_t end) {
    if (pos >= end) return -1;
    const unsigned char *hit = memchr(d + pos, '\n', (size_t)(end - pos));
    return hit ? (Py_ssize_t)(hit - d) : -1;
}

static PyObject *refuse(const char *format, ...) {
    va_list args;
    va_start(args, format);
    PyObject *text = PyUnicode_FromFormatV(format, args);
    va_end(args);
    return text;
}

static PyObject *scan(PyObject *module, PyObject *arg) {
    Py_buffer view;
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "configure() first");
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *d = (const unsigned char *)view.buf;
    const Py_ssize_t end = view.len;
    Py_ssize_t pos = 0;
    long numbers = 0;
    long flags = 0;
    PyObject *result = NULL;

    while (pos < end) {
        const unsigned char code = d[pos];
        const int kind = table[code];
        const Py_ssize_t at = pos;
        pos++;
        if (kind >= 0) {
            pos += kind;  /* past end: reported as truncated by the loop test */
            continue;
        }
        if (kind <= K_NUMBER_FIXED) {
            pos += K_NUMBER_FIXED - kind;
            if (++numbers > max_numbers) {
                result = refuse("more than %ld numbers in one record", max_numbers);
                goto done;
            }
            continue;
        }
        switch (kind) {
        case K_STOP:
            result = PyLong_FromLong(flags);
            goto done;
        case K_LEN1:
        case K_NUMBER_LEN1:
            if (kind == K_NUMBER_LEN1 && ++numbers > max_numbers) {
                result = refuse("more than %ld numbers in one record", max_numbers);
                goto done;
            }
            if (pos >= end) goto truncated;
            pos += 1 + d[pos];
            continue;
        case K_LEN4U: {
            if (end - pos < 4) goto truncated;
            uint32_t size = read_u32(d + pos);
            pos += 4;
            if ((uint64_t)size > (uint64_t)(end - pos)) goto truncated;
            pos += size;
            continue;
        }
        case K_LEN4S:
        case K_NUMBER_LEN4: {
            if (kind == K_NUMBER_LEN4 && ++numbers > max_numbers) {
                result = refuse("more than %ld numbers in one record", max_numbers);
                goto done;
            }
            if (end - pos < 4) goto truncated;
            int32_t size = (int32_t)read_u32(d + pos);
            if (size < 0) {
                result = refuse("negative length at offset %zd", at);
                goto done;
            }
            pos += 4;
            if ((uint64_t)size > (uint64_t)(end - pos)) goto truncated;
            pos += size;
            continue;
        }
        case K_LEN8U: {
            if (end - pos < 8) goto truncated;
            uint64_t size = read_u64(d + pos);
            pos += 8;
            if (size > (uint64_t)(end - pos)) goto truncated;
            pos += (Py_ssize_t)size;
            continue;
        }
        case K_LINE:
        case K_NUMBER_LINE: {
            if (kind == K_NUMBER_LINE && ++numbers > max_numbers) {
                result = refuse("more than %ld numbers in one record", max_numbers);
                goto done;
            }
            Py_ssize_t newline = find_newline(d, pos, end);
            if (newline < 0) goto truncated;
            pos = newline + 1;
            continue;
        }
        case K_TWO_LINES: {
            flags |= FLAG_NAMES_CLASSES;
            Py_ssize_t newline = find_newline(d, pos, end);
            if (newline < 0) goto truncated;
            newline = find_newline(d, newline + 1, end);
            if (newline < 0) goto truncated;
            pos = newline + 1;
            continue;
        }
        case K_CLASS:
            flags |= FLAG_NAMES_CLASSES;
            continue;
        case K_SHARE0:
            flags |= FLAG_SHARES_OBJECTS;
            continue;
        case K_SHARE1:
            flags |= FLAG_SHARES_OBJECTS;
            pos += 1;
            continue;
        case K_SHARE4:
            flags |= FLAG_SHARES_OBJECTS;
            pos += 4;
            continue;
        case K_SHARE_LINE: {
            flags |= FLAG_SHARES_OBJECTS;
            Py_ssize_t newline = find_newline(d, pos, end);
            if (newline < 0) goto truncated;
            pos = newline + 1;
            continue;
        }
        case K_FRAME: {
            if (end - pos < 8) {
                result = refuse("pickle data was truncated: FRAME at offset %zd", at);
                goto done;
            }
            uint64_t size = read_u64(d + pos);
            pos += 8;
            if (size > (uint64_t)(end - pos)) {
                result = refuse("pickle data was truncated: FRAME of %llu bytes at offset %zd",
                                (unsigned long long)size, at);
                goto done;
            }
            continue;
        }
        case K_MEMO_PUT_U4: {
            if (end - pos < 4) goto truncated;
            uint32_t index = read_u32(d + pos);
            if ((uint64_t)index > (uint64_t)end) {
                result = refuse("memo index %lu out of range at offset %zd", (unsigned long)index, at);
                goto done;
            }
            pos += 4;
            continue;
        }
        case K_MEMO_PUT_LINE: {
            Py_ssize_t newline = find_newline(d, pos, end);
            if (newline < 0) goto truncated;
            Py_ssize_t digits = newline - pos;
            uint64_t index = 0;
            int valid = digits > 0 && digits <= 10;
            for (Py_ssize_t i = pos; valid && i < newline; i++) {
                if (d[i] < '0' || d[i] > '9') valid = 0;
                else index = index * 10 + (uint64_t)(d[i] - '0');
            }
            if (!valid || index > (uint64_t)end) {
                result = refuse("memo index out of range at offset %zd", at);
                goto done;
            }
            pos = newline + 1;
            continue;
        }
        case K_FORBIDDEN:
            result = refuse("opcode 0x%02x is not allowed (offset %zd)", (unsigned int)code, at);
            goto done;
        default:
            result = refuse("unknown opcode 0x%02x at offset %zd", (unsigned int)code, at);
            goto done;
        }
    }
truncated:
    result = refuse("pickle data was truncated (no STOP opcode)");
done:
    PyBuffer_Release(&view);
    return result;
}

static PyObject *configure(PyObject *module, PyObject *args) {
    Py_buffer kinds;
    long numbers;
    if (!PyArg_ParseTuple(args, "y*l", &kinds, &numbers)) return NULL;
    if (kinds.len != 256) {
        PyBuffer_Release(&kinds);
        PyErr_SetString(PyExc_ValueError, "the opcode table has 256 entries");
        return NULL;
    }
    memcpy(table, kinds.buf, 256);
    PyBuffer_Release(&kinds);
    max_numbers = numbers;
    configured = 1;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_O, "scan(data) -> flags (int) or the reason it is refused (str)"},
    {"configure", configure, METH_VARARGS, "configure(table: bytes of 256 signed kinds, max_numbers: int)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "relay._pickle_scan", "Pickle opcode scan (C version of relay.pickleops).", -1, methods,
};

PyMODINIT_FUNC PyInit__pickle_scan(void) { return PyModule_Create(&module_def); }
