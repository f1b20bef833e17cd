"""The pre-flight cost scan of a pickle, run before anything is unpickled.

Restricting ``find_class`` (see :mod:`relay.decode.unpickler`) stops a pickle from
naming code.  It does not stop a pickle from naming *work*: a few bytes can
ask CPython's unpickler for a memo table of gigabytes, for a million empty
sets, for dict keys whose hashes collide (quadratic inserts), or for a tuple
key that is shared with itself sixty levels deep (hashing it visits 2**60
items).  This module runs the opcode stream through a model of the
unpickler's stack and memo, without building a single object, and refuses
the frame before the unpickler sees it when the work it would cause exceeds
a fixed budget.  What is counted is what the work depends on, not what the
bytes spell:

* every opcode (:data:`MAX_OPCODES`), every object it creates
  (:data:`MAX_OBJECTS`) and every number (:data:`MAX_NUMBERS`);
* every dict key and set member whose hash an attacker can choose (ints,
  floats, and tuples or frozensets of them), weighted by the items a hash or
  a comparison of it visits (:data:`MAX_HASHED`).  A tuple's weight counts
  every item it repeats through the memo, so the shared-tuple bomb weighs
  2**60 and is refused.  ``str`` and ``bytes`` keys cost nothing here: their
  hashes are keyed per process (SipHash) and cached;
* every call into our own Python code that the restricted unpickler makes:
  ``find_class``, a stand-in's construction (plus its arguments, which
  ``*args`` copies), ``__setstate__``, and an item set or appended on an
  object (:data:`MAX_CALLS`);
* the digits of decimal ints in text opcodes, whose parsing is quadratic
  (:data:`MAX_TEXT_DIGITS`), and the length of a class's name
  (:data:`MAX_NAME_BYTES`).

It also refuses opcodes that have no business in a log record (persistent
ids, out-of-band buffers, extension-registry codes), memo indexes an honest
pickler cannot write, and anything the unpickler itself would refuse for its
stack (an item taken from below a MARK, a memo entry never stored).  It tells
whether the pickle names any class (:data:`NAMES_CLASSES`: one that names
none cannot make any unpickler look anything up, which lets the caller use
the plain C ``pickle.loads``) and whether it refers to one object twice
(:data:`SHARES_OBJECTS`: one that does not is a tree, whose JSON is bounded
by the pickle's size).

The model follows CPython's C unpickler (``Modules/_pickle.c``): its stack
with a fence at the innermost MARK, its memo, and which container each
``APPEND``/``SETITEM``/``ADDITEMS`` lands in.  It is conservative where the
two could differ: a pickle the model accepts is one whose stack it tracked
exactly, so its counts are the unpickler's work.

Two implementations with one contract and the same refusal texts:
:func:`scan_python` (the reference) and, when the optional C extension
``relay.decode._cost_scan`` is built, the same model in C; both read the opcode
table built here.  :func:`scan` is whichever is present;
``LOGRELAY_PURE_PYTHON=1`` forces the Python one (:mod:`relay.common.speedups`).
"""

from __future__ import annotations

import pickle
import pickletools
import struct
from collections.abc import Callable
from typing import Final

from relay.common import speedups

