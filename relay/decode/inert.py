"""Inert stand-ins for what a pickle names: the only things it can ever "call".

:class:`relay.decode.unpickler.RecordUnpickler` resolves every global to one of
these.  Well-known value types get a :class:`ValueStandIn` that keeps the
pickle's arguments and rebuilds the value by our own code, after checking
their types (:meth:`ValueStandIn.rebuild`, called when the record is turned
into JSON); everything else gets an :class:`OpaqueObject` subclass that only
remembers the class name, arguments and state.  :data:`KNOWN` maps pickle
names (both Python 3 and the Python 2 spellings protocols 0-2 use) to them.

Nothing a frame does reaches another frame.  A pickle can only touch what
it created (instances, per record) and the classes ``find_class`` hands it;
those classes are shared by every frame, so they are frozen: every one is a
:class:`FrozenClass`, whose attributes cannot be set or deleted (the
unpickler's BUILD would ``setattr`` slot state onto a class that has no
``__setstate__``), and each has ``__setstate__`` (inherited), so BUILD on
the class itself fails.  :data:`KNOWN` is a read-only mapping.  The cost
scan (:mod:`relay.decode.cost_scan`) also relies on every stand-in hashing and
comparing by identity (``object.__hash__`` and ``object.__eq__``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import pathlib
import re
import uuid
import zoneinfo
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Final

__all__ = [
    "KNOWN",
    "MAX_ZONES",
    "FrozenClass",
    "LazyBytes",
    "LazyMapping",
    "LazySequence",
    "OpaqueObject",
    "ValueStandIn",
    "ZoneLimitExceeded",
    "ZoneLookup",
]


class FrozenClass(type):
    """The metaclass of every stand-in: a class whose attributes nothing can set or delete after it is made."""

    def __setattr__(cls, name: str, value: Any) -> None:
        raise TypeError(f"stand-in class {cls.__name__} is immutable (setting {name!r})")

    def __delattr__(cls, name: str) -> None:
        raise TypeError(f"stand-in class {cls.__name__} is immutable (deleting {name!r})")


class OpaqueObject(metaclass=FrozenClass):
    """An inert stand-in for an instance of a class we do not import.

    It remembers what the pickle said about the object, nothing more: the
    dotted class name, the positional and keyword arguments it was "built"
    with, the state handed to ``__setstate__`` and any items appended or set
    on it.  Calling it never runs code from the pickle.
    """

    __slots__ = ("args", "items", "kwargs", "state")
    qualname: ClassVar[str] = "?"

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: Any
    items: list[Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> OpaqueObject:
        obj = object.__new__(cls)
        obj.args = args
        obj.kwargs = kwargs
        obj.state = None
        obj.items = []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do: ``__new__`` already recorded the arguments."""

    def __setstate__(self, state: Any) -> None:
        self.state = state

    # APPENDS/SETITEMS on a reduced object call these.
    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Any) -> None:
        self.items.extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def __repr__(self) -> str:
        return f"<{self.qualname} (opaque)>"


class ZoneLimitExceeded(ValueError):
    """A record names more time zones than :data:`MAX_ZONES`."""


#: Distinct time zones one record may name.
MAX_ZONES: Final = 8


class ZoneLookup:
    """The IANA time zones one record names, each looked up once, at most :data:`MAX_ZONES` of them.

    A lookup reads the system's tz database (a miss also tries to import
    ``tzdata``: ~60 µs); one per record, not one per datetime that names it.
    """

    __slots__ = ("_found",)

    def __init__(self) -> None:
        self._found: dict[str, dt.tzinfo | None] = {}

    def get(self, key: str) -> dt.tzinfo | None:
        """The zone ``key`` names, or None where the system has no such zone."""
        if key in self._found:
            return self._found[key]
        if len(self._found) >= MAX_ZONES:
            raise ZoneLimitExceeded(f"more than {MAX_ZONES} time zones in one record")
        zone: dt.tzinfo | None
        try:
            # Reads the system's tz database by a validated key; the set of
            # zones (and ZoneInfo's own cache) is bounded by that database.
            zone = zoneinfo.ZoneInfo(key)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            zone = None
        self._found[key] = zone
        return zone


class ValueStandIn(OpaqueObject):
    """Base of stand-ins whose arguments/state we rebuild into a real value.

    Subclasses implement :meth:`rebuild`; the walk (relay.decode.to_json) calls it
    once per object, after unpickling, when the record is converted to JSON,
    having charged its budget for the arguments' sizes first; it raises
    ``ValueError``/``TypeError`` when the arguments are not what that type's
    pickles contain.  ``zones`` looks up the time zones a datetime names.
    """

    __slots__ = ()

    def rebuild(self, zones: ZoneLookup | None = None) -> Any:
        raise NotImplementedError


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise ValueError(f"unexpected pickle arguments for {what}")


