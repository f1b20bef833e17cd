/* Straight from a pickle to the record's JSON: the fast path of
 * relay.decode.frames.decode_payload.
 *
 * convert(data, max_depth, max_bytes) -> bytes or None
 * configure(max_numbers, max_visits): the scan's limit on numbers per record and
 * the walk's on visits, set once.
 *
 * Contract: when it returns bytes, they are exactly what decode_payload's
 * Python path returns for the same frame (orjson's encoding of what
 * pickle.loads builds, checked against the same limits).  Whenever it is not
 * sure it returns None and the Python path decides, refusals and their
 * wording included.  So it accepts only a strict subset of pickles: a tree
 * (no DUP or memo GET) of dict, list and tuple holding str, int (64-bit),
 * finite float, bool and None, whose top is a dict with str keys and no key
 * given twice, and whose size stays well inside the limits.  The only
 * classes it knows are the value types log records carry most (datetime and
 * date with no or a fixed-offset time zone, Decimal, set and frozenset), and
 * only in the exact shape their own pickles have.  Everything else (any
 * other class, bytes as a value, big ints, NaN, lone surrogates, text opcodes
 * of protocol 0 other than ints, anything malformed) is None.
 *
 * It never runs Python code and allocates nothing per opcode: the pickle is
 * parsed into an array of nodes (strings point into the pickle), measured,
 * then written once into a bytes object of the exact size.  Every read is
 * bounds-checked: this code sees hostile bytes.  tests/relay/decode/test_fast_path.py
 * checks it against the Python path on generated, mutated and real frames.
 */
#include "_fast_path.h"

Parser *pj_parser_new(void) {
    Parser *p = PyMem_Calloc(1, sizeof(Parser));
    if (p == NULL) return NULL;
    p->first_nodes = PyMem_Malloc(sizeof(Node) * INLINE_NODES);
    p->first_stack = PyMem_Malloc(sizeof(int32_t) * INLINE_NODES);
    if (p->first_nodes == NULL || p->first_stack == NULL) {
        pj_parser_free(p);
        return NULL;
    }
    return p;
}

void pj_parser_free(Parser *p) {
    if (p == NULL) return;
    PyMem_Free(p->first_nodes);
    PyMem_Free(p->first_stack);
    PyMem_Free(p);
}

int32_t pj_new_node(Parser *p, int kind) {
    if (p->count == p->capacity) {
        if (p->capacity >= MAX_NODES) return BAIL;
        int32_t capacity = p->capacity * 4;
        Node *grown = PyMem_Malloc(sizeof(Node) * (size_t)capacity);
        if (grown == NULL) return ERROR;
        memcpy(grown, p->nodes, sizeof(Node) * (size_t)p->count);
        if (p->nodes != p->first_nodes) PyMem_Free(p->nodes);
        p->nodes = grown;
        p->capacity = capacity;
    }
    Node *node = &p->nodes[p->count];
    node->kind = kind;
    node->text_size = 0;
    node->next = -1;
    if (kind >= N_LIST) {
        node->u.c.first = node->u.c.last = -1;
        node->u.c.count = 0;
        node->u.c.key_bloom = 0;
    }
    return p->count++;
}

int pj_push(Parser *p, int32_t entry) {
    if (entry < 0 && entry != MARK_ENTRY) return entry;
    if (p->depth == p->stack_capacity) {
        if (p->stack_capacity >= 4 * MAX_NODES) return BAIL;
        Py_ssize_t capacity = p->stack_capacity * 4;
        int32_t *grown = PyMem_Malloc(sizeof(int32_t) * (size_t)capacity);
        if (grown == NULL) return ERROR;
        memcpy(grown, p->stack, sizeof(int32_t) * (size_t)p->depth);
        if (p->stack != p->first_stack) PyMem_Free(p->stack);
        p->stack = grown;
        p->stack_capacity = capacity;
    }
    p->stack[p->depth++] = entry;
    return 0;
}

