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

The model (:mod:`relay.decode.cost_model`: the budgets, the opcode table,
the unpickler's stack, marks and memo) follows CPython's C unpickler
(``Modules/_pickle.c``).  It is conservative where the two could differ: a
pickle the model accepts is one whose stack it tracked exactly, so its counts
are the unpickler's work.

Two implementations with one contract and the same refusal texts:
:func:`scan_python` (the reference) and, when the optional C extension
``relay.decode._cost_scan`` is built, the same model in C; both read the opcode
table of :mod:`relay.decode.cost_model`.  :func:`scan` is whichever is present;
``LOGRELAY_PURE_PYTHON=1`` forces the Python one (:mod:`relay.common.speedups`).
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Callable
from typing import Final

from relay.common import speedups
from relay.decode.cost_model import (
    FROZENSET,
    MAX_CALLS,
    MAX_HASHED,
    MAX_NAME_BYTES,
    MAX_NUMBERS,
    MAX_OBJECTS,
    MAX_OPCODES,
    MAX_TEXT_DIGITS,
    MUTABLE,
    NAMES_CLASSES,
    OBJECT,
    OBJECT_VALUE,
    OP_ADDITEMS,
    OP_APPEND,
    OP_APPENDS,
    OP_BUILD,
    OP_BYTEARRAY8,
    OP_DICT,
    OP_DUP,
    OP_EMPTY_MUTABLE,
    OP_EMPTY_TUPLE,
    OP_FORBIDDEN,
    OP_FRAME,
    OP_FROZENSET,
    OP_GET1,
    OP_GET4,
    OP_GET_LINE,
    OP_GLOBAL,
    OP_INST,
    OP_LIST,
    OP_LONG1,
    OP_LONG4,
    OP_MARK,
    OP_MEMOIZE,
    OP_NEWOBJ,
    OP_NEWOBJ_EX,
    OP_NONE,
    OP_NUMBER,
    OP_NUMBER_LINE,
    OP_OBJ,
    OP_POP,
    OP_POP_MARK,
    OP_PROTO,
    OP_PUT1,
    OP_PUT4,
    OP_PUT_LINE,
    OP_REDUCE,
    OP_SETITEM,
    OP_SETITEMS,
    OP_STACK_GLOBAL,
    OP_STOP,
    OP_TEXT1,
    OP_TEXT4,
    OP_TEXT4S,
    OP_TEXT8,
    OP_TEXT_LINE,
    OP_TUPLE,
    OP_TUPLE_N,
    OPCODE_NAMES,
    SCALAR_VALUE,
    SHARES_OBJECTS,
    TABLE,
    TEXT,
    TUPLE,
    TUPLE1,
    CostModel,
    Refusal,
    UnsafePickle,
)

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

_u4: Final = struct.Struct("<I").unpack_from
_s4: Final = struct.Struct("<i").unpack_from
_u8: Final = struct.Struct("<Q").unpack_from


def _line(data: bytes, pos: int) -> int:
    """Offset of the newline ending the argument at ``pos``; refuses a missing one."""
    newline = data.find(b"\n", pos)
    if newline < 0:
        raise Refusal("pickle data was truncated (no STOP opcode)")
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
        return _run(CostModel(data))
    except Refusal as exc:
        raise UnsafePickle(str(exc)) from None
    except (IndexError, struct.error):
        raise UnsafePickle("pickle data was truncated (no STOP opcode)") from None


def _run(m: CostModel) -> int:
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
            raise Refusal(f"more than {MAX_OPCODES} opcodes in one record")
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
                    raise Refusal(f"bad memo index at offset {at}")
                if len(text) > 10:
                    raise Refusal(f"memo index of {len(text)} digits out of range at offset {at}")
                index = int(text)
                pos = newline + 1
            else:
                index = len(m.memo)
            # An honest pickler numbers the memo 0, 1, 2, ...: an index
            # beyond every object would only make the unpickler's memo
            # table (an array) large.
            if index > min(end, MAX_OBJECTS):
                raise Refusal(f"memo index {index} out of range at offset {at}")
            m.memo[index] = m.top(at)
        elif op == OP_NUMBER:
            pos += {0x4A: 4, 0x4B: 1, 0x4D: 2, 0x47: 8}[code]
            if pos > end:
                break
            m.number()
            m.push_new(SCALAR_VALUE)
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
                raise Refusal(f"pickle stack underflow at offset {at}")
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
                    raise Refusal(f"bad memo index at offset {at}")
                if len(text) > 10:
                    raise Refusal(f"memo index of {len(text)} digits out of range at offset {at}")
                index = int(text)
                pos = newline + 1
            if pos > end:
                break
            value = m.memo.get(index)
            if value is None:
                raise Refusal(f"memo index {index} never stored, at offset {at}")
            m.push(value)
        elif op == OP_NONE:
            m.push_new(SCALAR_VALUE)
        elif op == OP_EMPTY_MUTABLE:
            m.push_mutable(0)
        elif op in (OP_TUPLE, OP_TUPLE_N, OP_FROZENSET):
            start = len(m.stack) - (code - TUPLE1 + 1) if op == OP_TUPLE_N else m.marker(at)
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
                    raise Refusal(f"odd number of items for DICT at offset {at}")
                for key in items[::2]:
                    m.hashing(key)
            m.push_mutable(len(items) // 2 if op == OP_DICT else len(items))
        elif op == OP_NUMBER_LINE:
            newline = _line(data, pos)
            if code != 0x46:  # INT, LONG; FLOAT text parses in linear time
                digits += _text_digits(data[pos:newline])
                if digits > MAX_TEXT_DIGITS:
                    raise Refusal(f"more than {MAX_TEXT_DIGITS} digits of decimal ints in one record")
            pos = newline + 1
            m.number()
            m.push_new(SCALAR_VALUE)
        elif op in (OP_LONG1, OP_LONG4):
            if op == OP_LONG1:
                size = data[pos]
                pos += 1
            else:
                size = _s4(data, pos)[0]
                if size < 0:
                    raise Refusal(f"negative length in LONG4 at offset {at}")
                pos += 4
            pos += size
            if pos > end:
                break
            m.number()
            m.push_new(SCALAR_VALUE)
        elif op in (OP_TEXT4S, OP_TEXT8, OP_BYTEARRAY8, OP_TEXT_LINE):
            if op == OP_TEXT_LINE:
                newline = _line(data, pos)
                size = newline - pos
                pos = newline + 1
            elif op == OP_TEXT4S:
                size = _s4(data, pos)[0]
                if size < 0:
                    raise Refusal(f"negative length in {OPCODE_NAMES[code]} at offset {at}")
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
                raise Refusal(f"class name longer than {MAX_NAME_BYTES} bytes at offset {at}")
            pos = second + 1
            if op == OP_INST:
                args = m.take(m.marker(at), at)
                m.call(2 + len(args))  # find_class, then the class called with the arguments
            else:
                m.call(1)
            m.push_new(OBJECT_VALUE)
        elif op == OP_STACK_GLOBAL:
            m.flags |= NAMES_CLASSES
            name = m.pop(at)
            module = m.pop(at)
            if name[0] != TEXT or module[0] != TEXT:
                raise Refusal(f"STACK_GLOBAL of a non-string at offset {at}")
            if name[2] > MAX_NAME_BYTES or module[2] > MAX_NAME_BYTES:
                raise Refusal(f"class name longer than {MAX_NAME_BYTES} bytes at offset {at}")
            m.call(1)
            m.push_new(OBJECT_VALUE)
        elif op == OP_OBJ:
            m.flags |= NAMES_CLASSES
            start = m.marker(at)
            items = m.take(start, at)
            if not items:
                raise Refusal(f"OBJ without a class at offset {at}")
            m.call(len(items))  # the class and its arguments
            m.push_new(OBJECT_VALUE)
        elif op in (OP_REDUCE, OP_NEWOBJ, OP_NEWOBJ_EX):
            # ``*args`` copies the argument tuple, ``**kwargs`` the keyword dict.
            kwargs = m.pop(at) if op == OP_NEWOBJ_EX else OBJECT_VALUE
            arguments = m.pop(at)
            m.pop(at)
            cost = 1 + (arguments[2] if arguments[0] == TUPLE else 0)
            m.call(cost + (m.sizes[kwargs[2]] if kwargs[0] == MUTABLE else 0))
            m.push_new(OBJECT_VALUE)
        elif op == OP_BUILD:
            if len(m.stack) - 2 < m.fence:
                raise Refusal(f"pickle stack underflow at offset {at}")
            m.stack.pop()
            m.call(1)
        elif op == OP_PROTO:
            if data[pos] > pickle.HIGHEST_PROTOCOL:
                raise Refusal(f"unsupported pickle protocol {data[pos]} at offset {at}")
            pos += 1
        elif op == OP_FRAME:
            size = _u8(data, pos)[0]
            if size > end - pos - 8:
                raise Refusal(f"pickle data was truncated: FRAME of {size} bytes at offset {at}")
            pos += 8
        elif op == OP_FORBIDDEN:
            raise Refusal(f"opcode {OPCODE_NAMES[code]} is not allowed (offset {at})")
        else:
            raise Refusal(f"unknown opcode 0x{code:02x} at offset {at}")
    raise Refusal("pickle data was truncated (no STOP opcode)")


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
