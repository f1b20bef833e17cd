"""The cost model of CPython's unpickler: what a pickle's work depends on, and its budgets.

:mod:`relay.decode.cost_scan` runs a pickle's opcodes through this model
before anything is unpickled.  Here are the parts the scan and its C twin
(``relay/decode/_cost_scan.c``) share: the budgets per record (``MAX_*``),
the flags the scan returns, the table of what the model does per opcode byte
(``OP_*``, :data:`TABLE`, handed to the C by ``configure()``), the abstract
values the model keeps for each object (its kind, its hash weight, a length),
and :class:`CostModel`, the unpickler's stack, marks and memo as such values,
charging each budget as it goes.

The model follows CPython's C unpickler (``Modules/_pickle.c``): its stack
with a fence at the innermost MARK, its memo, and which container each
``APPEND``/``SETITEM``/``ADDITEMS`` lands in.
"""

from __future__ import annotations

import pickletools
from typing import Final

__all__ = [
    "MAX_CALLS",
    "MAX_HASHED",
    "MAX_NAME_BYTES",
    "MAX_NUMBERS",
    "MAX_OBJECTS",
    "MAX_OPCODES",
    "MAX_TEXT_DIGITS",
    "NAMES_CLASSES",
    "SHARES_OBJECTS",
    "TABLE",
    "CostModel",
    "Refusal",
    "UnsafePickle",
    "Value",
    "hash_cost",
]


class UnsafePickle(ValueError):
    """The opcode stream is malformed, asks for something we never allow, or would cost too much."""


#: Numbers one record may carry (ints and floats, whatever their opcode).
MAX_NUMBERS: Final = 4096
#: Opcodes one record may hold.  Bounds the unpickler's steps, its stack and
#: memo, and the items all its containers hold together.
MAX_OPCODES: Final = 262_144
#: Objects one record may create (each pushing opcode but DUP and the memo
#: GETs).  65,536 empty sets, the largest object one opcode makes, take
#: 14 MiB; a million took 957 ms and 216 MiB (python -m bench.frame_cost
#: measures what the costliest frames within the budgets cost).
MAX_OBJECTS: Final = 65_536
#: Hash work on keys whose hashes a sender can choose: each int, float or
#: None dict key or set member costs 1, a tuple or frozenset its weight.
#: n colliding keys cost ~n**2/2 comparisons: 1024 keep that under a millisecond.
MAX_HASHED: Final = 1024
#: Calls into our own Python code (stand-ins) plus the arguments they copy.
MAX_CALLS: Final = 8192
#: Digits of decimal ints in text opcodes (INT, LONG): CPython parses them in
#: quadratic time, up to 4300 digits each.
MAX_TEXT_DIGITS: Final = 65_536
#: A class's module or name: no real one is longer.
MAX_NAME_BYTES: Final = 256

#: Flag in :func:`scan`'s result: the pickle names a class (GLOBAL, INST,
#: STACK_GLOBAL or OBJ), so only the restricted unpickler may load it.
NAMES_CLASSES: Final = 1
#: Flag: the pickle refers to one object twice (DUP or a memo GET), so the
#: object is a graph and its expansion is not bounded by the pickle's size.
SHARES_OBJECTS: Final = 2

# -- the opcode table ------------------------------------------------------------
#
# One byte per opcode: what the model does with it.  The C scan reads the
# same table (handed over by configure()).

OP_UNKNOWN: Final = 0
OP_FORBIDDEN: Final = 1
OP_STOP: Final = 2
OP_PROTO: Final = 3
OP_FRAME: Final = 4
OP_MARK: Final = 5
OP_POP: Final = 6
OP_POP_MARK: Final = 7
OP_DUP: Final = 8
OP_NUMBER: Final = 9  # a scalar whose argument has a fixed width
OP_NUMBER_LINE: Final = 10  # INT, LONG, FLOAT: decimal text up to a newline
OP_LONG1: Final = 11
OP_LONG4: Final = 12
OP_NONE: Final = 13  # None, True, False: no argument
OP_TEXT_LINE: Final = 14  # STRING, UNICODE: text up to a newline
OP_TEXT1: Final = 15  # SHORT_BINUNICODE, SHORT_BINSTRING, SHORT_BINBYTES: 1-byte length
OP_TEXT4: Final = 16  # BINUNICODE, BINBYTES (unsigned 4-byte length)
OP_TEXT4S: Final = 17  # BINSTRING (signed 4-byte length)
OP_TEXT8: Final = 18  # BINUNICODE8, BINBYTES8
OP_BYTEARRAY8: Final = 19
OP_EMPTY_MUTABLE: Final = 20  # EMPTY_LIST, EMPTY_DICT, EMPTY_SET
OP_EMPTY_TUPLE: Final = 21
OP_TUPLE: Final = 22
OP_TUPLE_N: Final = 23  # TUPLE1, TUPLE2, TUPLE3 (the count is the opcode's offset from TUPLE1, plus 1)
OP_LIST: Final = 24
OP_DICT: Final = 25
OP_FROZENSET: Final = 26
OP_APPEND: Final = 27
OP_APPENDS: Final = 28
OP_SETITEM: Final = 29
OP_SETITEMS: Final = 30
OP_ADDITEMS: Final = 31
OP_PUT_LINE: Final = 32
OP_PUT1: Final = 33
OP_PUT4: Final = 34
OP_MEMOIZE: Final = 35
OP_GET_LINE: Final = 36
OP_GET1: Final = 37
OP_GET4: Final = 38
OP_GLOBAL: Final = 39
OP_STACK_GLOBAL: Final = 40
OP_INST: Final = 41
OP_OBJ: Final = 42
OP_REDUCE: Final = 43
OP_NEWOBJ: Final = 44
OP_NEWOBJ_EX: Final = 45
OP_BUILD: Final = 46