static int push_new(Parser *p, int kind) {
    int32_t index = pj_new_node(p, kind);
    return index < 0 ? index : pj_push(p, index);
}

/* Index of the innermost mark on the stack, or -1. */
static Py_ssize_t top_mark(const Parser *p) {
    for (Py_ssize_t i = p->depth - 1; i >= 0; i--)
        if (p->stack[i] == MARK_ENTRY) return i;
    return -1;
}

/* The top n entries exist and none of them is a mark (the unpickler's fence). */
int pj_has_items(const Parser *p, Py_ssize_t n) {
    if (p->depth < n) return 0;
    for (Py_ssize_t i = p->depth - n; i < p->depth; i++)
        if (p->stack[i] == MARK_ENTRY) return 0;
    return 1;
}

static void link_child(Parser *p, int32_t parent, int32_t child) {
    Node *c = &p->nodes[parent];
    p->nodes[child].next = -1;
    if (c->u.c.last < 0) c->u.c.first = child;
    else p->nodes[c->u.c.last].next = child;
    c->u.c.last = child;
    c->u.c.count++;
}

static uint64_t key_bit(const Parser *p, const Node *key) {
    Py_ssize_t size = key->u.s.size;
    const unsigned char *text = p->data + key->u.s.offset;
    unsigned int shape = (unsigned int)size * 31u;
    if (size > 0) shape += text[0] * 7u + text[size - 1];
    return (uint64_t)1 << (shape % 64u);
}

static int same_text(const Parser *p, const Node *a, const Node *b) {
    return a->u.s.size == b->u.s.size &&
           memcmp(p->data + a->u.s.offset, p->data + b->u.s.offset, (size_t)a->u.s.size) == 0;
}

/* The key set's hash of a key of a dict: Python's keyed hash of the bytes
 * (SipHash, seeded per process), so a sender cannot choose collisions. */
static size_t key_hash(const Parser *p, int32_t dict, const Node *key) {
    Py_hash_t h = _Py_HashBytes(p->data + key->u.s.offset, key->u.s.size);
    return (size_t)h ^ ((size_t)(uint32_t)dict * (size_t)0x9E3779B97F4A7C15ULL);
}

/* Put (dict, key) into the key set.  1 if the dict already has that key,
 * 0 once added, ERROR when out of memory. */
static int keys_add(Parser *p, int32_t dict, int32_t key) {
    if ((p->keys_used + 1) * 2 > p->keys_capacity) {
        /* keys_used < MAX_NODES: the capacity stays far below overflow */
        Py_ssize_t capacity = p->keys_capacity ? p->keys_capacity * 2 : 64;
        KeySlot *grown = PyMem_Malloc(sizeof(KeySlot) * (size_t)capacity);
        if (grown == NULL) return ERROR;
        for (Py_ssize_t i = 0; i < capacity; i++) grown[i].key = -1;
        for (Py_ssize_t i = 0; i < p->keys_capacity; i++) {
            if (p->keys[i].key < 0) continue;
            size_t slot = key_hash(p, p->keys[i].dict, &p->nodes[p->keys[i].key]) & (size_t)(capacity - 1);
            while (grown[slot].key >= 0) slot = (slot + 1) & (size_t)(capacity - 1);
            grown[slot] = p->keys[i];
        }
        PyMem_Free(p->keys);
        p->keys = grown;
        p->keys_capacity = capacity;
    }
    const Node *k = &p->nodes[key];
    size_t mask = (size_t)(p->keys_capacity - 1), slot = key_hash(p, dict, k) & mask;
    for (; p->keys[slot].key >= 0; slot = (slot + 1) & mask)
        if (p->keys[slot].dict == dict && same_text(p, &p->nodes[p->keys[slot].key], k)) return 1;
    p->keys[slot].dict = dict;
    p->keys[slot].key = key;
    p->keys_used++;
    return 0;
}

