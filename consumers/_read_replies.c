/* Stream entries from an XREADGROUP or XAUTOCLAIM reply, as plain lists.
 *
 * entries(items: list) -> list[tuple[bytes, dict[bytes, bytes] | None]] | None
 * json_lines(items: list, metadata) -> list[bytes | int]
 * text_lines(items: list, plan, metadata, second_text, is_object) -> list[bytes | int]  (_read_replies_lines.c)
 * bulk_ids(items: list) -> bytes | None
 * producer_runs(items: list) -> list[tuple[int, int, bytes | None, int]]
 *
 * Each item of a reply's entry list is [id, [field, value, field, value, ...]]
 * (or [id, nil] for a pending entry that was trimmed).  This builds what
 * redis-py's response callback would, (id, {field: value}) or (id, None),
 * with the loop in C: per entry the callback costs more than the parser that
 * made the lists.  Anything not of that shape returns None and the Python
 * reference (consumers.read_replies.entries_python) decides, errors included.
 * tests/consumers/test_read_replies.py checks the two agree.
 */
#include "_read_replies.h"

#include "_json_scan.h"
#include "_resp_bulk.h" /* relay/common/, shared with relay.publish._packing */

int record_check(Span record, int *names_logrelay) {
    const unsigned char *start = (const unsigned char *)record.p;
    return json_object_check(start, start + record.n, names_logrelay);
}

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

/* ---------------------------------------------------------------- JSON lines
 *
 * json_lines(items, metadata) -> pieces
 *
 * The file consumer's JSON lines, straight from a reply's entry list, for
 * the entries a catcher writes: fields exactly v=1, record, client, catcher,
 * received (in that order), maybe then seq (not rendered: a line is the same
 * with or without it), an id of digits and one dash, a record that
 * starts with '{', ends with '}' and passes the JSON object check of
 * _json_scan.h with no string ending in logrelay (which covers every place
 * a "logrelay" member name could be).  Each such entry becomes
 *
 *     record-without-its-'}' [","] "logrelay": METADATA ,"entry_id":"ID"}}\n
 *
 * where METADATA is metadata(client, catcher, received) (bytes: a JSON object
 * without its closing brace), called once per run of entries sharing those
 * three values.  This is byte for byte what
 * consumers.formatting.JsonLineFormatter.format writes; any other entry is
 * left to it: pieces is a list of bytes (lines of consecutive entries, in
 * order) and ints (the index of an entry not rendered here).  The caller
 * joins them in order.  tests/consumers/test_formatting.py checks the two
 * agree.
 */

static PyObject *json_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    Py_ssize_t count = nargs == 2 ? entries_count(args[0]) : -1;
    if (count < 0) {
        PyErr_SetString(PyExc_TypeError, "json_lines(items: list | ReplyEntries, metadata)");
        return NULL;
    }
    PyObject *items = args[0];
    PyObject *pieces = PyList_New(0);
    if (pieces == NULL) return NULL;
    Buffer out = {NULL, 0, 0};
    MetadataRun run = {args[1], NULL, {NULL, 0}, {NULL, 0}, {NULL, 0}};
    for (Py_ssize_t i = 0; i < count; i++) {
        Usual entry;
        if (!usual_at(items, i, &entry)) goto not_mine;
        const char *text = entry.record.p;
        Py_ssize_t size = entry.record.n;
        if (size < 2 || text[0] != '{' || text[size - 1] != '}') goto not_mine;
        /* the JSON check, which also marks where "logrelay" may occur */
        int names_logrelay = 0;
        if (!record_check(entry.record, &names_logrelay) || names_logrelay) goto not_mine;
        if (metadata_for(&run, &entry) < 0) goto error;
        if (!PyBytes_CheckExact(run.value)) {
            PyErr_SetString(PyExc_TypeError, "json_lines: metadata() must return bytes");
            goto error;
        }
        /* Is there anything but whitespace between the braces?  Then a comma. */
        int members = 0;
        for (Py_ssize_t k = 1; k < size - 1; k++) {
            if (!is_json_space(text[k])) {
                members = 1;
                break;
            }
        }
        Py_ssize_t meta_size = PyBytes_GET_SIZE(run.value);
        static const char NAME[] = "\"logrelay\":", ID[] = ",\"entry_id\":\"", END[] = "\"}}\n";
        if (buffer_reserve(&out, size + 1 + (Py_ssize_t)sizeof NAME + meta_size + (Py_ssize_t)sizeof ID +
                                     entry.id.n + (Py_ssize_t)sizeof END) < 0)
            goto error;
        buffer_put(&out, text, size - 1);
        if (members) buffer_put(&out, ",", 1);
        buffer_put(&out, NAME, sizeof NAME - 1);
        buffer_put(&out, PyBytes_AS_STRING(run.value), meta_size);
        buffer_put(&out, ID, sizeof ID - 1);
        buffer_put(&out, entry.id.p, entry.id.n);
        buffer_put(&out, END, sizeof END - 1);
        continue;
    not_mine:
        if (leave_to_caller(&out, pieces, i) < 0) goto error;
    }
    if (flush_lines(&out, pieces) < 0) goto error;
    PyMem_Free(out.data);
    Py_XDECREF(run.value);
    return pieces;
