"""The well-known value types a record may carry, and the table of the names that reach them.

Each is a :class:`~relay.decode.inert.ValueStandIn` that keeps the pickle's
arguments and rebuilds the value by our own code, after checking their types
(``rebuild``, called once when the record is turned into JSON): the datetime
family, ``Decimal``, ``UUID``, pure paths, IP addresses, ``complex``, the
collections and ``bytes`` (lazy: expanded, never copied, by the walk), and
``copyreg._reconstructor``, how protocols 0-1 spell an instance.
:data:`KNOWN` maps pickle names (both Python 3 and the Python 2 spellings
protocols 0-2 use) to them; any other name becomes an opaque stand-in
(:class:`~relay.decode.inert.OpaqueObject`).  Every class here is frozen and
the table is read-only, so nothing one frame does reaches another.
"""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import pathlib
import re
import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Final

from relay.decode.inert import LazyBytes, LazyMapping, LazySequence, OpaqueObject, ValueStandIn, ZoneLookup

__all__ = ["KNOWN"]


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


class _Set(LazySequence):
    __slots__ = ()
    qualname = "builtins.set"


class _FrozenSet(LazySequence):
    __slots__ = ()
    qualname = "builtins.frozenset"


class _Deque(LazySequence):
    __slots__ = ()
    qualname = "collections.deque"


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
    """A datetime state argument: real bytes, a short LazyBytes, or a short Python 2 ``str``.

    Python 2 pickles the state as a ``str`` (bytes), which the unpickler
    decodes as UTF-8 with surrogate escapes for what is not UTF-8 (the
    state's bytes are binary: a year 2024 is ``07 E8``, and microseconds may
    well be valid UTF-8 such as ``C3 A9``); encoding it back the same way
    gives exactly the bytes sent.  Text that did not come from bytes (a lone
    surrogate outside the escapes) gives nothing, and the value stays opaque.
    """
    if isinstance(value, LazyBytes) and value.size <= 16:
        return value.rebuild()
    if type(value) is str and len(value) <= 16:
        try:
            return value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return b""
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