def _datetime_fields(state: Any, size: int) -> tuple[int, ...]:
    data = _as_bytes(state)
    _check(len(data) == size, "datetime state")
    return tuple(data)


class _DateTime(ValueStandIn):
    __slots__ = ()
    qualname = "datetime.datetime"

    def rebuild(self, zones: ZoneLookup | None = None) -> dt.datetime:
        b = _datetime_fields(self.args[0], 10)
        tz = _rebuild_tz(self.args[1], zones) if len(self.args) > 1 else None
        month, fold = b[2] & 0x7F, b[2] >> 7
        usec = (b[7] << 16) | (b[8] << 8) | b[9]
        return dt.datetime((b[0] << 8) | b[1], month, b[3], b[4], b[5], b[6], usec, tz, fold=fold)


class _Date(ValueStandIn):
    __slots__ = ()
    qualname = "datetime.date"

    def rebuild(self, zones: ZoneLookup | None = None) -> dt.date:
        b = _datetime_fields(self.args[0], 4)
        return dt.date((b[0] << 8) | b[1], b[2], b[3])


class _Time(ValueStandIn):
    __slots__ = ()
    qualname = "datetime.time"

    def rebuild(self, zones: ZoneLookup | None = None) -> dt.time:
        b = _datetime_fields(self.args[0], 6)
        tz = _rebuild_tz(self.args[1], zones) if len(self.args) > 1 else None
        hour, fold = b[0] & 0x7F, b[0] >> 7
        return dt.time(hour, b[1], b[2], (b[3] << 16) | (b[4] << 8) | b[5], tz, fold=fold)


class _TimeDelta(ValueStandIn):
    __slots__ = ()
    qualname = "datetime.timedelta"

    def rebuild(self, zones: ZoneLookup | None = None) -> dt.timedelta:
        _check(all(type(a) is int for a in self.args) and len(self.args) <= 3, self.qualname)
        return dt.timedelta(*self.args)


class _TimeZone(ValueStandIn):
    __slots__ = ()
    qualname = "datetime.timezone"

    def rebuild(self, zones: ZoneLookup | None = None) -> dt.timezone:
        offset = self.args[0] if self.args else None
        if not isinstance(offset, _TimeDelta):
            raise ValueError(f"unexpected pickle arguments for {self.qualname}")
        name = self.args[1] if len(self.args) > 1 else None
        _check(name is None or isinstance(name, str), self.qualname)
        delta = offset.rebuild()
        return dt.timezone(delta, name) if name is not None else dt.timezone(delta)


# An IANA zone name as ZoneInfo accepts it: no absolute or parent paths.
_ZONE_KEY = re.compile(r"^[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*$")


def _rebuild_tz(tz: Any, zones: ZoneLookup | None) -> dt.tzinfo | None:
    if tz is None:
        return None
    if isinstance(tz, _TimeZone):
        return tz.rebuild()
    if isinstance(tz, OpaqueObject) and tz.qualname == "zoneinfo.ZoneInfo._unpickle":
        key = tz.args[0] if tz.args else None
        if isinstance(key, str) and len(key) < 64 and _ZONE_KEY.match(key):
            return (zones or ZoneLookup()).get(key)
    # Third-party tzinfo classes (pytz, dateutil) are not rebuilt: the
    # datetime is kept naive rather than guessing its offset.
    return None


class _Decimal(ValueStandIn):
    __slots__ = ()
    qualname = "decimal.Decimal"

    def rebuild(self, zones: ZoneLookup | None = None) -> decimal.Decimal:
        _check(len(self.args) == 1 and isinstance(self.args[0], str), self.qualname)
        return decimal.Decimal(self.args[0])


class _UUID(ValueStandIn):
    __slots__ = ()
    qualname = "uuid.UUID"

    def rebuild(self, zones: ZoneLookup | None = None) -> uuid.UUID:
        state = self.state
        _check(isinstance(state, dict) and type(state.get("int")) is int, self.qualname)
        return uuid.UUID(int=state["int"])


class _PosixPath(ValueStandIn):
    __slots__ = ()
    qualname = "pathlib.PurePosixPath"
    flavour: ClassVar[type[pathlib.PurePath]] = pathlib.PurePosixPath

    def rebuild(self, zones: ZoneLookup | None = None) -> str:
        _check(all(isinstance(a, str) for a in self.args), self.qualname)
        # Pure paths only join strings; they never touch the file system.
        return str(self.flavour(*self.args))


class _WindowsPath(_PosixPath):
    __slots__ = ()
    qualname = "pathlib.PureWindowsPath"
    flavour = pathlib.PureWindowsPath


