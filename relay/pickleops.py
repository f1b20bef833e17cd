"""A fast pre-flight scan of a pickle's opcode stream, run before unpickling.

Restricting ``find_class`` (see :mod:`relay.safepickle`) stops a pickle from
naming code, but CPython's C unpickler has another weakness with untrusted
input: a memo store (``PUT``/``LONG_BINPUT``) with a huge index makes it
allocate and zero a memo table of twice that size.  Seven bytes of pickle can
make the process touch 16 GiB.  This module walks the opcodes once, without
building any object, and rejects such streams before the unpickler sees them.

It also rejects opcodes that have no business in a log record: persistent ids,
out-of-band buffers and extension-registry codes, and it tells whether the
pickle names any class (:data:`NAMES_CLASSES`): a pickle that names none
cannot make any unpickler look anything up, which lets the caller use the
plain C ``pickle.loads``; and whether it refers to one object twice
(:data:`SHARES_OBJECTS`): one that does not is a tree, whose JSON is bounded
by the pickle's size.

Two implementations with one contract: :func:`scan_python` (the reference)
and, when the optional C extension ``relay._pickle_scan`` is built (it is by
``pip install``, given a C compiler), the same loop in C, ~19x faster (8.7 against 0.46 µs per record); both
read the table built here.  :func:`scan` is whichever is present;
``LOGRELAY_PURE_PYTHON=1`` in the environment forces the Python one.
"""

from __future__ import annotations

import os
import pickletools
import struct
from collections.abc import Callable
from typing import Final

__all__ = ["IMPLEMENTATION", "NAMES_CLASSES", "SHARES_OBJECTS", "UnsafePickle", "scan", "scan_python"]


class UnsafePickle(ValueError):
    """The opcode stream is malformed or asks for something we never allow."""


# Argument kinds, indexed by opcode byte.  Non-negative values are fixed widths.
_LINE: Final = -1  # one newline-terminated argument
_LEN1: Final = -2  # 1-byte length prefix, then that many bytes
_LEN4S: Final = -3  # signed 4-byte little-endian length prefix
_LEN4U: Final = -4  # unsigned 4-byte length prefix
_LEN8U: Final = -5  # unsigned 8-byte length prefix
_TWO_LINES: Final = -6  # GLOBAL and INST: "module\nname\n"
_MEMO_PUT_LINE: Final = -7  # PUT: decimal index on a line
_MEMO_PUT_U4: Final = -8  # LONG_BINPUT: 4-byte index
_STOP: Final = -9
_FORBIDDEN: Final = -10
_UNKNOWN: Final = -11
_FRAME: Final = -12  # protocol 4 FRAME: an 8-byte length the unpickler will read at once
_NUMBER_LINE: Final = -13  # INT, LONG, FLOAT (text)
_NUMBER_LEN1: Final = -14  # LONG1
_NUMBER_LEN4: Final = -15  # LONG4
_CLASS: Final = -16  # STACK_GLOBAL and OBJ: no argument, but a class is looked up
_SHARE0: Final = -17  # DUP: the same object twice
_SHARE1: Final = -18  # BINGET: a memoized object again, 1-byte index
_SHARE4: Final = -19  # LONG_BINGET: 4-byte index
_SHARE_LINE: Final = -20  # GET: decimal index on a line
_SHARE_WIDTH: Final = {_SHARE0: 0, _SHARE1: 1, _SHARE4: 4}
_NUMBER_FIXED: Final = -100  # BININT*, BINFLOAT: _NUMBER_FIXED - width

#: Numbers one record may carry.  Ints and floats hash predictably, so keys
#: chosen to collide make building a dict or set quadratic inside the C
#: unpickler (87k colliding keys in a 1 MiB frame: 148 s); 4096 bound that to
#: a fraction of a second, far above what a log record holds.
MAX_NUMBERS: Final = 4096

#: Flag in :func:`scan`'s result: the pickle names a class (GLOBAL, INST,
#: STACK_GLOBAL or OBJ), so only the restricted unpickler may load it.
NAMES_CLASSES: Final = 1
#: Flag: the pickle refers to one object twice (DUP or a memo GET), so the
#: object is a graph and its expansion is not bounded by the pickle's size.
SHARES_OBJECTS: Final = 2

