/* C version of relay.decode.cost_scan.scan_python: the pre-flight cost scan.
 *
 * Same contract, same model and the same refusal texts as the Python
 * reference (tests/relay/decode/test_cost_scan.py runs both on the same inputs,
 * generated and mutated): scan(data) returns a flag word (FLAG_NAMES_CLASSES,
 * FLAG_SHARES_OBJECTS) or a str saying why the pickle is refused; the Python
 * wrapper raises UnsafePickle with it.
 *
 * The model: the unpickler's stack, marks and memo, holding per object only
 * what its cost depends on (kind, hash weight, tuple length), and the
 * budgets of relay/decode/cost_model.py.  The opcode table (what the model does per
 * opcode byte) and the budgets are built in Python and handed over once by
 * configure(), so both implementations read the same ones.
 *
 * This code sees hostile bytes: every read is bounds-checked against the
 * buffer before it happens, every array grows before it is written, and
 * every count is bounded (by MAX_OPCODES) before it can overflow.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Actions: keep in step with OP_* in relay/decode/cost_model.py (checked by configure()). */
enum {
    OP_UNKNOWN, OP_FORBIDDEN, OP_STOP, OP_PROTO, OP_FRAME, OP_MARK, OP_POP, OP_POP_MARK, OP_DUP,
    OP_NUMBER, OP_NUMBER_LINE, OP_LONG1, OP_LONG4, OP_NONE, OP_TEXT_LINE, OP_TEXT1, OP_TEXT4, OP_TEXT4S,
    OP_TEXT8, OP_BYTEARRAY8, OP_EMPTY_MUTABLE, OP_EMPTY_TUPLE, OP_TUPLE, OP_TUPLE_N, OP_LIST, OP_DICT,
    OP_FROZENSET, OP_APPEND, OP_APPENDS, OP_SETITEM, OP_SETITEMS, OP_ADDITEMS, OP_PUT_LINE, OP_PUT1,
    OP_PUT4, OP_MEMOIZE, OP_GET_LINE, OP_GET1, OP_GET4, OP_GLOBAL, OP_STACK_GLOBAL, OP_INST, OP_OBJ,
    OP_REDUCE, OP_NEWOBJ, OP_NEWOBJ_EX, OP_BUILD, OP_COUNT
};

/* Kinds of abstract values; K_EMPTY marks a memo slot never stored. */
enum { K_EMPTY, K_SCALAR, K_TEXT, K_TUPLE, K_FROZENSET, K_MUTABLE, K_OBJECT };

#define FLAG_NAMES_CLASSES 1
#define FLAG_SHARES_OBJECTS 2
#define WEIGHT_CAP (1u << 30)
#define TUPLE1 0x85

typedef struct {
    uint32_t kind;
    uint32_t weight; /* items a hash of it visits, saturating at WEIGHT_CAP */
    uint64_t length; /* TEXT: bytes; TUPLE, FROZENSET: items; MUTABLE: the container's index in sizes */
} Value;

static unsigned char table[256];
static int configured = 0;
static long max_numbers, max_opcodes, max_objects, max_hashed, max_calls, max_text_digits, max_name_bytes;

typedef struct {
    const unsigned char *data;
    Py_ssize_t end;
    Value *stack;
    Py_ssize_t depth, stack_capacity;
    Py_ssize_t *marks;
    Py_ssize_t num_marks, marks_capacity;
    Value *memo; /* indexed by memo index; K_EMPTY where never stored */
    Py_ssize_t memo_capacity, memo_len;
    uint64_t *sizes; /* items held, per mutable container (what **kwargs copies) */
    Py_ssize_t sizes_len, sizes_capacity;
    long flags, objects, numbers, hashed, calls;
    PyObject *refusal; /* the reason (a str), once refused */
    int failed;        /* a Python exception is set (MemoryError) */
} Model;

static int refuse(Model *m, const char *format, ...) {
    va_list args;
    va_start(args, format);
    m->refusal = PyUnicode_FromFormatV(format, args);
    va_end(args);
    if (m->refusal == NULL) m->failed = 1;
    return -1;
}

