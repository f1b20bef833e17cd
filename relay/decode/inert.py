"""Inert stand-ins for what a pickle names: the only things it can ever "call".

:class:`relay.decode.unpickler.RecordUnpickler` resolves every global to a
stand-in class: a well-known value type to a :class:`ValueStandIn`
(:mod:`relay.decode.known_types` has them, and the table of names,
:data:`~relay.decode.known_types.KNOWN`), everything else to an
:class:`OpaqueObject` subclass that only remembers the class name, arguments
and state.  This module holds what every stand-in is: the frozen metaclass,
the opaque base, the base of rebuilt values, the lazy containers the walk to
JSON (:mod:`relay.decode.to_json`) expands item by item, and the per-record
lookup of time zones.

Nothing a frame does reaches another frame.  A pickle can only touch what
it created (instances, per record) and the classes ``find_class`` hands it;
those classes are shared by every frame, so they are frozen: every one is a
:class:`FrozenClass`, whose attributes cannot be set or deleted (the
unpickler's BUILD would ``setattr`` slot state onto a class that has no
``__setstate__``), and each has ``__setstate__`` (inherited), so BUILD on
the class itself fails.  The cost scan (:mod:`relay.decode.cost_scan`) also
relies on every stand-in hashing and comparing by identity
(``object.__hash__`` and ``object.__eq__``).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Final

__all__ = [
    "MAX_STAND_IN_CHAIN",
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
        mapping)``), a mapping or a list of pairs (Python 2's
        ``OrderedDict([[key, value], ...])``), and their items are pairs;
        anything else is not a
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
            elif type(arg) is list or type(arg) is tuple:
                # Pairs, as dict() takes them: Python 2 pickles an
                # OrderedDict as OrderedDict([[key, value], ...]).
                for pair in arg:
                    if not (type(pair) is list or type(pair) is tuple) or len(pair) != 2:
                        raise ValueError(f"unexpected pickle arguments for {self.qualname}")
                    yield tuple(pair)
        for item in self.items:
            # SETITEMS gives pairs; anything else (APPENDS on a mapping) is
            # not a mapping's pickle: rendered inert, every item walked once.
            if not (isinstance(item, tuple) and len(item) == 2):
                raise ValueError(f"unexpected items for {self.qualname}")
            yield item