error:
    PyMem_Free(out.data);
    Py_XDECREF(run.value);
    Py_DECREF(pieces);
    return NULL;
}

/* ---------------------------------------------------------------- ids for XACK
 *
 * bulk_ids(items) -> bytes | None: each entry's id as a RESP bulk string
 * ($<length>\r\n<id>\r\n), concatenated, for an XACK packed by the caller;
 * None if an item is not [id, ...] with a bytes id.
 */
/* Entry i's id, if it is bytes ({NULL, -1} if not). */
static Span id_at(PyObject *items, Py_ssize_t i) {
    Span none = {NULL, -1};
    if (!PyList_CheckExact(items)) return reply_id_at(items, i);
    PyObject *item = PyList_GET_ITEM(items, i);
    if (!PyList_CheckExact(item) || PyList_GET_SIZE(item) < 1 || !PyBytes_CheckExact(PyList_GET_ITEM(item, 0)))
        return none;
    return span_of(PyList_GET_ITEM(item, 0));
}

static PyObject *bulk_ids(PyObject *module, PyObject *items) {
    (void)module;
    Py_ssize_t count = entries_count(items), total = 0;
    if (count < 0) Py_RETURN_NONE;
    for (Py_ssize_t i = 0; i < count; i++) {
        Span id = id_at(items, i);
        if (id.n < 0) Py_RETURN_NONE;
        total += id.n + RESP_BULK_OVERHEAD;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, total);
    if (result == NULL) return NULL;
    char *p = PyBytes_AS_STRING(result);
    for (Py_ssize_t i = 0; i < count; i++) {
        Span id = id_at(items, i);
        p = resp_put_bulk(p, id.p, (size_t)id.n);
    }
    if (_PyBytes_Resize(&result, p - PyBytes_AS_STRING(result)) < 0) return NULL;
    return result;
}

/* ---------------------------------------------------------------- producer runs
 *
 * producer_runs(items) -> [(start, count, token, first_n), ...]
 *
 * The entries cut into runs, in order, covering them all: a run of records
 * of one producer numbered n, n + 1, ... (token: its 16-byte TOKEN, first_n
 * the first's n), or a run of entries without an identity (token None,
 * first_n 0).  An entry has an identity when it is usual (_read_replies.h)
 * with a seq whose value is exactly TOKEN:N, TOKEN 16 lowercase hex digits,
 * N 1 to 18 decimal digits without a leading zero (relay.common.stream);
 * any other value is no identity, never an error.  One pass, no object per
 * entry: a run's tuple is made when it ends.
 * consumers.read_replies.producer_runs_python is the reference.
 */

#define TOKEN_DIGITS 16
#define MAX_N_DIGITS 18 /* 10**18 - 1 < 2**63: N and N + 1 fit in a long long */

/* A seq value's token and number, if it is TOKEN:N: 1, else 0.  Reads only
 * within the span (an absent seq has n == -1). */
static int identity_of(Span seq, long long *number) {
    if (seq.n < TOKEN_DIGITS + 2 || seq.n > TOKEN_DIGITS + 1 + MAX_N_DIGITS) return 0;
    for (int k = 0; k < TOKEN_DIGITS; k++) {
        char c = seq.p[k];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return 0;
    }
    if (seq.p[TOKEN_DIGITS] != ':') return 0;
    const char *digit = seq.p + TOKEN_DIGITS + 1, *end = seq.p + seq.n;
    if (*digit == '0') return 0; /* N counts from 1, written without a leading zero */
    long long n = 0;
    for (; digit < end; digit++) {
        if (*digit < '0' || *digit > '9') return 0;
        n = n * 10 + (*digit - '0');
    }
    *number = n;
    return 1;
}