static int out_of_memory(Model *m) {
    PyErr_NoMemory();
    m->failed = 1;
    return -1;
}

static uint32_t read_u32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t read_u64(const unsigned char *p) { return (uint64_t)read_u32(p) | ((uint64_t)read_u32(p + 4) << 32); }

/* Offset of the next newline at or after pos, or -1. */
static Py_ssize_t find_newline(const unsigned char *d, Py_ssize_t pos, Py_ssize_t end) {
    if (pos >= end) return -1;
    const unsigned char *hit = memchr(d + pos, '\n', (size_t)(end - pos));
    return hit ? (Py_ssize_t)(hit - d) : -1;
}

/* -- budgets ------------------------------------------------------------------- */

static int new_object(Model *m) {
    if (++m->objects > max_objects) return refuse(m, "more than %ld objects in one record", max_objects);
    return 0;
}

static int count_number(Model *m) {
    if (++m->numbers > max_numbers) return refuse(m, "more than %ld numbers in one record", max_numbers);
    return 0;
}

static int hashing(Model *m, const Value *v) {
    long cost = v->kind == K_SCALAR ? 1 : (v->kind == K_TUPLE || v->kind == K_FROZENSET) ? (long)v->weight : 0;
    /* both below 2**31: no overflow */
    m->hashed += cost;
    if (m->hashed > max_hashed)
        return refuse(m, "non-string dict keys and set members weigh more than %ld in one record", max_hashed);
    return 0;
}

static int call(Model *m, uint64_t cost) {
    if (cost > (uint64_t)max_calls || (m->calls += (long)cost) > max_calls)
        return refuse(m, "more than %ld stand-in calls and arguments in one record", max_calls);
    return 0;
}

/* -- the stack ------------------------------------------------------------------ */

static Py_ssize_t fence(const Model *m) { return m->num_marks ? m->marks[m->num_marks - 1] : 0; }

static int push(Model *m, Value v) {
    if (m->depth == m->stack_capacity) {
        /* depth <= opcodes <= max_opcodes: the capacity cannot overflow */
        Py_ssize_t capacity = m->stack_capacity ? m->stack_capacity * 2 : 64;
        Value *grown = PyMem_Realloc(m->stack, sizeof(Value) * (size_t)capacity);
        if (grown == NULL) return out_of_memory(m);
        m->stack = grown;
        m->stack_capacity = capacity;
    }
    m->stack[m->depth++] = v;
    return 0;
}

static int push_new(Model *m, Value v) { return new_object(m) ? -1 : push(m, v); }

static int push_mutable(Model *m, uint64_t size) {
    if (new_object(m)) return -1;
    if (m->sizes_len == m->sizes_capacity) {
        /* one per object: bounded by max_objects */
        Py_ssize_t capacity = m->sizes_capacity ? m->sizes_capacity * 2 : 32;
        uint64_t *grown = PyMem_Realloc(m->sizes, sizeof(uint64_t) * (size_t)capacity);
        if (grown == NULL) return out_of_memory(m);
        m->sizes = grown;
        m->sizes_capacity = capacity;
    }
    m->sizes[m->sizes_len] = size;
    return push(m, (Value){K_MUTABLE, 1, (uint64_t)m->sizes_len++});
}

static int underflow(Model *m, Py_ssize_t at) { return refuse(m, "pickle stack underflow at offset %zd", at); }

static int pop(Model *m, Py_ssize_t at, Value *out) {
    if (m->depth <= fence(m)) return underflow(m, at);
    *out = m->stack[--m->depth];
    return 0;
}

static int top(Model *m, Py_ssize_t at, Value *out) {
    if (m->depth <= fence(m)) return underflow(m, at);
    *out = m->stack[m->depth - 1];
    return 0;
}