/* Add key/value to a dict node.  BAIL unless the key is a str not already there.
 * Up to LINEAR_KEYS keys a bloom filter of their shapes and a comparison with
 * the earlier keys decide; past it the dict's keys are in the key set, where a
 * lookup costs the same however many keys share a shape. */
static int dict_add(Parser *p, int32_t dict, int32_t key, int32_t value) {
    Node *k = &p->nodes[key];
    if (k->kind != N_STR) return BAIL;
    Node *d = &p->nodes[dict];
    if (d->text_size) {
        int rc = keys_add(p, dict, key);
        if (rc) return rc == 1 ? BAIL : rc; /* a duplicate: pickle.loads keeps the first position, the last value */
    } else {
        uint64_t bit = key_bit(p, k);
        if (d->u.c.key_bloom & bit) {
            for (int32_t other = d->u.c.first; other >= 0; other = p->nodes[p->nodes[other].next].next)
                if (same_text(p, &p->nodes[other], k)) return BAIL;
        }
        d->u.c.key_bloom |= bit;
        if (d->u.c.count / 2 + 1 > LINEAR_KEYS) {
            /* this key makes the dict big: index its keys, this one included */
            for (int32_t other = d->u.c.first; other >= 0; other = p->nodes[p->nodes[other].next].next)
                if (keys_add(p, dict, other) == ERROR) return ERROR;
            if (keys_add(p, dict, key) == ERROR) return ERROR;
            p->nodes[dict].text_size = 1;
        }
    }
    link_child(p, dict, key);
    link_child(p, dict, value);
    return 0;
}

/* Fill a container from the stack entries from..depth-1 (pairs for a dict). */
static int fill(Parser *p, int32_t container, Py_ssize_t from) {
    Node *c = &p->nodes[container];
    if (c->kind == N_DICT) {
        if ((p->depth - from) % 2) return BAIL;
        for (Py_ssize_t i = from; i < p->depth; i += 2) {
            int rc = dict_add(p, container, p->stack[i], p->stack[i + 1]);
            if (rc) return rc;
        }
    } else {
        for (Py_ssize_t i = from; i < p->depth; i++) link_child(p, container, p->stack[i]);
    }
    p->depth = from;
    return 0;
}

/* A decimal integer line (INT or LONG, without its newline): strict form only. */
static int parse_decimal(const unsigned char *text, Py_ssize_t size, int64_t *out) {
    Py_ssize_t i = 0;
    int negative = 0;
    if (size > 0 && text[0] == '-') {
        negative = 1;
        i = 1;
    }
    Py_ssize_t digits = size - i;
    /* 18 digits always fit in 64 bits; "-0" and leading zeros are left to Python
     * (the C unpickler reads INT with strtol, base 0). */
    if (digits < 1 || digits > 18 || (text[i] == '0' && (digits > 1 || negative))) return BAIL;
    int64_t value = 0;
    for (; i < size; i++) {
        if (text[i] < '0' || text[i] > '9') return BAIL;
        value = value * 10 + (text[i] - '0');
    }
    *out = negative ? -value : value;
    return 0;
}

static uint32_t read_u32(const unsigned char *d) {
    return (uint32_t)d[0] | ((uint32_t)d[1] << 8) | ((uint32_t)d[2] << 16) | ((uint32_t)d[3] << 24);
}

static uint64_t read_u64(const unsigned char *d) { return (uint64_t)read_u32(d) | ((uint64_t)read_u32(d + 4) << 32); }

static int push_string(Parser *p, Py_ssize_t offset, uint64_t size) {
    if (size > (uint64_t)(p->end - offset)) return BAIL;
    Py_ssize_t json_size = pj_json_string_size(p->data + offset, (Py_ssize_t)size);
    if (json_size < 0) return BAIL;
    int32_t index = pj_new_node(p, N_STR);
    if (index < 0) return index;
    p->nodes[index].u.s.offset = offset;
    p->nodes[index].u.s.size = (Py_ssize_t)size;
    p->nodes[index].u.s.json_size = json_size;
    return pj_push(p, index);
}