class _IPAddress(ValueStandIn):
    __slots__ = ()
    qualname = "ipaddress.ip_address"

    def rebuild(self, zones: ZoneLookup | None = None) -> str:
        _check(len(self.args) == 1 and type(self.args[0]) in (int, str, bytes), self.qualname)
        address = self.args[0]
        _check(not isinstance(address, str | bytes) or len(address) <= 64, self.qualname)
        return str(ipaddress.ip_address(address))


class _Complex(ValueStandIn):
    __slots__ = ()
    qualname = "builtins.complex"

    def rebuild(self, zones: ZoneLookup | None = None) -> str:
        _check(all(type(a) in (int, float) for a in self.args) and len(self.args) <= 2, self.qualname)
        return str(complex(*self.args))


#: How deeply lazy stand-ins may wrap each other (``list(list(...))``); real
#: pickles nest them one or two levels.
MAX_STAND_IN_CHAIN: Final = 32


class LazyBytes(ValueStandIn):
    """``bytes``/``bytearray``/``_codecs.encode(str, "latin1")``, encoded only when rendered.

    Encoding at unpickling time would let a pickle that references one large
    string many times allocate a copy per reference before any limit applies.
    """

    __slots__ = ()
    qualname = "builtins.bytes"

    def _innermost(self) -> LazyBytes:
        """Unwrap ``bytearray(bytes(...))`` nesting, iteratively and boundedly."""
        node: LazyBytes = self
        for _ in range(MAX_STAND_IN_CHAIN):
            inner = node.args[0] if len(node.args) == 1 else None
            if not isinstance(inner, LazyBytes):
                return node
            node = inner
        raise ValueError(f"stand-ins nested more than {MAX_STAND_IN_CHAIN} deep")

    @property
    def size(self) -> int:
        """Bytes the value will have; known without encoding."""
        try:
            node = self._innermost()
        except ValueError:
            return 0
        first = node.args[0] if node.args else b""
        return len(first) if isinstance(first, str | bytes | bytearray) else 0

    def rebuild(self, zones: ZoneLookup | None = None) -> bytes:
        args = self._innermost().args
        if not args:
            return b""
        if len(args) == 1 and isinstance(args[0], bytes | bytearray):
            return bytes(args[0])
        text, encoding = args[0], args[1] if len(args) > 1 else None
        errors = args[2] if len(args) > 2 else "strict"
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
            raise ValueError("unexpected pickle arguments for bytes")
        return text.encode("latin-1")


class LazySequence(ValueStandIn):
    """``list``/``set``/``frozenset``/``deque`` of an iterable: walked, never copied, when rendered."""

    __slots__ = ()
    qualname = "builtins.list"

    def iterable(self) -> Iterator[Any]:
        """The items to render one by one: the argument's, then any APPENDS (of every level)."""
        chain: list[LazySequence] = [self]
        source = self.args[0] if self.args else ()
        while isinstance(source, LazySequence):
            if len(chain) >= MAX_STAND_IN_CHAIN:
                raise ValueError(f"stand-ins nested more than {MAX_STAND_IN_CHAIN} deep")
            chain.append(source)
            source = source.args[0] if source.args else ()
        if not isinstance(source, list | tuple | set | frozenset):
            raise ValueError(f"unexpected pickle arguments for {self.qualname}")
        yield from source
        for node in reversed(chain):
            yield from node.items


class _Set(LazySequence):
    __slots__ = ()
    qualname = "builtins.set"


class _FrozenSet(LazySequence):
    __slots__ = ()
    qualname = "builtins.frozenset"


class _Deque(LazySequence):
    __slots__ = ()
    qualname = "collections.deque"


class LazyMapping(ValueStandIn):
    """``dict``/``OrderedDict``/``defaultdict``/``Counter``: a dict argument and/or SETITEMS pairs."""

    __slots__ = ()
    qualname = "builtins.dict"

    def pairs(self, visit: Callable[[], None] | None = None) -> Iterator[tuple[Any, Any]]:
        """Yield (key, value) pairs in pickle order, without building a merged dict.

        A mapping built from mappings (``OrderedDict(other)``, nested at most
        :data:`MAX_STAND_IN_CHAIN` deep) is expanded with a stack of our
        own, so each pair costs the same however deep it sits; ``visit`` is
        called once per mapping expanded, so that a caller counting its work
        also counts mappings that hold no pairs.
        """
        todo: list[Iterator[Any]] = [self._parts()]
        while todo:
            part = next(todo[-1], None)
            if part is None:
                todo.pop()
            elif isinstance(part, LazyMapping):
                if len(todo) >= MAX_STAND_IN_CHAIN:
                    raise ValueError(f"stand-ins nested more than {MAX_STAND_IN_CHAIN} deep")
                if visit is not None:
                    visit()
                todo.append(part._parts())
            else:
                yield part

    def _parts(self) -> Iterator[Any]:
        """This mapping's own parts: pairs, and the mappings its pairs come from.

        Mapping types take at most two arguments (``defaultdict(factory,
        mapping)``) and their items are pairs; anything else is not a
        pickle of one, and expanding it once per reference would go through
        what it holds each time without a visit to count.
        """
        if len(self.args) > 2:
            raise ValueError(f"unexpected pickle arguments for {self.qualname}")
        for arg in self.args:
            if isinstance(arg, dict):
                yield from arg.items()
            elif isinstance(arg, LazyMapping):
                yield arg
        for item in self.items:
            # SETITEMS gives pairs; anything else (APPENDS on a mapping) is
            # not a mapping's pickle: rendered inert, every item walked once.
            if not (isinstance(item, tuple) and len(item) == 2):
                raise ValueError(f"unexpected items for {self.qualname}")
            yield item