_BY_NAME: Final = {
    "STOP": OP_STOP, "PROTO": OP_PROTO, "FRAME": OP_FRAME, "MARK": OP_MARK, "POP": OP_POP,
    "POP_MARK": OP_POP_MARK, "DUP": OP_DUP,
    "BININT": OP_NUMBER, "BININT1": OP_NUMBER, "BININT2": OP_NUMBER, "BINFLOAT": OP_NUMBER,
    "INT": OP_NUMBER_LINE, "LONG": OP_NUMBER_LINE, "FLOAT": OP_NUMBER_LINE,
    "LONG1": OP_LONG1, "LONG4": OP_LONG4,
    "NONE": OP_NONE, "NEWTRUE": OP_NONE, "NEWFALSE": OP_NONE,
    "STRING": OP_TEXT_LINE, "UNICODE": OP_TEXT_LINE,
    "SHORT_BINUNICODE": OP_TEXT1, "SHORT_BINSTRING": OP_TEXT1, "SHORT_BINBYTES": OP_TEXT1,
    "BINUNICODE": OP_TEXT4, "BINBYTES": OP_TEXT4, "BINSTRING": OP_TEXT4S,
    "BINUNICODE8": OP_TEXT8, "BINBYTES8": OP_TEXT8, "BYTEARRAY8": OP_BYTEARRAY8,
    "EMPTY_LIST": OP_EMPTY_MUTABLE, "EMPTY_DICT": OP_EMPTY_MUTABLE, "EMPTY_SET": OP_EMPTY_MUTABLE,
    "EMPTY_TUPLE": OP_EMPTY_TUPLE, "TUPLE": OP_TUPLE, "TUPLE1": OP_TUPLE_N, "TUPLE2": OP_TUPLE_N,
    "TUPLE3": OP_TUPLE_N, "LIST": OP_LIST, "DICT": OP_DICT, "FROZENSET": OP_FROZENSET,
    "APPEND": OP_APPEND, "APPENDS": OP_APPENDS, "SETITEM": OP_SETITEM, "SETITEMS": OP_SETITEMS,
    "ADDITEMS": OP_ADDITEMS,
    "PUT": OP_PUT_LINE, "BINPUT": OP_PUT1, "LONG_BINPUT": OP_PUT4, "MEMOIZE": OP_MEMOIZE,
    "GET": OP_GET_LINE, "BINGET": OP_GET1, "LONG_BINGET": OP_GET4,
    "GLOBAL": OP_GLOBAL, "STACK_GLOBAL": OP_STACK_GLOBAL, "INST": OP_INST, "OBJ": OP_OBJ,
    "REDUCE": OP_REDUCE, "NEWOBJ": OP_NEWOBJ, "NEWOBJ_EX": OP_NEWOBJ_EX, "BUILD": OP_BUILD,
    "PERSID": OP_FORBIDDEN, "BINPERSID": OP_FORBIDDEN, "EXT1": OP_FORBIDDEN, "EXT2": OP_FORBIDDEN,
    "EXT4": OP_FORBIDDEN, "NEXT_BUFFER": OP_FORBIDDEN, "READONLY_BUFFER": OP_FORBIDDEN,
}  # fmt: skip


def _build_table() -> bytes:
    table = bytearray(256)
    names = {op.name for op in pickletools.opcodes}
    missing = names - _BY_NAME.keys()
    # A pickle protocol newer than this table: fail at import, not in production.
    assert not missing, f"pickle opcodes without a cost model: {sorted(missing)}"
    for op in pickletools.opcodes:
        table[ord(op.code)] = _BY_NAME[op.name]
    return bytes(table)


#: The model's action per opcode byte (``OP_*``).
TABLE: Final = _build_table()
OPCODE_NAMES: Final = {ord(op.code): op.name for op in pickletools.opcodes}
TUPLE1: Final = 0x85

# -- the abstract values --------------------------------------------------------
#
# The model's stack and memo hold, per object, what its cost depends on:
# its kind, a weight (items a hash of it visits), for tuples their length
# (what ``*args`` copies), and for mutable containers which one it is, so
# that the memo's references share one count of its items (what
# ``**kwargs`` copies).  A mutable container is unhashable, so its
# contents never matter for hashing; an object made by a stand-in hashes by
# identity (relay.decode.inert keeps object.__hash__ on every stand-in).