static int push_int(Parser *p, int64_t value) {
    int32_t index = pj_new_node(p, N_INT);
    if (index < 0) return index;
    p->nodes[index].u.i = value;
    return pj_push(p, index);
}

static int count_number(Parser *p, long max_numbers) {
    /* the scan refuses records with more numbers than this: so must we */
    return ++p->numbers > max_numbers ? BAIL : 0;
}

#define NEED(n)                                     \
    do {                                            \
        if (p->end - pos < (Py_ssize_t)(n)) return BAIL; \
    } while (0)

/* Run the pickle; on success the root node index is left in *root. */
static int parse(Parser *p, long max_numbers, int32_t *root) {
    const unsigned char *d = p->data;
    Py_ssize_t pos = 0;
    int rc;
    for (;;) {
        NEED(1);
        unsigned char code = d[pos++];
        switch (code) {
        case 0x80: /* PROTO */
            NEED(1);
            if (d[pos++] > 5) return BAIL;
            continue;
        case 0x95: { /* FRAME */
            NEED(8);
            uint64_t size = read_u64(d + pos);
            pos += 8;
            if (size > (uint64_t)(p->end - pos)) return BAIL;
            continue;
        }
        case '.': /* STOP */
            if (p->depth != 1 || p->stack[0] == MARK_ENTRY || p->nodes[p->stack[0]].kind != N_DICT) return BAIL;
            *root = p->stack[0];
            return 0;
        case '(':
            rc = pj_push(p, MARK_ENTRY);
            break;
        case '}':
            rc = push_new(p, N_DICT);
            break;
        case ']':
            rc = push_new(p, N_LIST);
            break;
        case ')':
            rc = push_new(p, N_TUPLE);
            break;
        case 'N':
            rc = push_new(p, N_NONE);
            break;
        case 0x88: /* NEWTRUE */
            rc = push_new(p, N_TRUE);
            break;
        case 0x89: /* NEWFALSE */
            rc = push_new(p, N_FALSE);
            break;
        case 'J': /* BININT */
            NEED(4);
            rc = count_number(p, max_numbers);
            if (!rc) rc = push_int(p, (int32_t)read_u32(d + pos));
            pos += 4;
            break;
        case 'K': /* BININT1 */
            NEED(1);
            rc = count_number(p, max_numbers);
            if (!rc) rc = push_int(p, d[pos]);
            pos += 1;
            break;
        case 'M': /* BININT2 */
            NEED(2);
            rc = count_number(p, max_numbers);
            if (!rc) rc = push_int(p, d[pos] | (d[pos + 1] << 8));
            pos += 2;
            break;
        case 0x8a: { /* LONG1: little-endian two's complement */
            NEED(1);
            unsigned int n = d[pos++];
            NEED(n);
            if (n > 8) return BAIL;
            uint64_t bits = 0;
            for (unsigned int k = 0; k < n; k++) bits |= (uint64_t)d[pos + k] << (8 * k);
            if (n > 0 && n < 8 && (d[pos + n - 1] & 0x80)) bits |= ~(uint64_t)0 << (8 * n);
            pos += n;
            rc = count_number(p, max_numbers);
            if (!rc) rc = push_int(p, (int64_t)bits);
            break;
        }
        case 'I': /* INT: a decimal line; "00" and "01" are the bools of protocols 0 and 1 */
        case 'L': { /* LONG: a decimal line ending in "L" */
            const unsigned char *nl = memchr(d + pos, '\n', (size_t)(p->end - pos));
            if (nl == NULL) return BAIL;
            Py_ssize_t size = (Py_ssize_t)(nl - (d + pos));
            const unsigned char *text = d + pos;
            pos += size + 1;
            rc = count_number(p, max_numbers);
            if (rc) return rc;
            if (code == 'I' && size == 2 && text[0] == '0' && (text[1] == '0' || text[1] == '1')) {
                rc = push_new(p, text[1] == '1' ? N_TRUE : N_FALSE);
                break;
            }
            if (code == 'L' && size > 0 && text[size - 1] == 'L') size--;
            int64_t value;
            rc = parse_decimal(text, size, &value);
            if (!rc) rc = push_int(p, value);
            break;
        }
        case 'G': { /* BINFLOAT: big-endian IEEE 754 */
            NEED(8);
            uint64_t bits = 0;
            for (int k = 0; k < 8; k++) bits = (bits << 8) | d[pos + k];
            pos += 8;
            double value;
            memcpy(&value, &bits, sizeof value);
            /* orjson writes NaN and infinities as null; the walk writes a string */
            if (!isfinite(value)) return BAIL;
            rc = count_number(p, max_numbers);
            if (rc) return rc;
            int32_t index = pj_new_node(p, N_FLOAT);
            if (index < 0) return index;
            int size = pj_format_float(value, p->nodes[index].u.text);
            if (size == -1) return ERROR;
            if (size < 0) return BAIL; /* longer than orjson ever writes: not ours to decide */
            p->nodes[index].text_size = (int16_t)size;
            rc = pj_push(p, index);
            break;
        }
        case 'X': /* BINUNICODE */
            NEED(4);
            pos += 4;
            rc = push_string(p, pos, read_u32(d + pos - 4));
            if (!rc) pos += (Py_ssize_t)read_u32(d + pos - 4);
            break;
        case 0x8c: /* SHORT_BINUNICODE */
            NEED(1);
            pos += 1;
            rc = push_string(p, pos, d[pos - 1]);
            if (!rc) pos += d[pos - 1];
            break;
        case 0x8d: { /* BINUNICODE8 */
            NEED(8);
            uint64_t size = read_u64(d + pos);
            pos += 8;
            rc = push_string(p, pos, size);
            if (!rc) pos += (Py_ssize_t)size;
            break;
        }
        case 'c': { /* GLOBAL: "module\nname\n" */
            const unsigned char *module = d + pos;
            const unsigned char *nl = memchr(module, '\n', (size_t)(p->end - pos));
            if (nl == NULL) return BAIL;
            const unsigned char *name = nl + 1;
            const unsigned char *nl2 = memchr(name, '\n', (size_t)(p->end - (name - d)));
            if (nl2 == NULL) return BAIL;
            pos = (nl2 - d) + 1;
            rc = pj_push_class(p, module, nl - module, name, nl2 - name);
            break;
        }
        case 0x93: { /* STACK_GLOBAL: module and name strings on the stack */
            if (!pj_has_items(p, 2)) return BAIL;
            const Node *module = &p->nodes[p->stack[p->depth - 2]];
            const Node *name = &p->nodes[p->stack[p->depth - 1]];
            if (module->kind != N_STR || name->kind != N_STR) return BAIL;
            p->depth -= 2;
            rc = pj_push_class(p, d + module->u.s.offset, module->u.s.size, d + name->u.s.offset, name->u.s.size);
            break;
        }
        case 'R': /* REDUCE */
            rc = pj_reduce(p);
            break;
        case 'C': /* SHORT_BINBYTES */
        case 'B': { /* BINBYTES */
            Py_ssize_t width = code == 'C' ? 1 : 4;
            NEED(width);
            uint64_t size = code == 'C' ? d[pos] : read_u32(d + pos);
            pos += width;
            if (size > (uint64_t)(p->end - pos)) return BAIL;
            int32_t index = pj_new_node(p, N_BYTES);
            if (index < 0) return index;
            p->nodes[index].u.s.offset = pos;
            p->nodes[index].u.s.size = (Py_ssize_t)size;
            pos += (Py_ssize_t)size;
            rc = pj_push(p, index);
            break;
        }
        case 'q': /* BINPUT: nothing reads the memo back (no GET), only check it has an object */
            NEED(1);
            /* The scan refuses an index larger than the pickle (or MAX_MEMO_INDEX). */
            if ((Py_ssize_t)d[pos] > p->end) return BAIL;
            pos += 1;
            rc = pj_has_items(p, 1) ? 0 : BAIL;
            break;
        case 'r': /* LONG_BINPUT: the scan refuses an index larger than the pickle (or MAX_MEMO_INDEX) */
            NEED(4);
            if (read_u32(d + pos) > (uint64_t)p->end || read_u32(d + pos) > MAX_MEMO_INDEX) return BAIL;
            pos += 4;
            rc = pj_has_items(p, 1) ? 0 : BAIL;
            break;
        case 0x94: /* MEMOIZE */
            rc = pj_has_items(p, 1) ? 0 : BAIL;
            break;
        case 's': /* SETITEM */
            if (!pj_has_items(p, 3) || p->nodes[p->stack[p->depth - 3]].kind != N_DICT) return BAIL;
            rc = dict_add(p, p->stack[p->depth - 3], p->stack[p->depth - 2], p->stack[p->depth - 1]);
            p->depth -= 2;
            break;
        case 'a': /* APPEND */
            if (!pj_has_items(p, 2) || p->nodes[p->stack[p->depth - 2]].kind != N_LIST) return BAIL;
            link_child(p, p->stack[p->depth - 2], p->stack[p->depth - 1]);
            p->depth -= 1;
            rc = 0;
            break;
        case 'u': /* SETITEMS */
        case 'e': { /* APPENDS */
            Py_ssize_t mark = top_mark(p);
            if (mark < 1 || p->stack[mark - 1] == MARK_ENTRY) return BAIL;
            int32_t target = p->stack[mark - 1];
            if (p->nodes[target].kind != (code == 'u' ? N_DICT : N_LIST)) return BAIL;
            rc = fill(p, target, mark + 1);
            p->depth = mark;
            break;
        }
        case 't': /* TUPLE */
        case 'l': /* LIST */
        case 'd': { /* DICT */
            Py_ssize_t mark = top_mark(p);
            if (mark < 0) return BAIL;
            int32_t container = pj_new_node(p, code == 't' ? N_TUPLE : code == 'l' ? N_LIST : N_DICT);
            if (container < 0) return container;
            rc = fill(p, container, mark + 1);
            if (rc) return rc;
            p->depth = mark;
            rc = pj_push(p, container);
            break;
        }
        case 0x85: /* TUPLE1 */
        case 0x86: /* TUPLE2 */
        case 0x87: { /* TUPLE3 */
            Py_ssize_t n = code - 0x84;
            if (!pj_has_items(p, n)) return BAIL;
            int32_t container = pj_new_node(p, N_TUPLE);
            if (container < 0) return container;
            fill(p, container, p->depth - n);
            rc = pj_push(p, container);
            break;
        }
        default:
            return BAIL;
        }
        if (rc) return rc;
    }
}