_FORBIDDEN_OPCODES: Final = frozenset({"PERSID", "BINPERSID", "NEXT_BUFFER", "READONLY_BUFFER", "EXT1", "EXT2", "EXT4"})


def _build_table() -> list[int]:
    table = [_UNKNOWN] * 256
    for op in pickletools.opcodes:
        code = ord(op.code)
        if op.name in _FORBIDDEN_OPCODES:
            table[code] = _FORBIDDEN
        elif op.name == "STOP":
            table[code] = _STOP
        elif op.name == "PUT":
            table[code] = _MEMO_PUT_LINE
        elif op.name == "LONG_BINPUT":
            table[code] = _MEMO_PUT_U4
        elif op.name in ("GLOBAL", "INST"):
            table[code] = _TWO_LINES
        elif op.name in ("STACK_GLOBAL", "OBJ"):
            table[code] = _CLASS
        elif op.name in ("DUP", "BINGET", "LONG_BINGET", "GET"):
            table[code] = {"DUP": _SHARE0, "BINGET": _SHARE1, "LONG_BINGET": _SHARE4, "GET": _SHARE_LINE}[op.name]
        elif op.name == "FRAME":
            table[code] = _FRAME
        elif op.name in ("INT", "LONG", "FLOAT"):
            table[code] = _NUMBER_LINE
        elif op.name == "LONG1":
            table[code] = _NUMBER_LEN1
        elif op.name == "LONG4":
            table[code] = _NUMBER_LEN4
        elif op.name in ("BININT", "BININT1", "BININT2", "BINFLOAT"):
            assert op.arg is not None
            table[code] = _NUMBER_FIXED - op.arg.n
        elif op.arg is None:
            table[code] = 0
        else:
            # pickletools encodes the argument layout in ``n``; its negative
            # codes line up with ours by construction.
            table[code] = op.arg.n
    return table


_TABLE: Final = _build_table()
_unpack_u4: Final = struct.Struct("<I").unpack_from
_BINPUT: Final = ord("q")
_NAMES: Final = {ord(op.code): op.name for op in pickletools.opcodes}


def scan_python(data: bytes) -> int:
    """Check that ``data`` is one well-formed pickle that is safe to hand to the C unpickler.

    Returns its flags: :data:`NAMES_CLASSES`, :data:`SHARES_OBJECTS`, or 0.
    Raises :class:`UnsafePickle` naming the first problem found: an unknown or
    forbidden opcode, a truncated argument, a memo index that could not have
    come from an honest pickler (larger than the pickle itself), or a missing
    STOP.  Cost is one pass over the opcodes; string payloads are skipped, not
    read.
    """
    end = len(data)
    pos = 0
    numbers = 0
    flags = 0
    table = _TABLE
    # This loop runs once per opcode of every record, so it is written for
    # CPython's speed: the common kinds first, ``continue`` instead of elif
    # chains, and running off the end caught once (IndexError/struct.error)
    # instead of bounds checks on every step.
    try:
        while True:
            code = data[pos]
            kind = table[code]
            pos += 1
            if kind >= 0:
                pos += kind
                continue
            if kind == _LEN4U:
                pos += 4 + _unpack_u4(data, pos)[0]
                # Picklers memoize each string right after it: skip that too.
                if data[pos] == _BINPUT:
                    pos += 2
                continue
            if kind == _LEN1:
                pos += 1 + data[pos]
                continue
            if kind <= _NUMBER_FIXED:
                pos += _NUMBER_FIXED - kind
                numbers += 1
                if numbers > MAX_NUMBERS:
                    raise UnsafePickle(f"more than {MAX_NUMBERS} numbers in one record")
                continue
            if kind == _STOP:
                return flags
            if kind == _LINE:
                newline = data.find(b"\n", pos)
                if newline < 0:
                    break
                pos = newline + 1
                continue
            if kind in (_NUMBER_LINE, _NUMBER_LEN1, _NUMBER_LEN4):
                numbers += 1
                if numbers > MAX_NUMBERS:
                    raise UnsafePickle(f"more than {MAX_NUMBERS} numbers in one record")
                if kind == _NUMBER_LEN1:
                    pos += 1 + data[pos]
                elif kind == _NUMBER_LEN4:
                    size = int.from_bytes(data[pos : pos + 4], "little", signed=True)
                    if size < 0:
                        raise UnsafePickle(f"negative length in LONG4 at offset {pos - 1}")
                    pos += 4 + size
                else:
                    newline = data.find(b"\n", pos)
                    if newline < 0:
                        break
                    pos = newline + 1
                continue
            if kind == _FRAME:
                size = int.from_bytes(data[pos : pos + 8], "little")
                if size > end - pos - 8:
                    raise UnsafePickle(f"pickle data was truncated: FRAME of {size} bytes at offset {pos - 1}")
                pos += 8
                continue
            if kind == _MEMO_PUT_U4:
                index = _unpack_u4(data, pos)[0]
                if index > end:
                    raise UnsafePickle(f"memo index {index} out of range at offset {pos - 1}")
                pos += 4
                continue
            if _SHARE_LINE <= kind <= _SHARE0:
                flags |= SHARES_OBJECTS
                if kind == _SHARE_LINE:
                    newline = data.find(b"\n", pos)
                    if newline < 0:
                        break
                    pos = newline + 1
                else:
                    pos += _SHARE_WIDTH[kind]
                continue
            if kind in (_CLASS, _TWO_LINES):
                flags |= NAMES_CLASSES
                if kind == _CLASS:
                    continue
            pos = _scan_rare(data, pos, code, kind)
    except (IndexError, struct.error):
        pass
    raise UnsafePickle("pickle data was truncated (no STOP opcode)")