__all__ = [
    "IMPLEMENTATION",
    "MAX_CALLS",
    "MAX_HASHED",
    "MAX_NAME_BYTES",
    "MAX_NUMBERS",
    "MAX_OBJECTS",
    "MAX_OPCODES",
    "MAX_TEXT_DIGITS",
    "NAMES_CLASSES",
    "SHARES_OBJECTS",
    "UnsafePickle",
    "scan",
    "scan_python",
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
_NAMES: Final = {ord(op.code): op.name for op in pickletools.opcodes}
_TUPLE1: Final = 0x85

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

_SCALAR_VALUE: Final[Value] = (SCALAR, 1, 0)
_OBJECT_VALUE: Final[Value] = (OBJECT, 1, 0)

_u4: Final = struct.Struct("<I").unpack_from
_s4: Final = struct.Struct("<i").unpack_from
_u8: Final = struct.Struct("<Q").unpack_from


class _Refusal(Exception):
    """Internal: the reason the scan stops (turned into UnsafePickle)."""


def _hash_cost(value: Value) -> int:
    """What hashing ``value`` (and comparing it on a collision) costs, in items visited."""
    kind = value[0]
    if kind == SCALAR:
        return 1
    if kind in (TUPLE, FROZENSET):
        return value[1]
    return 0  # str/bytes: keyed and cached; containers: unhashable; objects: by identity


class _Model:
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
            raise _Refusal(f"more than {MAX_OBJECTS} objects in one record")

    def number(self) -> None:
        self.numbers += 1
        if self.numbers > MAX_NUMBERS:
            raise _Refusal(f"more than {MAX_NUMBERS} numbers in one record")

    def hashing(self, value: Value) -> None:
        self.hashed += _hash_cost(value)
        if self.hashed > MAX_HASHED:
            raise _Refusal(f"non-string dict keys and set members weigh more than {MAX_HASHED} in one record")

    def call(self, cost: int) -> None:
        self.calls += cost
        if self.calls > MAX_CALLS:
            raise _Refusal(f"more than {MAX_CALLS} stand-in calls and arguments in one record")

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
            raise _Refusal(f"pickle stack underflow at offset {at}")
        return self.stack.pop()

    def top(self, at: int) -> Value:
        if len(self.stack) <= self.fence:
            raise _Refusal(f"pickle stack underflow at offset {at}")
        return self.stack[-1]

    def marker(self, at: int) -> int:
        if not self.marks:
            raise _Refusal(f"no MARK for the opcode at offset {at}")
        return self.marks.pop()

    def take(self, start: int, at: int) -> list[Value]:
        """Pop the items from ``start`` up (Pdata_poptuple)."""
        if start < self.fence or start > len(self.stack):
            raise _Refusal(f"pickle stack underflow at offset {at}")
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
            raise _Refusal(f"odd number of items for SETITEMS at offset {at}")
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


def _line(data: bytes, pos: int) -> int:
    """Offset of the newline ending the argument at ``pos``; refuses a missing one."""
    newline = data.find(b"\n", pos)
    if newline < 0:
        raise _Refusal("pickle data was truncated (no STOP opcode)")
    return newline


def _text_digits(text: bytes) -> int:
    """Digits of a decimal int line that cost quadratic parsing (beyond 64 bits)."""
    digits = sum(text.count(digit) for digit in b"0123456789")
    return digits if digits > 18 else 0


def scan_python(data: bytes) -> int:
    """Check that ``data`` is one pickle whose unpickling stays within the budgets.

    Returns its flags: :data:`NAMES_CLASSES`, :data:`SHARES_OBJECTS`, or 0.
    Raises :class:`UnsafePickle` naming the first problem found: an unknown or
    forbidden opcode, a truncated argument, a memo index that could not have
    come from an honest pickler (larger than the pickle itself) or was never
    stored, an item taken from below a MARK, or a budget exceeded.  Cost:
    one pass over the opcodes; string payloads are skipped, not read.
    """
    try:
        return _run(_Model(data))
    except _Refusal as exc:
        raise UnsafePickle(str(exc)) from None
    except (IndexError, struct.error):
        raise UnsafePickle("pickle data was truncated (no STOP opcode)") from None


def _run(m: _Model) -> int:
    data, end, table = m.data, m.end, TABLE
    pos = 0
    opcodes = 0
    digits = 0
    while True:
        at = pos
        code = data[pos]
        op = table[code]
        pos += 1
        opcodes += 1
        if opcodes > MAX_OPCODES:
            raise _Refusal(f"more than {MAX_OPCODES} opcodes in one record")
        if op == OP_TEXT4:
            size = _u4(data, pos)[0]
            pos += 4 + size
            if pos > end:
                break
            m.push_new((TEXT, 1, size))
        elif op == OP_TEXT1:
            size = data[pos]
            pos += 1 + size
            if pos > end:
                break
            m.push_new((TEXT, 1, size))
        elif op in (OP_PUT1, OP_PUT4, OP_PUT_LINE, OP_MEMOIZE):
            if op == OP_PUT1:
                index = data[pos]
                pos += 1
            elif op == OP_PUT4:
                index = _u4(data, pos)[0]
                pos += 4
            elif op == OP_PUT_LINE:
                newline = _line(data, pos)
                text = data[pos:newline]
                if not text.isdigit():
                    raise _Refusal(f"bad memo index at offset {at}")
                if len(text) > 10:
                    raise _Refusal(f"memo index of {len(text)} digits out of range at offset {at}")
                index = int(text)
                pos = newline + 1
            else:
                index = len(m.memo)
            # An honest pickler numbers the memo 0, 1, 2, ...: an index
            # beyond every object would only make the unpickler's memo
            # table (an array) large.
            if index > min(end, MAX_OBJECTS):
                raise _Refusal(f"memo index {index} out of range at offset {at}")
            m.memo[index] = m.top(at)
        elif op == OP_NUMBER:
            pos += {0x4A: 4, 0x4B: 1, 0x4D: 2, 0x47: 8}[code]
            if pos > end:
                break
            m.number()
            m.push_new(_SCALAR_VALUE)
        elif op in (OP_SETITEM, OP_SETITEMS, OP_APPEND, OP_APPENDS, OP_ADDITEMS):
            if op == OP_SETITEM:
                start = len(m.stack) - 2
            elif op == OP_APPEND:
                start = len(m.stack) - 1
            else:
                start = m.marker(at)
            # The container sits right below the items, above the fence:
            # stricter than the unpickler in corners no pickler writes.
            if start - 1 < m.fence or start > len(m.stack):
                raise _Refusal(f"pickle stack underflow at offset {at}")
            container = m.stack[start - 1]
            items = m.stack[start:]
            if op in (OP_APPEND, OP_APPENDS):
                if container[0] == MUTABLE:
                    m.sizes[container[2]] += len(items)
                elif container[0] == OBJECT and items:
                    m.call(1)  # a stand-in's extend(): one call, the items copied in C
            else:
                m.fill(container, items, op != OP_ADDITEMS, at)
            del m.stack[start:]
        elif op == OP_MARK:
            m.marks.append(len(m.stack))
        elif op == OP_STOP:
            m.pop(at)
            return m.flags
        elif op in (OP_GET1, OP_GET4, OP_GET_LINE, OP_DUP):
            m.flags |= SHARES_OBJECTS
            if op == OP_DUP:
                m.push(m.top(at))
                continue
            if op == OP_GET1:
                index = data[pos]
                pos += 1
            elif op == OP_GET4:
                index = _u4(data, pos)[0]
                pos += 4
            else:
                newline = _line(data, pos)
                text = data[pos:newline]
                if not text.isdigit():
                    raise _Refusal(f"bad memo index at offset {at}")
                if len(text) > 10:
                    raise _Refusal(f"memo index of {len(text)} digits out of range at offset {at}")
                index = int(text)
                pos = newline + 1
            if pos > end:
                break
            value = m.memo.get(index)
            if value is None:
                raise _Refusal(f"memo index {index} never stored, at offset {at}")
            m.push(value)
        elif op == OP_NONE:
            m.push_new(_SCALAR_VALUE)
        elif op == OP_EMPTY_MUTABLE:
            m.push_mutable(0)
        elif op in (OP_TUPLE, OP_TUPLE_N, OP_FROZENSET):
            start = len(m.stack) - (code - _TUPLE1 + 1) if op == OP_TUPLE_N else m.marker(at)
            items = m.take(start, at)
            if op == OP_FROZENSET:
                for item in items:
                    m.hashing(item)
            m.push_new(m.tuple_of(items, FROZENSET if op == OP_FROZENSET else TUPLE))
        elif op == OP_EMPTY_TUPLE:
            m.push_new((TUPLE, 1, 0))
        elif op in (OP_LIST, OP_DICT):
            start = m.marker(at)
            items = m.take(start, at)
            if op == OP_DICT:
                if len(items) % 2:
                    raise _Refusal(f"odd number of items for DICT at offset {at}")
                for key in items[::2]:
                    m.hashing(key)
            m.push_mutable(len(items) // 2 if op == OP_DICT else len(items))
        elif op == OP_NUMBER_LINE:
            newline = _line(data, pos)
            if code != 0x46:  # INT, LONG; FLOAT text parses in linear time
                digits += _text_digits(data[pos:newline])
                if digits > MAX_TEXT_DIGITS:
                    raise _Refusal(f"more than {MAX_TEXT_DIGITS} digits of decimal ints in one record")
            pos = newline + 1
            m.number()
            m.push_new(_SCALAR_VALUE)
        elif op in (OP_LONG1, OP_LONG4):
            if op == OP_LONG1:
                size = data[pos]
                pos += 1
            else:
                size = _s4(data, pos)[0]
                if size < 0:
                    raise _Refusal(f"negative length in LONG4 at offset {at}")
                pos += 4
            pos += size
            if pos > end:
                break
            m.number()
            m.push_new(_SCALAR_VALUE)
        elif op in (OP_TEXT4S, OP_TEXT8, OP_BYTEARRAY8, OP_TEXT_LINE):
            if op == OP_TEXT_LINE:
                newline = _line(data, pos)
                size = newline - pos
                pos = newline + 1
            elif op == OP_TEXT4S:
                size = _s4(data, pos)[0]
                if size < 0:
                    raise _Refusal(f"negative length in {_NAMES[code]} at offset {at}")
                pos += 4 + size
            else:
                size = _u8(data, pos)[0]
                if size > end:
                    break
                pos += 8 + size
            if pos > end:
                break
            if op == OP_BYTEARRAY8:
                m.push_mutable(0)
            else:
                m.push_new((TEXT, 1, size))
        elif op == OP_POP:
            if m.marks and m.marks[-1] == len(m.stack):
                m.marks.pop()
            else:
                m.pop(at)
        elif op == OP_POP_MARK:
            start = m.marker(at)
            del m.stack[start:]
        elif op in (OP_GLOBAL, OP_INST):
            m.flags |= NAMES_CLASSES
            first = _line(data, pos)
            second = _line(data, first + 1)
            if first - pos > MAX_NAME_BYTES or second - first - 1 > MAX_NAME_BYTES:
                raise _Refusal(f"class name longer than {MAX_NAME_BYTES} bytes at offset {at}")
            pos = second + 1
            if op == OP_INST:
                args = m.take(m.marker(at), at)
                m.call(2 + len(args))  # find_class, then the class called with the arguments
            else:
                m.call(1)
            m.push_new(_OBJECT_VALUE)
        elif op == OP_STACK_GLOBAL:
            m.flags |= NAMES_CLASSES
            name = m.pop(at)
            module = m.pop(at)
            if name[0] != TEXT or module[0] != TEXT:
                raise _Refusal(f"STACK_GLOBAL of a non-string at offset {at}")
            if name[2] > MAX_NAME_BYTES or module[2] > MAX_NAME_BYTES:
                raise _Refusal(f"class name longer than {MAX_NAME_BYTES} bytes at offset {at}")
            m.call(1)
            m.push_new(_OBJECT_VALUE)
        elif op == OP_OBJ:
            m.flags |= NAMES_CLASSES
            start = m.marker(at)
            items = m.take(start, at)
            if not items:
                raise _Refusal(f"OBJ without a class at offset {at}")
            m.call(len(items))  # the class and its arguments
            m.push_new(_OBJECT_VALUE)
        elif op in (OP_REDUCE, OP_NEWOBJ, OP_NEWOBJ_EX):
            # ``*args`` copies the argument tuple, ``**kwargs`` the keyword dict.
            kwargs = m.pop(at) if op == OP_NEWOBJ_EX else _OBJECT_VALUE
            arguments = m.pop(at)
            m.pop(at)
            cost = 1 + (arguments[2] if arguments[0] == TUPLE else 0)
            m.call(cost + (m.sizes[kwargs[2]] if kwargs[0] == MUTABLE else 0))
            m.push_new(_OBJECT_VALUE)
        elif op == OP_BUILD:
            if len(m.stack) - 2 < m.fence:
                raise _Refusal(f"pickle stack underflow at offset {at}")
            m.stack.pop()
            m.call(1)
        elif op == OP_PROTO:
            if data[pos] > pickle.HIGHEST_PROTOCOL:
                raise _Refusal(f"unsupported pickle protocol {data[pos]} at offset {at}")
            pos += 1
        elif op == OP_FRAME:
            size = _u8(data, pos)[0]
            if size > end - pos - 8:
                raise _Refusal(f"pickle data was truncated: FRAME of {size} bytes at offset {at}")
            pos += 8
        elif op == OP_FORBIDDEN:
            raise _Refusal(f"opcode {_NAMES[code]} is not allowed (offset {at})")
        else:
            raise _Refusal(f"unknown opcode 0x{code:02x} at offset {at}")
    raise _Refusal("pickle data was truncated (no STOP opcode)")


def _load_c_scan() -> Callable[[bytes], object] | None:
    extension = speedups.load("relay.decode._cost_scan")
    if extension is None:
        return None
    extension.configure(
        TABLE, MAX_NUMBERS, MAX_OPCODES, MAX_OBJECTS, MAX_HASHED, MAX_CALLS, MAX_TEXT_DIGITS, MAX_NAME_BYTES
    )
    c_scan: Callable[[bytes], object] = extension.scan
    return c_scan


_c_scan: Final = _load_c_scan()


def _scan_c(data: bytes) -> int:
    """The C model (same contract and refusal texts as :func:`scan_python`)."""
    assert _c_scan is not None
    verdict = _c_scan(data)
    if type(verdict) is int:
        return verdict
    raise UnsafePickle(str(verdict))


#: "c" or "python": which implementation :func:`scan` is.
IMPLEMENTATION: Final = "c" if _c_scan is not None else "python"
scan: Final = _scan_c if _c_scan is not None else scan_python