/* The scan's limit (relay.decode.cost_model.MAX_NUMBERS) and the walk's
 * (relay.decode.to_json.MAX_VISITS), handed over once by configure(). */
static long max_numbers = -1;
static Py_ssize_t max_visits = -1;

static PyObject *configure(PyObject *module, PyObject *args) {
    (void)module;
    long numbers;
    Py_ssize_t visits;
    if (!PyArg_ParseTuple(args, "ln", &numbers, &visits)) return NULL;
    if (numbers < 0 || visits < 0) {
        PyErr_SetString(PyExc_ValueError, "limits must not be negative");
        return NULL;
    }
    max_numbers = numbers;
    max_visits = visits;
    Py_RETURN_NONE;
}

/* Whether the root dict holds only scalars: the Python path's flat record
 * (relay.decode.to_json.flat_record_json), which it encodes without a walk. */
static int flat_record(const Parser *p, int32_t root) {
    int position = 0;
    for (int32_t child = p->nodes[root].u.c.first; child >= 0; child = p->nodes[child].next, position++)
        if ((position & 1) && p->nodes[child].kind > N_STR) return 0;
    return 1;
}

/* The JSON of one payload: a new bytes, Py_None (new reference: the Python
 * path decides), or NULL with an exception.  p is the caller's, reset here. */
