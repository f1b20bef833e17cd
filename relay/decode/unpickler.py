"""Unpickling untrusted log records without running anything they name.

A pickle is a small program: ``GLOBAL`` names a callable, ``REDUCE`` calls it.
:class:`RecordUnpickler` overrides ``find_class`` so that no name is ever
imported or looked up.  What a name resolves to is always one of *our* inert
stand-ins:

* a short list of well-known value types (``datetime``, ``Decimal``, ``UUID``,
  ``bytes`` via ``_codecs.encode``, ``set``, ``pathlib`` paths, ...) get a
  stand-in that checks the arguments' types and rebuilds the value by our own
  code, never by calling what the pickle named;
* names that only an attacker would put in a log record (``os.system``,
  ``builtins.eval``, ``subprocess.Popen``, ...) make the whole frame fail with
  :class:`ForbiddenGlobal`;
* every other name (the sender's own classes in ``extra=``) becomes an
  :class:`OpaqueObject` that records the class name, the constructor arguments
  and the state, so the record is delivered in a readable, inert form.

Before unpickling, :func:`relay.decode.cost_scan.scan` rejects opcode streams that
would make the C unpickler allocate without bound, and tells whether the
pickle names any class at all.  Most records name none (SocketHandler sends
strings and numbers); those go to the stock ``pickle.loads``, which then has
nothing to look up: without GLOBAL, STACK_GLOBAL, INST or OBJ (and with
extension codes and persistent ids refused by the scan) no opcode can put a
callable on the unpickler's stack, so REDUCE, BUILD and NEWOBJ can only fail.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import codecs
import io
import pickle
import threading
from typing import Any, Final

from relay.decode.cost_scan import MAX_NAME_BYTES, NAMES_CLASSES, UnsafePickle, scan
from relay.decode.inert import OpaqueObject, ValueStandIn
from relay.decode.known_types import KNOWN

__all__ = [
    "ForbiddenGlobal",
    "OpaqueObject",
    "RecordUnpickler",
    "UnsafePickle",
    "ValueStandIn",
    "load_record",
    "safe_loads",
]

# How the unpickler decodes a Python 2 ``str`` (STRING, BINSTRING and
# SHORT_BINSTRING, opcodes no Python 3 pickler writes): as UTF-8, and bytes
# that are not UTF-8 as surrogate escapes (U+DC80-U+DCFF), so that
# ``text.encode("utf-8", "surrogateescape")`` gives back exactly the bytes
# sent.  The error handler does what ``surrogateescape`` does and also
# notes each such string, for the walk to render it as the bytes it is
# (Python 3's ``bytes`` arrive as ``_codecs.encode``, never through here;
# BINUNICODE text is decoded with a fixed ``surrogatepass``, never through
# here either).  It is called only for byte strings that are not UTF-8:
# nothing for every other frame.
_PYTHON2_STR_ERRORS: Final = "logrelay-python2-str"
_noted = threading.local()


def _python2_str_error(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    raw = bytes(exc.object)
    # The bytes before exc.start are UTF-8 (this is the first error in
    # them); UTF-8 resynchronises at an error, so the rest decoded on its
    # own is what surrogateescape would go on to produce.
    rest = raw[exc.start :].decode("utf-8", "surrogateescape")
    strings: list[str] | None = getattr(_noted, "strings", None)
    if strings is not None:
        strings.append(raw[: exc.start].decode("utf-8") + rest)
    return rest, len(raw)


codecs.register_error(_PYTHON2_STR_ERRORS, _python2_str_error)


class ForbiddenGlobal(UnsafePickle):
    """The pickle names a callable that no legitimate log record carries."""


# Modules whose purpose is running code, starting processes, loading code or
# reaching into the interpreter: their names are how pickle exploits are
# spelled, and no log record carries them.  Nothing a pickle names is ever
# called anyway; refusing these gives the dead-letter entry a clear reason
# instead of an inert but misleading record.  Ordinary stdlib values (enums
# such as http.HTTPStatus or signal.Signals, SimpleNamespace, ...) are not
# listed: they arrive as opaque objects.
_FORBIDDEN_MODULES: Final = frozenset(
    {
        "os", "posix", "nt", "posixpath", "ntpath", "subprocess", "_posixsubprocess", "pty",
        "commands", "popen2", "sys", "importlib", "imp", "pkgutil", "zipimport", "runpy", "code",
        "codeop", "marshal", "pickle", "_pickle", "cPickle", "ctypes", "_ctypes", "cffi",
        "shutil", "webbrowser", "pdb", "bdb", "timeit", "operator", "_operator", "functools",
        "_functools", "multiprocessing", "_multiprocessing", "site", "ensurepip", "pip",
        "setuptools", "distutils", "venv", "io", "_io", "codecs", "_codecs", "tempfile",
    }
)  # fmt: skip

# Builtins that are plain exception classes may appear in extras (an error
# object logged as a value); they become opaque objects like any class.
_BUILTIN_EXCEPTIONS: Final = frozenset(
    name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, BaseException)
)


# Distinct classes one frame may name: each costs a small type object.
MAX_GLOBALS_PER_FRAME: Final = 256


def _is_forbidden(module: str, name: str) -> bool:
    if module == "builtins":
        return name not in _BUILTIN_EXCEPTIONS
    return module.split(".", 1)[0] in _FORBIDDEN_MODULES or name.startswith("__")


class RecordUnpickler(pickle.Unpickler):
    """A C unpickler whose ``find_class`` never imports or looks anything up.

    One instance decodes one frame.  Opaque classes are created per instance,
    so a hostile stream of distinct names cannot grow a process-wide cache.
    """

    def __init__(self, data: bytes) -> None:
        # BufferedReader offers peek(), which lets the C unpickler prefetch the
        # whole frame instead of calling read() once per opcode (2x faster).
        super().__init__(io.BufferedReader(io.BytesIO(data)), encoding="utf-8", errors=_PYTHON2_STR_ERRORS)
        self._opaque: dict[str, type[OpaqueObject]] = {}

    def find_class(self, module: str, name: str, /) -> Any:
        written = f"{module}.{name}"
        # Protocols 0-2 may carry Python 2 names (__builtin__, copy_reg,
        # commands): translate them as the stock unpickler's fix_imports does.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        known = KNOWN.get((module, name))
        if known is not None:
            return known
        meant = f"{module}.{name}"
        spelled = written if written == meant else f"{written} (that is, {meant})"
        if meant == "builtins.getattr":
            # Protocols < 4 spell ``Class.method`` as getattr(Class, "method")
            # (zoneinfo.ZoneInfo._unpickle does).  Our getattr only ever
            # names an attribute of an opaque class; it looks nothing up.
            return _AttributeOf(self, spelled)
        if _is_forbidden(module, name):
            raise ForbiddenGlobal(f"pickle names forbidden global {spelled}")
        return self._opaque_class(meant)

    def _opaque_class(self, qualname: str) -> type[OpaqueObject]:
        cls = self._opaque.get(qualname)
        if cls is None:
            if len(self._opaque) >= MAX_GLOBALS_PER_FRAME:
                raise UnsafePickle(f"pickle names more than {MAX_GLOBALS_PER_FRAME} distinct globals")
            name = qualname.rpartition(".")[2]
            cls = type(name, (OpaqueObject,), {"__slots__": (), "qualname": qualname})
            self._opaque[qualname] = cls
        return cls

    def _opaque_attribute(self, owner: Any, attribute: Any, spelled: str) -> type[OpaqueObject]:
        opaque = isinstance(owner, type) and issubclass(owner, OpaqueObject) and not issubclass(owner, ValueStandIn)
        if not (opaque and isinstance(attribute, str)):
            raise ForbiddenGlobal(f"pickle names forbidden global {spelled}, applied to {type(owner).__name__}")
        if attribute.startswith("__"):
            raise ForbiddenGlobal(f"pickle names forbidden global {spelled}, for {owner.qualname}.{attribute:.100}")
        if len(attribute) > MAX_NAME_BYTES:
            raise UnsafePickle(f"attribute name longer than {MAX_NAME_BYTES} characters")
        return self._opaque_class(f"{owner.qualname}.{attribute}")

    def persistent_load(self, pid: Any, /) -> Any:
        raise UnsafePickle("persistent ids are not allowed")


class _AttributeOf:
    """Our ``getattr``, one per unpickler: ``getattr(OpaqueClass, "name")`` names the opaque ``Class.name``.

    It holds the unpickler of its own frame and nothing shared, and refuses
    BUILD (its ``__setstate__``), so a frame can change nothing through it.
    """

    __slots__ = ("_spelled", "_unpickler")

    def __init__(self, unpickler: RecordUnpickler, spelled: str) -> None:
        self._unpickler = unpickler
        self._spelled = spelled

    def __call__(self, owner: Any, attribute: Any) -> type[OpaqueObject]:
        return self._unpickler._opaque_attribute(owner, attribute, self._spelled)

    def __setstate__(self, state: Any) -> None:
        raise UnsafePickle("pickle sets state on getattr")


def load_record(data: bytes) -> tuple[Any, int, frozenset[str]]:
    """Unpickle ``data`` without executing anything it names.

    Returns the unpickled object graph, the scan's flags
    (:data:`~relay.decode.cost_scan.SHARES_OBJECTS` tells whether it is a tree)
    and the Python 2 byte strings that were not UTF-8, as the graph holds them
    (text with surrogate escapes; empty for every frame from Python 3).  The
    graph may contain :class:`OpaqueObject`
    and :class:`ValueStandIn` instances, which :mod:`relay.decode.to_json` turns
    into JSON values.  Raises :class:`UnsafePickle` (or its subclass
    :class:`ForbiddenGlobal`) for streams we refuse, and ``ValueError`` for
    pickles that are merely broken.
    """
    flags = scan(data)
    strings: list[str] = []
    _noted.strings = strings
    try:
        if not flags & NAMES_CLASSES:
            # Nothing in the stream names a class, so no unpickler would look
            # anything up: the stock C loader is safe here, and twice as fast
            # as building a RecordUnpickler.
            obj = pickle.loads(data, encoding="utf-8", errors=_PYTHON2_STR_ERRORS)
        else:
            obj = RecordUnpickler(data).load()
    except UnsafePickle:
        raise
    except RecursionError as exc:  # pragma: no cover - the unpickler is iterative
        raise ValueError("pickle nests too deeply") from exc
    except Exception as exc:
        # The unpickler reports broken input with a zoo of exception types
        # (UnpicklingError, EOFError, TypeError from a stand-in, ...).  The
        # caller needs one: the frame is not a decodable record.
        raise ValueError(f"undecodable pickle: {type(exc).__name__}: {exc}") from exc
    finally:
        _noted.strings = None
    return obj, flags, frozenset(strings)


def safe_loads(data: bytes) -> Any:
    """:func:`load_record` without the flags."""
    return load_record(data)[0]