class _OrderedDict(LazyMapping):
    __slots__ = ()
    qualname = "collections.OrderedDict"


class _DefaultDict(LazyMapping):
    __slots__ = ()
    qualname = "collections.defaultdict"


class _Counter(LazyMapping):
    __slots__ = ()
    qualname = "collections.Counter"


class _ByteArray(LazyBytes):
    __slots__ = ()
    qualname = "builtins.bytearray"


def _as_bytes(value: Any) -> bytes:
    """A datetime state argument: real bytes, or a short LazyBytes."""
    if isinstance(value, LazyBytes) and value.size <= 16:
        return value.rebuild()
    return value if isinstance(value, bytes) else b""


def _builtin_type(qualname: str) -> type[OpaqueObject]:
    """A stand-in for a builtin type named as a value or as a base (``copyreg._reconstructor(cls, object, None)``)."""
    # type() finds the metaclass (FrozenClass) from the base, as a class statement would.
    return type(qualname.rpartition(".")[2], (OpaqueObject,), {"__slots__": (), "qualname": qualname})


class _Reconstructor(OpaqueObject):
    """Stand-in for ``copyreg._reconstructor``, how protocols 0-1 spell a class instance.

    A class, so that it is frozen like every other stand-in; calling it
    returns an instance of the (opaque) class named, never of this one.
    """

    __slots__ = ()
    qualname = "copyreg._reconstructor"

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        target = args[0] if args else None
        if kwargs or not 2 <= len(args) <= 3 or not (isinstance(target, type) and issubclass(target, OpaqueObject)):
            raise ValueError("unexpected pickle arguments for copyreg._reconstructor")
        obj = OpaqueObject.__new__(target)
        state = args[2] if len(args) > 2 else None
        if state is not None:
            # A subclass of a builtin (``class Tag(str)``) carries its value here.
            obj.args = (state,)
        return obj


# The well-known names and what we map them to.  Python 2 spellings
# (``__builtin__``, ``copy_reg``) are translated by the unpickler before lookup.
_KNOWN: Final[dict[tuple[str, str], type[OpaqueObject]]] = {
    ("datetime", "datetime"): _DateTime,
    ("datetime", "date"): _Date,
    ("datetime", "time"): _Time,
    ("datetime", "timedelta"): _TimeDelta,
    ("datetime", "timezone"): _TimeZone,
    ("decimal", "Decimal"): _Decimal,
    ("_pydecimal", "Decimal"): _Decimal,
    ("uuid", "UUID"): _UUID,
    ("_codecs", "encode"): LazyBytes,
    ("codecs", "encode"): LazyBytes,
    ("copyreg", "_reconstructor"): _Reconstructor,
    ("collections", "OrderedDict"): _OrderedDict,
    ("collections", "defaultdict"): _DefaultDict,
    ("collections", "Counter"): _Counter,
    ("collections", "deque"): _Deque,
    ("ipaddress", "IPv4Address"): _IPAddress,
    ("ipaddress", "IPv6Address"): _IPAddress,
    ("builtins", "set"): _Set,
    ("builtins", "frozenset"): _FrozenSet,
    ("builtins", "bytes"): LazyBytes,
    ("builtins", "bytearray"): _ByteArray,
    ("builtins", "complex"): _Complex,
    # Base-type arguments of copyreg._reconstructor for builtin subclasses.
    **{("builtins", name): _builtin_type(f"builtins.{name}") for name in ("object", "str", "int", "float", "tuple")},
    ("builtins", "list"): LazySequence,
    ("builtins", "dict"): LazyMapping,
    **{("pathlib", name): _PosixPath for name in ("PosixPath", "PurePosixPath", "Path", "PurePath")},
    **{("pathlib", name): _WindowsPath for name in ("WindowsPath", "PureWindowsPath")},
}
#: The well-known names, read-only: nothing at run time adds to or changes them.
KNOWN: Final[Mapping[tuple[str, str], type[OpaqueObject]]] = MappingProxyType(_KNOWN)