static int marker(Model *m, Py_ssize_t at, Py_ssize_t *out) {
    if (m->num_marks == 0) return refuse(m, "no MARK for the opcode at offset %zd", at);
    *out = m->marks[--m->num_marks];
    return 0;
}

/* Check that the items from start up may be popped (Pdata_poptuple). */
static int can_take(Model *m, Py_ssize_t start, Py_ssize_t at) {
    if (start < fence(m) || start > m->depth) return underflow(m, at);
    return 0;
}

static Value tuple_of(const Model *m, Py_ssize_t start, uint32_t kind) {
    uint64_t weight = 1;
    for (Py_ssize_t i = start; i < m->depth; i++) {
        const Value *item = &m->stack[i];
        weight += (item->kind == K_TUPLE || item->kind == K_FROZENSET) ? item->weight : 1;
        if (weight > WEIGHT_CAP) weight = WEIGHT_CAP;
    }
    Value v = {kind, (uint32_t)weight, (uint64_t)(m->depth - start)};
    return v;
}

/* -- the memo ------------------------------------------------------------------- */

static int memo_put(Model *m, Py_ssize_t index, Value v) {
    if (index >= m->memo_capacity) {
        /* index <= max_objects (checked by the caller): bounded */
        Py_ssize_t capacity = m->memo_capacity ? m->memo_capacity : 64;
        while (capacity <= index) capacity *= 2;
        Value *grown = PyMem_Realloc(m->memo, sizeof(Value) * (size_t)capacity);
        if (grown == NULL) return out_of_memory(m);
        memset(grown + m->memo_capacity, 0, sizeof(Value) * (size_t)(capacity - m->memo_capacity));
        m->memo = grown;
        m->memo_capacity = capacity;
    }
    if (m->memo[index].kind == K_EMPTY) m->memo_len++;
    m->memo[index] = v;
    return 0;
}

/* Parse a PUT/GET text index ("digits\n") at pos; *next is past the newline. */
static int line_index(Model *m, Py_ssize_t pos, Py_ssize_t at, Py_ssize_t *index, Py_ssize_t *next) {
    Py_ssize_t newline = find_newline(m->data, pos, m->end);
    if (newline < 0) return refuse(m, "pickle data was truncated (no STOP opcode)");
    Py_ssize_t digits = newline - pos;
    if (digits < 1) return refuse(m, "bad memo index at offset %zd", at);
    for (Py_ssize_t i = pos; i < newline; i++)
        if (m->data[i] < '0' || m->data[i] > '9') return refuse(m, "bad memo index at offset %zd", at);
    if (digits > 10) return refuse(m, "memo index of %zd digits out of range at offset %zd", digits, at);
    uint64_t value = 0;
    for (Py_ssize_t i = pos; i < newline; i++) value = value * 10 + (uint64_t)(m->data[i] - '0');
    /* at most 10 digits: fits; callers bound it further */
    *index = value > (uint64_t)PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX : (Py_ssize_t)value;
    *next = newline + 1;
    return 0;
}

/* -- containers ------------------------------------------------------------------ */

/* Items from start up go into the container at start - 1: the hashing or the
 * calls they cause (relay.decode.cost_model.CostModel.fill). */
static int fill(Model *m, const Value *container, Py_ssize_t start, int pairs, Py_ssize_t at) {
    Py_ssize_t count = m->depth - start;
    if (pairs && count % 2) return refuse(m, "odd number of items for SETITEMS at offset %zd", at);
    if (container->kind == K_MUTABLE) m->sizes[container->length] += (uint64_t)(pairs ? count / 2 : count);
    if (container->kind == K_OBJECT) return call(m, (uint64_t)(pairs ? count / 2 : count));
    if (container->kind == K_MUTABLE) {
        for (Py_ssize_t i = start; i < m->depth; i += pairs ? 2 : 1)
            if (hashing(m, &m->stack[i])) return -1;
    }
    return 0;
}

static const char *forbidden_name(unsigned char code) {
    switch (code) {
    case 'P': return "PERSID";
    case 'Q': return "BINPERSID";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return "?";
    }
}