SCALAR: Final = 0  # int, float, bool, None: hashes a sender can choose
TEXT: Final = 1  # str, bytes: keyed, cached hashes
TUPLE: Final = 2
FROZENSET: Final = 3
MUTABLE: Final = 4  # list, dict, set, bytearray
OBJECT: Final = 5  # a class or a stand-in's instance

#: Weights saturate here (well above any budget): the shared-tuple bomb
#: would otherwise overflow them.
WEIGHT_CAP: Final = 1 << 30

#: kind, weight, and a length: TEXT its bytes, TUPLE/FROZENSET its items,
#: MUTABLE the container's number (an index into the model's ``sizes``).
Value = tuple[int, int, int]

SCALAR_VALUE: Final[Value] = (SCALAR, 1, 0)
OBJECT_VALUE: Final[Value] = (OBJECT, 1, 0)


class Refusal(Exception):
    """Internal: the reason the scan stops (turned into UnsafePickle)."""


def hash_cost(value: Value) -> int:
    """What hashing ``value`` (and comparing it on a collision) costs, in items visited."""
    kind = value[0]
    if kind == SCALAR:
        return 1
    if kind in (TUPLE, FROZENSET):
        return value[1]
    return 0  # str/bytes: keyed and cached; containers: unhashable; objects: by identity


class CostModel:
    """The unpickler's stack, marks and memo, as abstract values, with the budgets."""

    __slots__ = ("calls", "data", "end", "flags", "hashed", "marks", "memo", "numbers", "objects", "sizes", "stack")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.end = len(data)
        self.stack: list[Value] = []
        self.marks: list[int] = []
        self.memo: dict[int, Value] = {}
        self.sizes: list[int] = []  # items held, per mutable container
        self.flags = 0
        self.objects = 0
        self.numbers = 0
        self.hashed = 0
        self.calls = 0

    # -- budgets ------------------------------------------------------------------

    def new_object(self) -> None:
        self.objects += 1
        if self.objects > MAX_OBJECTS:
            raise Refusal(f"more than {MAX_OBJECTS} objects in one record")

    def number(self) -> None:
        self.numbers += 1
        if self.numbers > MAX_NUMBERS:
            raise Refusal(f"more than {MAX_NUMBERS} numbers in one record")

    def hashing(self, value: Value) -> None:
        self.hashed += hash_cost(value)
        if self.hashed > MAX_HASHED:
            raise Refusal(f"non-string dict keys and set members weigh more than {MAX_HASHED} in one record")

    def call(self, cost: int) -> None:
        self.calls += cost
        if self.calls > MAX_CALLS:
            raise Refusal(f"more than {MAX_CALLS} stand-in calls and arguments in one record")

    # -- the stack, as Modules/_pickle.c keeps it ----------------------------------

    @property
    def fence(self) -> int:
        return self.marks[-1] if self.marks else 0

    def push(self, value: Value) -> None:
        self.stack.append(value)

    def push_new(self, value: Value) -> None:
        self.new_object()
        self.stack.append(value)

    def pop(self, at: int) -> Value:
        if len(self.stack) <= self.fence:
            raise Refusal(f"pickle stack underflow at offset {at}")
        return self.stack.pop()

    def top(self, at: int) -> Value:
        if len(self.stack) <= self.fence:
            raise Refusal(f"pickle stack underflow at offset {at}")
        return self.stack[-1]

    def marker(self, at: int) -> int:
        if not self.marks:
            raise Refusal(f"no MARK for the opcode at offset {at}")
        return self.marks.pop()

    def take(self, start: int, at: int) -> list[Value]:
        """Pop the items from ``start`` up (Pdata_poptuple)."""
        if start < self.fence or start > len(self.stack):
            raise Refusal(f"pickle stack underflow at offset {at}")
        items = self.stack[start:]
        del self.stack[start:]
        return items

    # -- containers -------------------------------------------------------------------

    def push_mutable(self, size: int) -> None:
        self.new_object()
        self.stack.append((MUTABLE, 1, len(self.sizes)))
        self.sizes.append(size)

    def tuple_of(self, items: list[Value], kind: int = TUPLE) -> Value:
        weight = 1
        for item in items:
            weight += item[1] if item[0] in (TUPLE, FROZENSET) else 1
        return (kind, min(weight, WEIGHT_CAP), len(items))

    def fill(self, container: Value, items: list[Value], pairs: bool, at: int) -> None:
        """Items set, appended or added into ``container``: the hashing or the calls they cause."""
        if pairs and len(items) % 2:
            raise Refusal(f"odd number of items for SETITEMS at offset {at}")
        kind = container[0]
        if kind == MUTABLE:
            self.sizes[container[2]] += len(items) // 2 if pairs else len(items)
        if kind == OBJECT:
            # A stand-in's __setitem__/append/add, once per item (pair); an
            # APPENDS goes to its extend() once.
            self.call(len(items) // 2 if pairs else len(items))
        elif kind == MUTABLE:
            for key in items[::2] if pairs else items:
                self.hashing(key)
        # Anything else (a str, a tuple, ...) makes the unpickler fail there.
