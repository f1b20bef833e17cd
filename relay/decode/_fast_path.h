/* What the parts of relay.decode._fast_path share: the node array a pickle is
 * parsed into, the parser's state, and the functions each part offers.
 *
 *   _fast_path.c            the module, the parse loop, nodes and the stack
 *   _fast_path_classes.c    the well-known classes (REDUCE of datetime, Decimal, set)
 *   _fast_path_text.c       measuring and writing the JSON text
 */
#ifndef RELAY_DECODE_FAST_PATH_H
#define RELAY_DECODE_FAST_PATH_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

enum {
    N_NONE, N_TRUE, N_FALSE, N_INT, N_FLOAT, N_STR,
    /* rebuilt values of well-known classes, written as JSON strings */
    N_DATETIME, N_DECIMAL,
    /* only ever arguments of a REDUCE: a record holding one goes to Python */
    N_CLASS, N_LATIN1, N_BYTES, N_TIMEDELTA, N_TIMEZONE,
    /* containers (N_SET: a set or frozenset, written as the list it was built from) */
    N_LIST, N_TUPLE, N_DICT, N_SET
};

/* The classes this path rebuilds (N_CLASS nodes), as relay/decode/inert.py does. */
enum { C_DATETIME, C_DATE, C_TIMEZONE, C_TIMEDELTA, C_DECIMAL, C_ENCODE, C_SET, C_FROZENSET };

/* More nodes than this (a pickle of thousands of tiny containers) goes to the
 * Python path, which has its own bounds; it keeps this one's memory small. */
#define MAX_NODES 65536
#define MAX_LEVELS 128
/* The largest memo index the cost scan takes (relay/decode/cost_scan.py: at
 * most the pickle's length and cost_model.MAX_OBJECTS): beyond it the Python
 * path refuses the pickle, so this one must not answer. */
#define MAX_MEMO_INDEX 65536
#define INLINE_NODES 256

/* orjson's text of a double is at most 24 characters, without a NUL:
 * "-1.2345678901234567e-308", "-0.00001234567890123456".  pj_format_float
 * formats into a larger temporary and copies exactly this many at most. */
#define FLOAT_TEXT 24
#define FLOAT_SCRATCH 64

typedef struct {
    int16_t kind;
    int16_t text_size; /* floats: length of u.text; big dicts: 1 once their keys are in the key set */
    int32_t next;      /* next sibling in the parent container, -1 for none */
    union {
        int64_t i;
        char text[FLOAT_TEXT]; /* floats: formatted once, when parsed */
        struct {
            Py_ssize_t offset, size, json_size;
        } s;
        struct {
            int32_t first, last, count;
            uint64_t key_bloom; /* dicts: one bit per key's shape, to skip most duplicate checks */
        } c;
        struct { /* N_DATETIME (and dates, is_date), N_TIMEZONE and N_TIMEDELTA (offset_us) */
            int64_t offset_us;
            int32_t microsecond;
            uint16_t year;
            uint8_t month, day, hour, minute, second, has_tz, is_date;
        } t;
    } u;
} Node;

/* A slot of the key set: a dict node and one of its key nodes; key -1 when free. */
typedef struct {
    int32_t dict, key;
} KeySlot;

/* Keys past this many in one dict go into the parser's key set (a hash set);
 * up to it, a new key is compared with the earlier ones of its dict. */
#define LINEAR_KEYS 64

typedef struct {
    const unsigned char *data;
    Py_ssize_t end;
    Node *nodes;
    int32_t count, capacity;
    int32_t *stack; /* node indexes; MARK_ENTRY for a mark */
    Py_ssize_t depth, stack_capacity;
    long numbers;
    KeySlot *keys; /* the key set of big dicts: open addressing, a power-of-two capacity */
    Py_ssize_t keys_used, keys_capacity;
    /* The first blocks of nodes and stack, INLINE_NODES each, allocated once
     * per call and reused by every frame of it.  Separate heap blocks, not
     * arrays inside this struct, so that AddressSanitizer sees a write past
     * either one. */
    Node *first_nodes;
    int32_t *first_stack;
} Parser;

Parser *pj_parser_new(void);
void pj_parser_free(Parser *p);

#define MARK_ENTRY (-1)
#define BAIL (-2) /* not for this path: let Python decide */
#define ERROR (-3) /* a Python exception is set (MemoryError) */

/* nodes and the stack (_fast_path.c) */
int32_t pj_new_node(Parser *p, int kind);
int pj_push(Parser *p, int32_t entry);
int pj_has_items(const Parser *p, Py_ssize_t n);

/* well-known classes (_fast_path_classes.c) */
int pj_push_class(Parser *p, const unsigned char *module, Py_ssize_t module_size, const unsigned char *name,
                  Py_ssize_t name_size);
int pj_reduce(Parser *p);
#define DATETIME_TEXT 48
int pj_format_datetime(const Node *node, char *out);

/* JSON text (_fast_path_text.c) */
void pj_init_json_cost(void);
Py_ssize_t pj_json_string_size(const unsigned char *s, Py_ssize_t size);
int pj_format_float(double value, char *out);
Py_ssize_t pj_measure(Parser *p, int32_t index, int level, int max_depth, Py_ssize_t *walk_cost,
                      Py_ssize_t *visits);
char *pj_write_node(const Parser *p, int32_t index, char *o);

#endif