#define SCALAR_VALUE ((Value){K_SCALAR, 1, 0})
#define OBJECT_VALUE ((Value){K_OBJECT, 1, 0})
#define TRUNCATED() return refuse(m, "pickle data was truncated (no STOP opcode)")
/* At least n bytes remain at pos. */
#define NEED(n)                                                     \
    do {                                                            \
        if (m->end - pos < (Py_ssize_t)(n)) TRUNCATED();            \
    } while (0)

static int run(Model *m) {
    const unsigned char *d = m->data;
    const Py_ssize_t end = m->end;
    Py_ssize_t pos = 0;
    long opcodes = 0, digits_total = 0;
    Value v = {0, 0, 0}, w = {0, 0, 0};
    for (;;) {
        const Py_ssize_t at = pos;
        NEED(1);
        const unsigned char code = d[pos++];
        const int op = table[code];
        if (++opcodes > max_opcodes) return refuse(m, "more than %ld opcodes in one record", max_opcodes);
        switch (op) {
        case OP_TEXT4:
        case OP_TEXT1: {
            Py_ssize_t width = op == OP_TEXT4 ? 4 : 1;
            NEED(width);
            uint64_t size = op == OP_TEXT4 ? read_u32(d + pos) : d[pos];
            pos += width;
            if (size > (uint64_t)(end - pos)) TRUNCATED();
            pos += (Py_ssize_t)size;
            if (push_new(m, (Value){K_TEXT, 1, size})) return -1;
            break;
        }
        case OP_PUT1:
        case OP_PUT4:
        case OP_PUT_LINE:
        case OP_MEMOIZE: {
            Py_ssize_t index;
            if (op == OP_PUT1) {
                NEED(1);
                index = d[pos++];
            } else if (op == OP_PUT4) {
                NEED(4);
                index = (Py_ssize_t)read_u32(d + pos);
                pos += 4;
            } else if (op == OP_PUT_LINE) {
                if (line_index(m, pos, at, &index, &pos)) return -1;
            } else {
                index = m->memo_len;
            }
            Py_ssize_t bound = end < max_objects ? end : max_objects;
            if (index > bound) return refuse(m, "memo index %zd out of range at offset %zd", index, at);
            if (top(m, at, &v) || memo_put(m, index, v)) return -1;
            break;
        }
        case OP_NUMBER: {
            Py_ssize_t width = code == 'J' ? 4 : code == 'K' ? 1 : code == 'M' ? 2 : 8;
            NEED(width);
            pos += width;
            if (count_number(m) || push_new(m, SCALAR_VALUE)) return -1;
            break;
        }
        case OP_SETITEM:
        case OP_SETITEMS:
        case OP_APPEND:
        case OP_APPENDS:
        case OP_ADDITEMS: {
            Py_ssize_t start = 0;
            if (op == OP_SETITEM) start = m->depth - 2;
            else if (op == OP_APPEND) start = m->depth - 1;
            else if (marker(m, at, &start)) return -1;
            /* the container right below the items, above the fence */
            if (start - 1 < fence(m) || start > m->depth) return underflow(m, at);
            Value container = m->stack[start - 1];
            if (op == OP_APPEND || op == OP_APPENDS) {
                if (container.kind == K_MUTABLE) m->sizes[container.length] += (uint64_t)(m->depth - start);
                else if (container.kind == K_OBJECT && m->depth > start && call(m, 1)) return -1;
            } else if (fill(m, &container, start, op != OP_ADDITEMS, at)) {
                return -1;
            }
            m->depth = start;
            break;
        }
        case OP_MARK:
            if (m->num_marks == m->marks_capacity) {
                Py_ssize_t capacity = m->marks_capacity ? m->marks_capacity * 2 : 16;
                Py_ssize_t *grown = PyMem_Realloc(m->marks, sizeof(Py_ssize_t) * (size_t)capacity);
                if (grown == NULL) return out_of_memory(m);
                m->marks = grown;
                m->marks_capacity = capacity;
            }
            m->marks[m->num_marks++] = m->depth;
            break;
        case OP_STOP:
            if (pop(m, at, &v)) return -1;
            return 0;
        case OP_DUP:
            m->flags |= FLAG_SHARES_OBJECTS;
            if (top(m, at, &v) || push(m, v)) return -1;
            break;
        case OP_GET1:
        case OP_GET4:
        case OP_GET_LINE: {
            m->flags |= FLAG_SHARES_OBJECTS;
            Py_ssize_t index;
            if (op == OP_GET1) {
                NEED(1);
                index = d[pos++];
            } else if (op == OP_GET4) {
                NEED(4);
                index = (Py_ssize_t)read_u32(d + pos);
                pos += 4;
            } else if (line_index(m, pos, at, &index, &pos)) {
                return -1;
            }
            if (index >= m->memo_capacity || m->memo[index].kind == K_EMPTY)
                return refuse(m, "memo index %zd never stored, at offset %zd", index, at);
            if (push(m, m->memo[index])) return -1;
            break;
        }
        case OP_NONE:
            if (push_new(m, SCALAR_VALUE)) return -1;
            break;
        case OP_EMPTY_MUTABLE:
            if (push_mutable(m, 0)) return -1;
            break;
        case OP_TUPLE:
        case OP_TUPLE_N:
        case OP_FROZENSET: {
            Py_ssize_t start = 0;
            if (op == OP_TUPLE_N) start = m->depth - (code - TUPLE1 + 1);
            else if (marker(m, at, &start)) return -1;
            if (can_take(m, start, at)) return -1;
            if (op == OP_FROZENSET)
                for (Py_ssize_t i = start; i < m->depth; i++)
                    if (hashing(m, &m->stack[i])) return -1;
            v = tuple_of(m, start, op == OP_FROZENSET ? K_FROZENSET : K_TUPLE);
            m->depth = start;
            if (push_new(m, v)) return -1;
            break;
        }
        case OP_EMPTY_TUPLE:
            if (push_new(m, (Value){K_TUPLE, 1, 0})) return -1;
            break;
        case OP_LIST:
        case OP_DICT: {
            Py_ssize_t start = 0;
            if (marker(m, at, &start) || can_take(m, start, at)) return -1;
            if (op == OP_DICT) {
                if ((m->depth - start) % 2) return refuse(m, "odd number of items for DICT at offset %zd", at);
                for (Py_ssize_t i = start; i < m->depth; i += 2)
                    if (hashing(m, &m->stack[i])) return -1;
            }
            uint64_t count = (uint64_t)(m->depth - start);
            m->depth = start;
            if (push_mutable(m, op == OP_DICT ? count / 2 : count)) return -1;
            break;
        }
        case OP_NUMBER_LINE: {
            Py_ssize_t newline = find_newline(d, pos, end);
            if (newline < 0) TRUNCATED();
            if (code != 'F') { /* INT, LONG; FLOAT text parses in linear time */
                long digits = 0;
                for (Py_ssize_t i = pos; i < newline; i++) digits += d[i] >= '0' && d[i] <= '9';
                if (digits > 18) digits_total += digits;
                if (digits_total > max_text_digits)
                    return refuse(m, "more than %ld digits of decimal ints in one record", max_text_digits);
            }
            pos = newline + 1;
            if (count_number(m) || push_new(m, SCALAR_VALUE)) return -1;
            break;
        }
        case OP_LONG1:
        case OP_LONG4: {
            uint64_t size;
            if (op == OP_LONG1) {
                NEED(1);
                size = d[pos++];
            } else {
                NEED(4);
                int32_t signed_size = (int32_t)read_u32(d + pos);
                if (signed_size < 0) return refuse(m, "negative length in LONG4 at offset %zd", at);
                size = (uint64_t)signed_size;
                pos += 4;
            }
            if (size > (uint64_t)(end - pos)) TRUNCATED();
            pos += (Py_ssize_t)size;
            if (count_number(m) || push_new(m, SCALAR_VALUE)) return -1;
            break;
        }
        case OP_TEXT4S:
        case OP_TEXT8:
        case OP_BYTEARRAY8:
        case OP_TEXT_LINE: {
            uint64_t size;
            if (op == OP_TEXT_LINE) {
                Py_ssize_t newline = find_newline(d, pos, end);
                if (newline < 0) TRUNCATED();
                size = (uint64_t)(newline - pos);
                pos = newline + 1;
            } else if (op == OP_TEXT4S) {
                NEED(4);
                int32_t signed_size = (int32_t)read_u32(d + pos);
                if (signed_size < 0) return refuse(m, "negative length in BINSTRING at offset %zd", at);
                size = (uint64_t)signed_size;
                pos += 4;
                if (size > (uint64_t)(end - pos)) TRUNCATED();
                pos += (Py_ssize_t)size;
            } else {
                NEED(8);
                size = read_u64(d + pos);
                pos += 8;
                if (size > (uint64_t)(end - pos)) TRUNCATED();
                pos += (Py_ssize_t)size;
            }
            if (op == OP_BYTEARRAY8 ? push_mutable(m, 0) : push_new(m, (Value){K_TEXT, 1, size})) return -1;
            break;
        }
        case OP_POP:
            if (m->num_marks && m->marks[m->num_marks - 1] == m->depth) m->num_marks--;
            else if (pop(m, at, &v)) return -1;
            break;
        case OP_POP_MARK: {
            Py_ssize_t start = 0;
            if (marker(m, at, &start)) return -1;
            if (start < m->depth) m->depth = start;
            break;
        }
        case OP_GLOBAL:
        case OP_INST: {
            m->flags |= FLAG_NAMES_CLASSES;
            Py_ssize_t first = find_newline(d, pos, end);
            if (first < 0) TRUNCATED();
            Py_ssize_t second = find_newline(d, first + 1, end);
            if (second < 0) TRUNCATED();
            if (first - pos > max_name_bytes || second - first - 1 > max_name_bytes)
                return refuse(m, "class name longer than %ld bytes at offset %zd", max_name_bytes, at);
            pos = second + 1;
            if (op == OP_INST) {
                Py_ssize_t start = 0;
                if (marker(m, at, &start) || can_take(m, start, at)) return -1;
                uint64_t count = (uint64_t)(m->depth - start);
                m->depth = start;
                if (call(m, 2 + count)) return -1;
            } else if (call(m, 1)) {
                return -1;
            }
            if (push_new(m, OBJECT_VALUE)) return -1;
            break;
        }
        case OP_STACK_GLOBAL:
            m->flags |= FLAG_NAMES_CLASSES;
            if (pop(m, at, &v) || pop(m, at, &w)) return -1; /* v: name, w: module */
            if (v.kind != K_TEXT || w.kind != K_TEXT)
                return refuse(m, "STACK_GLOBAL of a non-string at offset %zd", at);
            if (v.length > (uint64_t)max_name_bytes || w.length > (uint64_t)max_name_bytes)
                return refuse(m, "class name longer than %ld bytes at offset %zd", max_name_bytes, at);
            if (call(m, 1) || push_new(m, OBJECT_VALUE)) return -1;
            break;
        case OP_OBJ: {
            m->flags |= FLAG_NAMES_CLASSES;
            Py_ssize_t start = 0;
            if (marker(m, at, &start) || can_take(m, start, at)) return -1;
            uint64_t count = (uint64_t)(m->depth - start);
            m->depth = start;
            if (count == 0) return refuse(m, "OBJ without a class at offset %zd", at);
            if (call(m, count) || push_new(m, OBJECT_VALUE)) return -1;
            break;
        }
        case OP_REDUCE:
        case OP_NEWOBJ:
        case OP_NEWOBJ_EX: {
            /* *args copies the argument tuple, **kwargs the keyword dict */
            Value kwargs = OBJECT_VALUE, callable;
            if (op == OP_NEWOBJ_EX && pop(m, at, &kwargs)) return -1;
            if (pop(m, at, &v) || pop(m, at, &callable)) return -1; /* v: the arguments */
            uint64_t cost = 1 + (v.kind == K_TUPLE ? v.length : 0);
            if (kwargs.kind == K_MUTABLE) cost += m->sizes[kwargs.length];
            if (call(m, cost) || push_new(m, OBJECT_VALUE)) return -1;
            break;
        }
        case OP_BUILD:
            if (m->depth - 2 < fence(m)) return underflow(m, at);
            m->depth--;
            if (call(m, 1)) return -1;
            break;
        case OP_PROTO:
            NEED(1);
            if (d[pos] > 5) return refuse(m, "unsupported pickle protocol %d at offset %zd", (int)d[pos], at);
            pos++;
            break;
        case OP_FRAME: {
            NEED(8);
            uint64_t size = read_u64(d + pos);
            if (size > (uint64_t)(end - pos - 8))
                return refuse(m, "pickle data was truncated: FRAME of %llu bytes at offset %zd",
                              (unsigned long long)size, at);
            pos += 8;
            break;
        }
        case OP_FORBIDDEN:
            return refuse(m, "opcode %s is not allowed (offset %zd)", forbidden_name(code), at);
        default:
            return refuse(m, "unknown opcode 0x%02x at offset %zd", (unsigned int)code, at);
        }
    }
}