/* Append (start, count, token or None, first_n) to runs. */
static int add_run(PyObject *runs, Py_ssize_t start, Py_ssize_t count, const char *token, long long first_n) {
    PyObject *run = PyTuple_New(4);
    if (run == NULL) return -1;
    PyObject *values[4] = {
        PyLong_FromSsize_t(start),
        PyLong_FromSsize_t(count),
        token != NULL ? PyBytes_FromStringAndSize(token, TOKEN_DIGITS) : Py_NewRef(Py_None),
        PyLong_FromLongLong(first_n),
    };
    int failed = 0;
    for (int k = 0; k < 4; k++) {
        if (values[k] == NULL) failed = -1;
        else PyTuple_SET_ITEM(run, k, values[k]); /* a NULL slot is fine for the DECREF below */
    }
    if (failed == 0) failed = PyList_Append(runs, run);
    Py_DECREF(run);
    return failed;
}

static PyObject *producer_runs(PyObject *module, PyObject *items) {
    (void)module;
    Py_ssize_t count = entries_count(items);
    if (count < 0) {
        PyErr_SetString(PyExc_TypeError, "producer_runs(items: list | ReplyEntries)");
        return NULL;
    }
    PyObject *runs = PyList_New(0);
    if (runs == NULL) return NULL;
    /* The open run: from start, its token (NULL: no identity) and the number
     * its next entry must have.  The token is copied: add_run allocates, and
     * a collection then could run code that drops the bytes it was read from. */
    Py_ssize_t start = 0;
    char token_copy[TOKEN_DIGITS];
    const char *token = NULL;
    long long first_n = 0, next_n = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        Usual entry;
        long long n = 0;
        const char *entry_token = NULL;
        if (usual_at(items, i, &entry) && identity_of(entry.seq, &n)) entry_token = entry.seq.p;
        if (i > 0) {
            /* The open run goes on: no identity after none, or the same
             * token's next number. */
            int goes_on = entry_token == NULL ? token == NULL
                                              : token != NULL && n == next_n &&
                                                    memcmp(entry_token, token, TOKEN_DIGITS) == 0;
            if (goes_on) {
                next_n = n + 1;
                continue;
            }
            if (add_run(runs, start, i - start, token, first_n) < 0) goto error;
        }
        start = i, token = NULL, first_n = 0;
        if (entry_token != NULL) {
            memcpy(token_copy, entry_token, TOKEN_DIGITS);
            token = token_copy, first_n = n;
        }
        next_n = n + 1;
    }
    if (count > 0 && add_run(runs, start, count - start, token, first_n) < 0) goto error;
    return runs;
error:
    Py_DECREF(runs);
    return NULL;
}

static PyMethodDef methods[] = {
    {"entries", entries, METH_O,
     "entries(items) -> [(id, {field: value} or None), ...], or None if the reply is not of that shape"},
    {"json_lines", (PyCFunction)(void (*)(void))json_lines, METH_FASTCALL,
     "json_lines(items, metadata) -> [bytes | int]: JSON lines of the usual entries, "
     "the index of any other"},
    {"text_lines", (PyCFunction)(void (*)(void))text_lines, METH_FASTCALL,
     "text_lines(items, plan, metadata, second_text, is_object) -> [bytes | int]: text lines of the usual "
     "entries, the index of any other"},
    {"bulk_ids", bulk_ids, METH_O, "bulk_ids(items) -> the entries' ids as RESP bulk strings, or None"},
    {"producer_runs", producer_runs, METH_O,
     "producer_runs(items) -> [(start, count, token | None, first_n)]: the entries in runs of one producer's "
     "consecutive records, or of entries without an identity"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "consumers._read_replies", "Stream entries from a reply's lists, in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__read_replies(void) {
    json_scan_init();
    PyObject *module = PyModule_Create(&module_def);
    if (module != NULL && add_reply_types(module) < 0) Py_CLEAR(module);
    return module;
}