def _scan_rare(data: bytes, pos: int, code: int, kind: int) -> int:
    """Handle the opcodes that SocketHandler records seldom contain; return the next offset."""
    end = len(data)
    if kind == _LEN4S:
        size = int.from_bytes(data[pos : pos + 4], "little", signed=True)
        if size < 0:
            raise UnsafePickle(f"negative length in {_NAMES[code]} at offset {pos - 1}")
        return pos + 4 + size
    if kind == _LEN8U:
        return pos + 8 + int.from_bytes(data[pos : pos + 8], "little")
    if kind == _TWO_LINES:
        newline = data.find(b"\n", pos)
        newline = data.find(b"\n", newline + 1) if newline >= 0 else -1
        return newline + 1 if newline >= 0 else end + 1
    if kind == _MEMO_PUT_LINE:
        newline = data.find(b"\n", pos)
        if newline < 0:
            return end + 1
        text = data[pos:newline]
        if not text.isdigit() or len(text) > 10 or int(text) > end:
            raise UnsafePickle(f"memo index {text[:20]!r} out of range at offset {pos - 1}")
        return newline + 1
    if kind == _FORBIDDEN:
        raise UnsafePickle(f"opcode {_NAMES[code]} is not allowed (offset {pos - 1})")
    raise UnsafePickle(f"unknown opcode 0x{code:02x} at offset {pos - 1}")


def _load_c_scan() -> Callable[[bytes], object] | None:
    if os.environ.get("LOGRELAY_PURE_PYTHON"):
        return None
    try:
        from relay import _pickle_scan  # type: ignore[attr-defined]
    except ImportError:
        return None
    _pickle_scan.configure(bytes(kind & 0xFF for kind in _TABLE), MAX_NUMBERS)
    c_scan: Callable[[bytes], object] = _pickle_scan.scan
    return c_scan


_c_scan: Final = _load_c_scan()


def _scan_c(data: bytes) -> int:
    """The C loop (same contract as :func:`scan_python`)."""
    assert _c_scan is not None
    verdict = _c_scan(data)
    if type(verdict) is int:
        return verdict
    # Refusals are rare: let the reference implementation word the reason
    # (opcode names and offsets), so both say the same thing.
    scan_python(data)
    raise UnsafePickle(str(verdict))  # pragma: no cover - the two agree (differential tests)


#: "c" or "python": which implementation :func:`scan` is.
IMPLEMENTATION: Final = "c" if _c_scan is not None else "python"
scan: Final = _scan_c if _c_scan is not None else scan_python