static PyObject *scan(PyObject *module, PyObject *arg) {
    (void)module;
    Py_buffer view;
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "configure() first");
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    Model m;
    memset(&m, 0, sizeof m);
    m.data = (const unsigned char *)view.buf;
    m.end = view.len;
    int rc = run(&m);
    PyObject *result;
    if (m.failed) result = NULL;
    else if (rc) result = m.refusal;
    else result = PyLong_FromLong(m.flags);
    PyMem_Free(m.stack);
    PyMem_Free(m.marks);
    PyMem_Free(m.memo);
    PyMem_Free(m.sizes);
    PyBuffer_Release(&view);
    return result;
}

static PyObject *configure(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer kinds;
    long numbers, opcodes, objects, hashed, calls, text_digits, name_bytes;
    if (!PyArg_ParseTuple(args, "y*lllllll", &kinds, &numbers, &opcodes, &objects, &hashed, &calls, &text_digits,
                          &name_bytes))
        return NULL;
    int bad_table = kinds.len != 256;
    for (Py_ssize_t i = 0; !bad_table && i < 256; i++) bad_table = ((const unsigned char *)kinds.buf)[i] >= OP_COUNT;
    if (!bad_table) memcpy(table, kinds.buf, 256);
    PyBuffer_Release(&kinds);
    if (bad_table) {
        PyErr_SetString(PyExc_ValueError, "the opcode table has 256 entries, each a known action");
        return NULL;
    }
    /* Counts stay far from overflow: each is checked as it passes its limit. */
    long limits[] = {numbers, opcodes, objects, hashed, calls, text_digits, name_bytes};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        if (limits[i] < 0 || limits[i] > (1L << 30)) {
            PyErr_SetString(PyExc_ValueError, "limits must be between 0 and 2**30");
            return NULL;
        }
    }
    max_numbers = numbers;
    max_opcodes = opcodes;
    max_objects = objects;
    max_hashed = hashed;
    max_calls = calls;
    max_text_digits = text_digits;
    max_name_bytes = name_bytes;
    configured = 1;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_O, "scan(data) -> flags (int) or the reason it is refused (str)"},
    {"configure", configure, METH_VARARGS,
     "configure(table, max_numbers, max_opcodes, max_objects, max_hashed, max_calls, max_text_digits, "
     "max_name_bytes)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "relay.decode._cost_scan", "Pickle cost scan (C version of relay.decode.cost_scan).", -1, methods,
};

PyMODINIT_FUNC PyInit__cost_scan(void) { return PyModule_Create(&module_def); }