static PyObject *convert_payload(Parser *p, const unsigned char *data, Py_ssize_t size, int max_depth,
                                 Py_ssize_t max_bytes) {
    p->data = data;
    p->end = size;
    p->nodes = p->first_nodes;
    p->count = 0;
    p->capacity = INLINE_NODES;
    p->stack = p->first_stack;
    p->depth = 0;
    p->stack_capacity = INLINE_NODES;
    p->numbers = 0;
    p->keys = NULL;
    p->keys_used = p->keys_capacity = 0;

    PyObject *result = NULL;
    int32_t root = -1;
    int rc = parse(p, max_numbers, &root);
    if (rc == ERROR) {
        PyErr_NoMemory();
        goto done;
    }
    if (rc == 0) {
        Py_ssize_t walk_cost = 0, visits = 0;
        Py_ssize_t size_out = pj_measure(p, root, 1, max_depth, &walk_cost, &visits);
        /* Both the flat path (JSON size) and the walk (its charge, its
         * visits) must be within their limits: near them, Python decides and
         * words the refusal. */
        if (size_out >= 0 && size_out <= max_bytes && walk_cost <= max_bytes &&
            (visits <= max_visits || flat_record(p, root))) {
            result = PyBytes_FromStringAndSize(NULL, size_out);
            if (result == NULL) goto done;
            char *end = pj_write_node(p, root, PyBytes_AS_STRING(result));
            if (end != PyBytes_AS_STRING(result) + size_out) {
                Py_CLEAR(result);
                PyErr_SetString(PyExc_SystemError, "pickle to JSON: measured and written sizes differ");
            }
            goto done;
        }
    }
    result = Py_NewRef(Py_None);
done:
    if (p->nodes != p->first_nodes) PyMem_Free(p->nodes);
    if (p->stack != p->first_stack) PyMem_Free(p->stack);
    PyMem_Free(p->keys);
    p->keys = NULL;
    return result;
}

