"""Bounded conversion of an unpickled record into plain JSON values.

The unpickler's output is a graph, not a tree: one object can be referenced
many times (a few hundred bytes of pickle can describe a structure whose
expansion is exponential) and can reference itself.  :func:`to_json_value`
walks it once, charging every value it visits (:data:`MAX_VISITS`, a
repeated reference counting as every value it repeats) and every character
against budgets and refusing to nest deeper than a limit, so the encoded
entry is never larger than the caller's byte limit, the walk's time is
bounded by its visits, and it never overflows the stack.  A stand-in is
rebuilt once per object, however often it is referenced, after its
arguments' sizes were charged; time zones are looked up once per record.

Value types rebuilt by :mod:`relay.decode.unpickler` are rendered readably:
``datetime``/``date``/``time`` as ISO 8601, ``Decimal`` as its digits,
``UUID`` canonically, ``timedelta`` as ``str()`` shows it, ``bytes`` as a
Python literal, sets as lists.  Any other object is rendered as
``{"__class__": "module.Name", "args": [...], "state": ...}``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from typing import Any

import orjson

from relay.decode.cost_model import MAX_OBJECTS
from relay.decode.inert import (
    LazyBytes,
    LazyMapping,
    LazySequence,
    OpaqueObject,
    ValueStandIn,
    ZoneLimitExceeded,
    ZoneLookup,
)

__all__ = [
    "MAX_BIG_INT_WORK",
    "MAX_VISITS",
    "RECURSIVE_REFERENCE",
    "DecodeLimitExceeded",
    "flat_record_json",
    "to_json_value",
]

RECURSIVE_REFERENCE = "<recursive reference>"

# What a container, a number or a key costs in the budget besides its text;
# roughly its size once encoded as JSON.
_NODE_COST = 8

#: Values one walk may visit, a value reached twice counting twice: the
#: objects the scan lets a record create (relay.decode.cost_model.MAX_OBJECTS).  A
#: container (or a mapping expanded into another) counts as two: visiting
#: one costs several calls (~0.7 µs), a scalar ~0.1 µs; a stand-in four
#: (python -m bench.frame_cost measures the walks the budgets allow).
MAX_VISITS = MAX_OBJECTS
_CONTAINER_VISITS = 2
#: A stand-in (rebuilt, expanded or rendered inert) costs twice a plain container again.
_STAND_IN_VISITS = 4
_TOO_MANY_VISITS = f"record expands beyond {MAX_VISITS} values (a container counts as two, a stand-in as four)"
#: Writing an int in decimal costs time quadratic in its digits (4,000
#: digits: ~0.25 ms): the squares of the digits of a record's ints beyond
#: 64 bits may add up to this (~8 ms of writing; a thousand 128-bit ints use
#: 0.3 %; python -m bench.frame_cost).
MAX_BIG_INT_WORK = 1 << 29

_REBUILD_FAILED = object()


class DecodeLimitExceeded(ValueError):
    """The decoded record would be larger or deeper than the configured limits."""


class _Walker:
    __slots__ = ("big_int_work", "budget", "max_depth", "path", "rebuilt_values", "visits", "zones")

    def __init__(self, max_depth: int, max_bytes: int) -> None:
        self.budget = max_bytes
        self.visits = MAX_VISITS
        self.big_int_work = MAX_BIG_INT_WORK
        self.max_depth = max_depth
        # ids of the containers on the current path, to spot self-reference
        self.path: set[int] = set()
        # id of a stand-in -> its rendered text (or _REBUILD_FAILED): one rebuild per object
        self.rebuilt_values: dict[int, object] = {}
        self.zones = ZoneLookup()

    def charge(self, cost: int) -> None:
        """One value visited, costing ``cost`` of the decoded size."""
        self.budget -= cost
        self.visits -= 1
        if self.budget < 0:
            raise DecodeLimitExceeded("decoded record exceeds the maximum decoded size")
        if self.visits < 0:
            raise DecodeLimitExceeded(_TOO_MANY_VISITS)

    def pay(self, cost: int) -> None:
        """Decoded size for the value being visited (its text, its rebuild's input)."""
        self.budget -= cost
        if self.budget < 0:
            raise DecodeLimitExceeded("decoded record exceeds the maximum decoded size")

    def visit(self) -> None:
        """A mapping expanded into its parent: no text, but a container's visits (a generator made and run)."""
        self.visits -= _CONTAINER_VISITS - 1
        self.charge(0)

    def value(self, obj: Any, depth: int) -> Any:
        kind = type(obj)
        if kind is str:
            self.charge(len(obj) + 2)
            return obj
        if obj is None or kind is bool:
            self.charge(_NODE_COST)
            return obj
        if kind is int:
            return self.integer(obj)
        if kind is float:
            self.charge(_NODE_COST * 3)
            return obj if math.isfinite(obj) else repr(obj)
        return self.container(obj, kind, depth)

    def integer(self, obj: int) -> int | str:
        # Decimal digits are about 0.3 per bit; json.dumps cannot print ints
        # beyond sys.get_int_max_str_digits(), so those become a short marker.
        digits = obj.bit_length() * 3 // 10 + 2
        if digits > 4000:
            self.charge(_NODE_COST * 4)
            return f"<int of {obj.bit_length()} bits>"
        if digits > 20:
            self.big_int_work -= digits * digits
            if self.big_int_work < 0:
                raise DecodeLimitExceeded("record's big integers have too many digits to write")
        self.charge(digits)
        return obj

    def container(self, obj: Any, kind: type, depth: int) -> Any:
        if depth >= self.max_depth:
            raise DecodeLimitExceeded(f"record nests deeper than {self.max_depth} levels")
        key = id(obj)
        path = self.path
        if kind is dict or kind is list or kind is tuple or kind is set or kind is frozenset:
            # Hot path (most containers): charged inline, rendered directly.
            if key in path:
                self.charge(len(RECURSIVE_REFERENCE))
                return RECURSIVE_REFERENCE
            self.budget -= _NODE_COST
            self.visits -= _CONTAINER_VISITS
            if self.budget < 0 or self.visits < 0:
                self.charge(0)  # raises, with the reason
            path.add(key)
            try:
                return self.mapping(obj.items(), depth + 1) if kind is dict else self.sequence(obj, depth + 1)
            finally:
                path.discard(key)
        text = self.rebuilt_values.get(key)
        self.visits -= _STAND_IN_VISITS - 1
        if type(text) is str:
            # A stand-in met before: its text, without rebuilding or walking it again.
            self.charge(_NODE_COST + len(text) + 2)
            return text
        if key in path:
            self.charge(len(RECURSIVE_REFERENCE))
            return RECURSIVE_REFERENCE
        self.charge(_NODE_COST)
        path.add(key)
        try:
            return self.render(obj, kind, depth + 1)
        finally:
            path.discard(key)

    def sequence(self, items: Iterable[Any], depth: int) -> list[Any]:
        """The items of a list, tuple or set; scalars costed inline (most items are), containers walked."""
        out: list[Any] = []
        append = out.append
        cost = 0
        visits = 0
        for item in items:
            kind = type(item)
            if kind is str:
                cost += len(item) + 2
            elif item is None or kind is bool:
                cost += _NODE_COST
            elif (kind is float and math.isfinite(item)) or (kind is int and -(2**63) <= item < 2**63):
                cost += _NODE_COST * 3
            else:
                if visits:
                    self.settle(cost, visits)
                    cost = visits = 0
                append(self.value(item, depth))  # counts its own visit
                continue
            visits += 1
            append(item)
        if visits:
            self.settle(cost, visits)
        return out

    def settle(self, cost: int, visits: int) -> None:
        """Charge what a loop costed inline: its text and its visits."""
        self.budget -= cost
        self.visits -= visits
        if self.budget < 0:
            raise DecodeLimitExceeded("decoded record exceeds the maximum decoded size")
        if self.visits < 0:
            raise DecodeLimitExceeded(_TOO_MANY_VISITS)

    def render(self, obj: Any, kind: type, depth: int) -> Any:
        if kind is dict:
            return self.mapping(obj.items(), depth)
        if kind in (list, tuple, set, frozenset):
            return self.sequence(obj, depth)
        if kind in (bytes, bytearray):
            # repr() of bytes is at most 4 characters per byte: pay before making it.
            self.pay(len(obj) * 4 + 3)
            return repr(bytes(obj))
        if isinstance(obj, LazySequence | LazyMapping | LazyBytes):
            return self.lazy(obj, depth)
        if isinstance(obj, ValueStandIn):
            text = self.rebuilt_values.get(id(obj))
            if text is None:
                text = self.rebuild(obj)
            if text is _REBUILD_FAILED:
                # Arguments that are not what this type's pickles contain
                # (missing, wrong type, out of range): keep them, inert.
                return self.opaque(obj, depth)
            assert isinstance(text, str)
            self.pay(len(text) + 2)
            return text
        if isinstance(obj, OpaqueObject):
            return self.opaque(obj, depth)
        if isinstance(obj, type):
            # A class itself, as a value (``extra={"handler": MyHandler}``).
            return self.opaque_dict(str(getattr(obj, "qualname", obj.__name__)))
        # Anything else the stand-ins can produce (a bare marker such as the
        # stand-in for ``object``) is named, never introspected.
        name = getattr(type(obj), "qualname", type(obj).__name__)
        return self.opaque_dict(str(name))

    def rebuild(self, obj: ValueStandIn) -> object:
        """The text of a stand-in's value (or _REBUILD_FAILED), rebuilt once per object.

        The rebuild reads its arguments (a Decimal's digits, a path's parts):
        their sizes are charged first, so that a thousand stand-ins sharing
        one long string through the memo cannot make it read a thousand times.
        """
        self.pay(sum(len(arg) + 1 if isinstance(arg, str | bytes) else 1 for arg in obj.args))
        text: object
        try:
            value = obj.rebuild(self.zones)
            text = value.isoformat() if isinstance(value, dt.date | dt.time) else str(value)
        except ZoneLimitExceeded as exc:
            raise DecodeLimitExceeded(str(exc)) from None
        except Exception:
            text = _REBUILD_FAILED
        self.rebuilt_values[id(obj)] = text
        return text

    def lazy(self, obj: LazySequence | LazyMapping | LazyBytes, depth: int) -> Any:
        """Expand a container or bytes the unpickler left unbuilt, paying as we go."""
        try:
            if isinstance(obj, LazyMapping):
                return self.mapping(obj.pairs(self.visit), depth)
            if isinstance(obj, LazySequence):
                return self.sequence(obj.iterable(), depth)
            # repr() of bytes is at most 4 characters per byte: pay before encoding.
            self.pay(obj.size * 4 + 3)
            text = repr(obj.rebuild())
        except (ValueError, TypeError):
            return self.opaque(obj, depth)
        return text

    def mapping(self, pairs: Iterable[tuple[Any, Any]], depth: int) -> dict[str, Any]:
        # Hot path: a record is one dict of mostly strings and small numbers,
        # so scalars are costed inline and only containers recurse.  Each
        # pair is one visit, counted as it comes: a lazy mapping's pairs
        # are not bounded by any container's size.
        out: dict[str, Any] = {}
        cost = 0
        for key, item in pairs:
            self.visits -= 1
            if self.visits < 0:
                raise DecodeLimitExceeded(_TOO_MANY_VISITS)
            if type(key) is not str:
                key = self.key(key, depth)
            cost += len(key) + 3
            kind = type(item)
            if kind is str:
                cost += len(item) + 2
            elif item is None or kind is bool:
                cost += _NODE_COST
            elif (kind is float and math.isfinite(item)) or (kind is int and -(2**63) <= item < 2**63):
                cost += _NODE_COST * 3
            else:
                item = self.value(item, depth)
            out[key] = item
        self.pay(cost)
        return out

    def opaque(self, obj: OpaqueObject, depth: int) -> dict[str, Any]:
        out = self.opaque_dict(obj.qualname)
        if obj.args:
            out["args"] = self.value(obj.args, depth)
        if obj.kwargs:
            out["kwargs"] = self.value(obj.kwargs, depth)
        if obj.state is not None:
            out["state"] = self.value(obj.state, depth)
        if obj.items:
            out["items"] = self.value(obj.items, depth)
        return out

    def opaque_dict(self, qualname: str) -> dict[str, Any]:
        self.pay(len(qualname) + 16)
        return {"__class__": qualname}

    def key(self, key: Any, depth: int) -> str:
        if type(key) is str:
            self.charge(len(key) + 3)
            return key
        # JSON object keys are strings; render others the way json.dumps
        # would for scalars and as their JSON text for the rest.
        value = self.value(key, depth)
        if value is None:
            return "null"
        if type(value) is bool:
            return "true" if value else "false"
        return str(value)


class _Python2Walker(_Walker):
    """The walk of a frame from Python 2 that holds byte strings that are not UTF-8.

    Python 2's ``str`` is bytes: the unpickler decodes it as UTF-8, bytes
    that are not as surrogate escapes.  One that is UTF-8 stays text (what a
    Python 3 program sends for the same text); one that is not (listed in
    ``byte_strings``, as the unpickler decoded it) is rendered as the bytes it
    is, as a Python 3 ``bytes`` value is: a Python literal, wherever it sits
    (a value, an item, a key, an argument of an opaque object).
    """

    __slots__ = ("byte_strings",)

    def __init__(self, max_depth: int, max_bytes: int, byte_strings: frozenset[str]) -> None:
        super().__init__(max_depth, max_bytes)
        self.byte_strings = byte_strings

    def as_sent(self, obj: Any) -> Any:
        """A Python 2 ``str`` that is not UTF-8 as its bytes; anything else as it is."""
        if type(obj) is str and obj in self.byte_strings:
            return obj.encode("utf-8", "surrogateescape")
        return obj

    def value(self, obj: Any, depth: int) -> Any:
        return super().value(self.as_sent(obj), depth)

    def sequence(self, items: Iterable[Any], depth: int) -> list[Any]:
        return super().sequence(map(self.as_sent, items), depth)

    def mapping(self, pairs: Iterable[tuple[Any, Any]], depth: int) -> dict[str, Any]:
        as_sent = self.as_sent
        return super().mapping(((as_sent(key), as_sent(item)) for key, item in pairs), depth)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def flat_record_json(obj: dict[Any, Any], max_bytes: int) -> bytes | None:
    """orjson's JSON of a record that is one dict of str keys and JSON scalars, or None for any other record.

    Most records are exactly that (SocketHandler sends ``args`` as None and
    the message already formatted): for them the walk would return an equal
    dict, and the checks here run in C (``set(map(type, ...))``, orjson).
    The caller passes only trees (no object referred to twice in the
    pickle: see :data:`relay.decode.cost_scan.SHARES_OBJECTS`), whose JSON cannot
    outgrow the pickle by more than the 6x of ``\\u`` escapes, so it is
    encoded first and measured after: the decoded size of a flat record is
    its JSON length.  Raises :class:`DecodeLimitExceeded`
    beyond ``max_bytes``.  Returns None (the caller walks) for ints beyond 64
    bits, non-str keys and lone surrogates (orjson refuses them), and for
    non-finite floats.
    """
    if not _SCALARS.issuperset(map(type, obj.values())):
        return None
    try:
        text = orjson.dumps(obj)
    except orjson.JSONEncodeError:
        return None
    # orjson writes NaN and infinities as null, where the walk writes "nan"
    # or "inf".  A value ``:null`` that is not a None is one of those (or the
    # text ":null" inside a string): let the walk decide.
    nulls = text.count(b":null")
    if nulls and nulls != list(obj.values()).count(None):
        return None
    if len(text) > max_bytes:
        raise DecodeLimitExceeded("decoded record exceeds the maximum decoded size")
    return text


def to_json_value(obj: Any, *, max_depth: int, max_bytes: int, byte_strings: frozenset[str] = frozenset()) -> Any:
    """Return a tree of dict/list/str/int/float/bool/None equivalent to ``obj``.

    Raises :class:`DecodeLimitExceeded` if the result would nest deeper than
    ``max_depth`` or cost more than ``max_bytes``
    (roughly its JSON size).  A reference back to a container being walked is
    rendered as ``"<recursive reference>"``.  ``byte_strings`` are the
    Python 2 byte strings that were not UTF-8, as the unpickler decoded them
    (:func:`relay.decode.unpickler.load_record`): rendered as bytes.
    """
    if byte_strings:
        return _Python2Walker(max_depth, max_bytes, byte_strings).value(obj, 0)
    return _Walker(max_depth, max_bytes).value(obj, 0)