static PyObject *convert(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer view;
    int max_depth;
    Py_ssize_t max_bytes;
    if (max_numbers < 0) {
        PyErr_SetString(PyExc_RuntimeError, "configure() first");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*in", &view, &max_depth, &max_bytes)) return NULL;
    Parser *p = pj_parser_new();
    PyObject *result = p == NULL ? PyErr_NoMemory() : convert_payload(p, view.buf, view.len, max_depth, max_bytes);
    pj_parser_free(p);
    PyBuffer_Release(&view);
    return result;
}

/* feed_frames(buffer, need, max_frame, max_depth, max_decoded, floor, factor)
 *     -> (events, consumed, need, oversize, left)
 *
 * relay.decode.frames.FrameDecoder.feed's loop over the frames in a bytearray, in C:
 * frames are a 4-byte big-endian length and a pickle.  need is the payload
 * size of the frame whose header was read already, or -1.  Each complete
 * payload becomes, in order, its JSON (bytes, as convert() makes it with a
 * budget of min(max_decoded, floor + factor * size)), or, where convert()
 * would answer None, a 1-tuple holding a copy of the payload: the caller
 * decodes those in Python.  Stops at the first incomplete frame, or at a
 * header declaring more than max_frame bytes (oversize is then that size,
 * else -1; the header is not consumed).  consumed: bytes of buffer used up;
 * the caller deletes them; left: how many 1-tuples there are.  Nothing here
 * resizes the buffer.
 */
static PyObject *feed_frames(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (max_numbers < 0) {
        PyErr_SetString(PyExc_RuntimeError, "configure() first");
        return NULL;
    }
    if (nargs != 7 || !PyByteArray_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError,
                        "feed_frames(buffer: bytearray, need, max_frame, max_depth, max_decoded, floor, factor)");
        return NULL;
    }
    Py_ssize_t need = PyLong_AsSsize_t(args[1]), max_frame = PyLong_AsSsize_t(args[2]);
    long max_depth = PyLong_AsLong(args[3]);
    Py_ssize_t max_decoded = PyLong_AsSsize_t(args[4]), floor_bytes = PyLong_AsSsize_t(args[5]),
               factor = PyLong_AsSsize_t(args[6]);
    if (PyErr_Occurred()) return NULL;
    if (max_depth < 0 || max_depth > INT_MAX || factor < 0 || floor_bytes < 0) {
        PyErr_SetString(PyExc_ValueError, "feed_frames: limits out of range");
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)PyByteArray_AS_STRING(args[0]);
    Py_ssize_t end = PyByteArray_GET_SIZE(args[0]), offset = 0, oversize = -1, left = 0;
    PyObject *events = PyList_New(0);
    if (events == NULL) return NULL;
    Parser *p = pj_parser_new(); /* one for all the frames of this call */
    if (p == NULL) {
        Py_DECREF(events);
        return PyErr_NoMemory();
    }
    for (;;) {
        if (need < 0) {
            if (end - offset < 4) break;
            need = (Py_ssize_t)((uint32_t)data[offset] << 24 | (uint32_t)data[offset + 1] << 16 |
                                (uint32_t)data[offset + 2] << 8 | (uint32_t)data[offset + 3]);
            if (need > max_frame) {
                oversize = need;
                need = -1;
                break;
            }
            offset += 4;
        }
        if (end - offset < need) break;
        /* min(max_decoded, floor + factor * need), without overflowing */
        Py_ssize_t budget = max_decoded;
        if (floor_bytes <= max_decoded && (factor == 0 || need <= (max_decoded - floor_bytes) / factor))
            budget = floor_bytes + factor * need;
        PyObject *event = convert_payload(p, data + offset, need, (int)max_depth, budget);
        if (event == Py_None) {
            Py_DECREF(event);
            PyObject *payload = PyBytes_FromStringAndSize((const char *)data + offset, need);
            event = payload == NULL ? NULL : PyTuple_Pack(1, payload);
            Py_XDECREF(payload);
            left++;
        }
        if (event == NULL || PyList_Append(events, event) < 0) {
            Py_XDECREF(event);
            pj_parser_free(p);
            Py_DECREF(events);
            return NULL;
        }
        Py_DECREF(event);
        offset += need;
        need = -1;
    }
    pj_parser_free(p);
    return Py_BuildValue("(Nnnnn)", events, offset, need, oversize, left);
}

static PyMethodDef methods[] = {
    {"convert", convert, METH_VARARGS,
     "convert(data, max_depth, max_bytes) -> the record's JSON (bytes), or None: let Python decide"},
    {"configure", configure, METH_VARARGS,
     "configure(max_numbers: int, max_visits: int): the scan's limit on numbers and the walk's on visits"},
    {"feed_frames", (PyCFunction)(void (*)(void))feed_frames, METH_FASTCALL,
     "feed_frames(buffer, need, max_frame, max_depth, max_decoded, floor, factor) -> (events, consumed, need, "
     "oversize, left): FrameDecoder.feed's loop over the complete frames of a bytearray"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "relay.decode._fast_path", "Pickle straight to JSON (fast path of relay.decode.frames).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__fast_path(void) {
    pj_init_json_cost();
    return PyModule_Create(&module_def);
}
