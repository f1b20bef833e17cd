"""Hostile and broken pickles: nothing they name runs, nothing they ask for is allocated.

Every payload that would run code is checked twice: ``decode_payload`` refuses
it, and the marker file its command would create does not exist.  The
``test_payload_is_live_*`` controls prove, with the plain ``pickle.loads``,
that those payloads really do run their command, so the negative checks mean
something.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import collections
import contextlib
import copyreg
import datetime as dt
import decimal
import importlib
import io
import ipaddress
import json
import os
import pathlib
import pickle
import random
import subprocess
import sys
import tracemalloc
import types
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from relay.decode import known_types
from relay.decode.cost_scan import NAMES_CLASSES, UnsafePickle, scan
from relay.decode.frames import DecodeLimits, decode_payload
from relay.decode.to_json import RECURSIVE_REFERENCE, DecodeLimitExceeded
from relay.decode.unpickler import ForbiddenGlobal, OpaqueObject, safe_loads

LIMITS = DecodeLimits()
PROTOCOLS = list(range(pickle.HIGHEST_PROTOCOL + 1))


# --------------------------------------------------------------------------- helpers


def decode(payload: bytes, limits: DecodeLimits = LIMITS) -> dict[str, Any]:
    value = json.loads(decode_payload(payload, limits).decode("utf-8"))
    assert isinstance(value, dict)
    return value


def binunicode(text: str) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    return b"X" + len(data).to_bytes(4, "little") + data


def in_record(value_ops: bytes) -> bytes:
    """A pickle of ``{"msg": "hello", "value": <value_ops>}``; value_ops may use opcodes of any protocol."""
    head = b"\x80\x04}" + binunicode("msg") + binunicode("hello") + b"s"
    return head + binunicode("value") + value_ops + b"s."


def record_dumps(value: object, protocol: int) -> bytes:
    return pickle.dumps({"msg": "hello", "args": None, "value": value}, protocol)


class Reduces:
    """Pickles as the call ``func(*args)``: how an attacker writes a payload with pickle.dumps."""

    def __init__(self, func: Callable[..., object], *args: object) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[Any, ...]:
        return self.func, self.args


def touch(path: str) -> None:
    """A real, importable function with a side effect; a pickle may name it, decoding must not call it."""
    pathlib.Path(path).touch()


class SetsOff:
    """Runs code in every hook a normal unpickler calls (constructor and __setstate__)."""

    def __init__(self, marker: str) -> None:
        pathlib.Path(marker).touch()
        self.marker = marker

    def __setstate__(self, state: dict[str, Any]) -> None:
        pathlib.Path(state["marker"]).touch()
        self.__dict__.update(state)


class ConstructsOnLoad(SetsOff):
    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.marker,)


@pytest.fixture
def marker(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a payload ran its command"


# --------------------------------------------------------------------------- code execution


def spellings(module: str, name: str) -> set[str]:
    """``module.name`` as pickle may write it and as an error may report it (Python 2 and 3 spellings)."""
    names = {f"{module}.{name}"}
    for name_map, import_map in (
        (_compat_pickle.NAME_MAPPING, _compat_pickle.IMPORT_MAPPING),
        (_compat_pickle.REVERSE_NAME_MAPPING, _compat_pickle.REVERSE_IMPORT_MAPPING),
    ):
        other_module, other_name = name_map.get((module, name), (import_map.get(module, module), name))
        names.add(f"{other_module}.{other_name}")
    return names


def assert_names_a_global(error: BaseException, *candidates: tuple[str, str]) -> None:
    """The refusal names one of the globals the payload uses (in either spelling)."""
    message = str(error)
    allowed = set().union(*(spellings(module, name) for module, name in candidates))
    assert any(f"forbidden global {name}" in message for name in allowed), (message, allowed)


OS_SYSTEM = ("os", "system")
GETATTR = ("builtins", "getattr")
IMPORT = ("builtins", "__import__")


def _hand_written(m: bytes) -> dict[str, tuple[bytes, tuple[tuple[str, str], ...]]]:
    """Classic payloads as expression opcodes (no STOP), each touching the marker ``m`` if it runs.

    Each comes with the globals a refusal may name: the payload's forbidden ones.
    """
    cmd = b"touch " + m
    code = b"__import__('os').system('" + cmd + b"')"
    s = b"S'" + cmd + b"'\n"
    os_module = b"(S'os'\ntRp0\n0c__builtin__\ngetattr\n(g0\nS'system'\ntR(" + s + b"tR"

    def sbu(text: bytes) -> bytes:  # SHORT_BINUNICODE
        return b"\x8c" + bytes([len(text)]) + text

    return {
        "os.system": (b"cos\nsystem\n(" + s + b"tR", (OS_SYSTEM,)),
        "posix.system": (b"cposix\nsystem\n(" + s + b"tR", (("posix", "system"),)),
        "nt.system": (b"cnt\nsystem\n(" + s + b"tR", (("nt", "system"),)),
        "builtins.eval": (b'c__builtin__\neval\n(S"' + code + b'"\ntR', (("builtins", "eval"),)),
        "builtins.exec": (b'cbuiltins\nexec\n(S"' + code + b'"\ntR', (("builtins", "exec"),)),
        "builtins.getattr": (
            b"c__builtin__\ngetattr\n(c__builtin__\n__import__\n(S'os'\ntRS'system'\ntR(" + s + b"tR",
            (GETATTR, IMPORT),
        ),
        "builtins.__import__": (b"c__builtin__\n__import__\n" + os_module, (IMPORT, GETATTR)),
        "importlib.import_module": (
            b"cimportlib\nimport_module\n" + os_module,
            (("importlib", "import_module"), GETATTR),
        ),
        "subprocess.check_call": (
            b"csubprocess\ncheck_call\n((S'touch'\nS'" + m + b"'\nltR",
            (("subprocess", "check_call"),),
        ),
        "subprocess.Popen": (
            b"csubprocess\nPopen\n((S'touch'\nS'" + m + b"'\nltR",
            (("subprocess", "Popen"),),
        ),
        "os.system via STACK_GLOBAL": (
            sbu(b"os") + sbu(b"system") + b"\x93" + sbu(cmd) + b"\x85R",
            (OS_SYSTEM,),
        ),
        "os.system via INST": (b"(" + s + b"ios\nsystem\n", (OS_SYSTEM,)),
        "os.system via OBJ": (b"(cos\nsystem\n" + s + b"o", (OS_SYSTEM,)),
        "os.path.os.system": (b"(cos.path\nos.system\n" + s + b"o", (("os.path", "os.system"),)),
        "sys.modules": (b"csys\nmodules\n", (("sys", "modules"),)),
        "dunder name": (b"cmyapp\n__class__\n", (("myapp", "__class__"),)),
    }


HAND_WRITTEN = sorted(_hand_written(b"M"))
# The ones that run `touch` under a plain pickle.loads on this platform (nt is Windows-only; Popen
# leaves a child to reap; the rest name something that runs nothing by itself).
LIVE = [
    "os.system",
    "posix.system",
    "builtins.eval",
    "builtins.exec",
    "builtins.getattr",
    "builtins.__import__",
    "importlib.import_module",
    "subprocess.check_call",
    "os.system via STACK_GLOBAL",
    "os.system via INST",
    "os.system via OBJ",
]


def wrap(expr: bytes, how: str) -> bytes:
    if how == "bare":
        return expr + b"."  # no PROTO opcode: the stdlib maps Python 2 names (__builtin__) as for protocol 0
    if how == "in-record":
        return in_record(expr)
    # buried: {"msg": "hello", "value": [1, {"deep": <expr>}]}
    return in_record(b"](K\x01}" + binunicode("deep") + expr + b"se")


@pytest.mark.parametrize("case", LIVE)
def test_payload_is_live_under_plain_pickle(case: str, tmp_path: pathlib.Path) -> None:
    live_marker = tmp_path / f"live-{case.replace(' ', '_')}"
    expr, _ = _hand_written(str(live_marker).encode())[case]

    pickle.loads(wrap(expr, "bare"))  # the control: the stdlib unpickler runs the command

    assert live_marker.exists()


@pytest.mark.parametrize("how", ["bare", "in-record", "buried"])
@pytest.mark.parametrize("case", HAND_WRITTEN)
def test_hand_written_payload_is_refused_naming_the_global(case: str, how: str, marker: pathlib.Path) -> None:
    expr, names = _hand_written(str(marker).encode())[case]

    with pytest.raises(ForbiddenGlobal) as caught:
        decode_payload(wrap(expr, how), LIMITS)

    assert isinstance(caught.value, ValueError)
    assert_names_a_global(caught.value, *names)
    assert not marker.exists()


def test_classic_protocol_0_payload_is_refused(marker: pathlib.Path) -> None:
    payload = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."

    with pytest.raises(ValueError, match=r"forbidden global os\.system"):
        decode_payload(payload, LIMITS)

    assert not marker.exists()


def _file_writers(m: bytes) -> dict[str, bytes]:
    """Names outside the forbidden list that still write a file when a normal unpickler calls them."""
    path = b"(S'" + m + b"'\nS'w'\ntR"
    return {
        "io.open": b"cio\nopen\n" + path,
        "_io.FileIO": b"c_io\nFileIO\n" + path,
        "codecs.open": b"ccodecs\nopen\n" + path,
        "pathlib.PosixPath.touch": (
            b"c__builtin__\ngetattr\n(cpathlib\nPosixPath\nS'touch'\ntR(cpathlib\nPosixPath\n(S'" + m + b"'\ntRtR"
        ),
    }


@pytest.mark.parametrize("case", sorted(_file_writers(b"M")))
def test_file_writer_is_live_under_plain_pickle(case: str, tmp_path: pathlib.Path) -> None:
    live_marker = tmp_path / "live-writer"

    result = pickle.loads(wrap(_file_writers(str(live_marker).encode())[case], "bare"))
    if hasattr(result, "close"):
        result.close()

    assert live_marker.exists()


@pytest.mark.parametrize("case", sorted(_file_writers(b"M")))
def test_names_outside_the_forbidden_list_are_never_called(case: str, marker: pathlib.Path) -> None:
    payload = wrap(_file_writers(str(marker).encode())[case], "in-record")

    try:
        fields = decode(payload)
    except ValueError:
        pass  # refusing is fine too; running it is not
    else:
        assert fields["value"]["__class__"].endswith(case.rpartition(".")[2])
        assert fields["msg"] == "hello"
    assert not marker.exists()


def _reduces(marker: pathlib.Path) -> dict[str, tuple[Callable[..., object], Reduces]]:
    code = f"__import__('os').system('touch {marker}')"
    return {
        "os.system": (os.system, Reduces(os.system, f"touch {marker}")),
        "subprocess.Popen": (subprocess.Popen, Reduces(subprocess.Popen, ["touch", str(marker)])),
        "builtins.eval": (builtins.eval, Reduces(builtins.eval, code)),
        "builtins.exec": (builtins.exec, Reduces(builtins.exec, code)),
        "builtins.__import__": (builtins.__import__, Reduces(builtins.__import__, "os")),
        "importlib.import_module": (importlib.import_module, Reduces(importlib.import_module, "os")),
        # A bound method pickles as getattr(obj, name): this is getattr(PosixPath(marker), "touch")().
        "builtins.getattr": (builtins.getattr, Reduces(pathlib.Path(marker).touch)),
    }


@pytest.mark.parametrize("how", ["bare", "in-record", "buried"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", sorted(_reduces(pathlib.Path("x"))))
def test_stdlib_pickled_payload_is_refused_naming_the_global(
    case: str, protocol: int, how: str, marker: pathlib.Path
) -> None:
    func, evil = _reduces(marker)[case]
    if how == "bare":
        payload = pickle.dumps(evil, protocol)
    elif how == "in-record":
        payload = record_dumps(evil, protocol)
    else:
        payload = record_dumps({"items": [1, 2, {"deep": (evil,)}]}, protocol)
    assert func.__qualname__.encode() in payload

    with pytest.raises(ForbiddenGlobal) as caught:
        decode_payload(payload, LIMITS)

    assert isinstance(caught.value, ValueError)
    assert_names_a_global(caught.value, (func.__module__, func.__qualname__))
    assert not marker.exists()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_getattr_payload_is_live_under_plain_pickle(protocol: int, tmp_path: pathlib.Path) -> None:
    live_marker = tmp_path / "live-getattr"

    pickle.loads(pickle.dumps(Reduces(pathlib.Path(live_marker).touch), protocol))

    assert live_marker.exists()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_importable_function_named_by_a_pickle_is_not_called(protocol: int, marker: pathlib.Path) -> None:
    payload = record_dumps(Reduces(touch, str(marker)), protocol)

    fields = decode(payload)

    assert fields["value"] == {"__class__": f"{__name__}.touch", "args": [str(marker)]}
    assert not marker.exists()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_class_hooks_of_the_sender_never_run(protocol: int, tmp_path: pathlib.Path) -> None:
    sender_marker = tmp_path / "live-sender"
    value = SetsOff(str(sender_marker))
    sender_marker.unlink()  # the constructor ran on the sender; start clean

    fields = decode(record_dumps(value, protocol))

    assert fields["value"] == {"__class__": f"{__name__}.SetsOff", "state": {"marker": str(sender_marker)}}
    assert not sender_marker.exists()
    pickle.loads(record_dumps(value, protocol))  # control: a plain unpickler calls __setstate__
    assert sender_marker.exists()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_constructor_named_by_reduce_never_runs(protocol: int, tmp_path: pathlib.Path) -> None:
    sender_marker = tmp_path / "live-constructor"
    value = ConstructsOnLoad(str(sender_marker))
    sender_marker.unlink()

    fields = decode(record_dumps(value, protocol))

    assert fields["value"] == {"__class__": f"{__name__}.ConstructsOnLoad", "args": [str(sender_marker)]}
    assert not sender_marker.exists()


def test_dangerous_looking_attribute_path_of_an_allowed_module_is_inert(marker: pathlib.Path) -> None:
    # STACK_GLOBAL can name "Path.touch" in module pathlib; it must not resolve to the method.
    expr = b"\x8c\x07pathlib\x8c\nPath.touch\x93" + binunicode(str(marker)) + b"\x85R"

    fields = decode(in_record(expr))

    assert fields["value"] == {"__class__": "pathlib.Path.touch", "args": [str(marker)]}
    assert not marker.exists()


# --------------------------------------------------------------------------- unknown classes stay opaque


OPAQUE_FORMS = {
    "REDUCE": (b"cmyapp.models\nUser\n(Valice\nI7\ntR", {"args": ["alice", 7]}),
    "NEWOBJ+BUILD": (
        b"cmyapp.models\nUser\n)\x81}(" + binunicode("name") + binunicode("alice") + b"ub",
        {"state": {"name": "alice"}},
    ),
    "NEWOBJ_EX": (
        b"\x8c\x0cmyapp.models\x8c\x04User\x93\x8c\x05alice\x85}(\x8c\x02idK\x07u\x92",
        {"args": ["alice"], "kwargs": {"id": 7}},
    ),
    "INST": (b"(Valice\nimyapp.models\nUser\n(dVid\nI7\nsb", {"args": ["alice"], "state": {"id": 7}}),
    "OBJ": (b"(cmyapp.models\nUser\nValice\no(dVid\nI7\nsb", {"args": ["alice"], "state": {"id": 7}}),
    "copy_reg._reconstructor": (
        b"ccopy_reg\n_reconstructor\n(cmyapp.models\nUser\nc__builtin__\nobject\nNtR(dVname\nValice\nsb",
        {"state": {"name": "alice"}},
    ),
    "copyreg._reconstructor": (
        b"ccopyreg\n_reconstructor\n(cmyapp.models\nUser\ncbuiltins\nobject\nNtR}Vname\nValice\nsb",
        {"state": {"name": "alice"}},
    ),
    "_reconstructor of a str subclass": (
        b"ccopy_reg\n_reconstructor\n(cmyapp.models\nUser\nc__builtin__\nstr\nVurgent\ntR",
        {"args": ["urgent"]},
    ),
    "APPENDS": (b"cmyapp.models\nUser\n)R(I1\nI2\ne", {"items": [1, 2]}),
    "SETITEMS": (b"cmyapp.models\nUser\n)R(Vk\nI1\nu", {"items": [["k", 1]]}),
}


@pytest.mark.parametrize("form", sorted(OPAQUE_FORMS))
def test_unknown_class_is_delivered_opaque_without_importing(form: str) -> None:
    expr, parts = OPAQUE_FORMS[form]
    modules_before = set(sys.modules)

    fields = decode(in_record(expr))

    assert fields["value"] == {"__class__": "myapp.models.User", **parts}
    assert "myapp" not in sys.modules
    assert "myapp.models" not in sys.modules
    assert set(sys.modules) - modules_before == set()


def test_getattr_on_an_unknown_class_names_an_opaque_attribute() -> None:
    # How protocols < 4 spell a classmethod call such as myapp.models.User.create("alice").
    expr = b"c__builtin__\ngetattr\n(cmyapp.models\nUser\nVcreate\ntR(Valice\ntR"

    fields = decode(in_record(expr))

    assert fields["value"] == {"__class__": "myapp.models.User.create", "args": ["alice"]}
    assert "myapp" not in sys.modules


@pytest.mark.parametrize(
    "expr",
    [
        pytest.param(b"c__builtin__\ngetattr\n(cmyapp.models\nUser\nV__subclasses__\ntR", id="dunder"),
        pytest.param(b"c__builtin__\ngetattr\n(Vsome text\nVupper\ntR", id="not-a-class"),
        pytest.param(b"c__builtin__\ngetattr\n(c__builtin__\nlist\nVappend\ntR", id="real-builtin-class"),
    ],
)
def test_getattr_reaching_beyond_an_opaque_class_is_refused(expr: bytes) -> None:
    with pytest.raises(ForbiddenGlobal) as caught:
        decode_payload(in_record(expr), LIMITS)

    assert_names_a_global(caught.value, GETATTR)


@pytest.fixture
def fake_app(monkeypatch: pytest.MonkeyPatch) -> type:
    """A class the sender has and the catcher lacks: zzapp.models.User, renamed to myapp in the bytes."""
    package, module = types.ModuleType("zzapp"), types.ModuleType("zzapp.models")

    class User:
        def __init__(self, name: str, ident: int) -> None:
            self.name = name
            self.id = ident

    User.__module__, User.__qualname__ = "zzapp.models", "User"
    module.User = User  # type: ignore[attr-defined]
    package.models = module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "zzapp", package)
    monkeypatch.setitem(sys.modules, "zzapp.models", module)
    return User


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stdlib_pickled_instance_of_an_unknown_class_is_opaque(fake_app: type, protocol: int) -> None:
    sent = record_dumps(fake_app("alice", 7), protocol)
    payload = sent.replace(b"zzapp.models", b"myapp.models")  # same length: every length prefix stays right
    assert b"myapp.models" in payload

    fields = decode(payload)

    assert fields["value"] == {"__class__": "myapp.models.User", "state": {"name": "alice", "id": 7}}
    assert "myapp" not in sys.modules


def test_safe_loads_returns_an_inert_opaque_object() -> None:
    obj = safe_loads(b"\x80\x04" + OPAQUE_FORMS["REDUCE"][0] + b".")

    assert isinstance(obj, OpaqueObject)
    assert obj.qualname == "myapp.models.User"
    assert obj.args == ("alice", 7)
    assert repr(obj) == "<myapp.models.User (opaque)>"


def test_opaque_classes_are_not_cached_across_frames() -> None:
    payload = b"\x80\x04" + OPAQUE_FORMS["REDUCE"][0] + b"."

    first, second = safe_loads(payload), safe_loads(payload)

    assert type(first) is not type(second)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_builtin_exception_in_a_record_is_opaque_under_its_python_3_name(protocol: int) -> None:
    fields = decode(record_dumps(ValueError("bad input", 3), protocol))

    assert fields["value"] == {"__class__": "builtins.ValueError", "args": ["bad input", 3]}


# --------------------------------------------------------------------------- known types, every protocol


class Shape:
    def __init__(self) -> None:
        self.sides = 4
        self.seen = dt.date(2020, 1, 2)


RICH = {
    "aware": dt.datetime(2024, 2, 29, 13, 45, 7, 123456, tzinfo=dt.timezone(dt.timedelta(hours=-3), "BRT")),
    "naive": dt.datetime(1999, 12, 31, 23, 59, 59),
    "date": dt.date(1970, 1, 1),
    "time": dt.time(12, 0, 0, 1, tzinfo=dt.UTC),
    "delta": dt.timedelta(days=3, seconds=7, microseconds=9),
    "decimal": decimal.Decimal("3.14159265358979323846264338327950288"),
    "uuid": uuid.UUID(int=2**127 + 12345),
    "bytes": bytes(range(256)),
    "bytearray": bytearray(b"\x00\xff"),
    "frozenset": frozenset({"only"}),
    "path": pathlib.PurePosixPath("/srv/app/current"),
    "ordered": collections.OrderedDict([("b", 1), ("a", 2)]),
    "ip": ipaddress.IPv6Address("fe80::1"),
    "instance": Shape(),
    "tuple": (1, "two", (3.0, None)),
}


def _expected_rich() -> dict[str, Any]:
    return {
        "aware": RICH["aware"].isoformat(),
        "naive": RICH["naive"].isoformat(),
        "date": RICH["date"].isoformat(),
        "time": RICH["time"].isoformat(),
        "delta": str(RICH["delta"]),
        "decimal": str(RICH["decimal"]),
        "uuid": str(RICH["uuid"]),
        "bytes": repr(RICH["bytes"]),
        "bytearray": repr(bytes(RICH["bytearray"])),
        "frozenset": ["only"],
        "path": str(RICH["path"]),
        "ordered": dict(RICH["ordered"]),
        "ip": str(RICH["ip"]),
        "instance": {"__class__": f"{__name__}.Shape", "state": {"sides": 4, "seen": "2020-01-02"}},
        "tuple": [1, "two", [3.0, None]],
    }


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_known_value_types_render_the_same_at_every_protocol(protocol: int) -> None:
    fields = decode(pickle.dumps({"msg": "rich", **RICH}, protocol))

    assert {key: fields[key] for key in RICH} == _expected_rich()


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        pytest.param(b"cdatetime\ndatetime\n(Vnot bytes\ntR", ["not bytes"], id="datetime-bad-state"),
        pytest.param(b"cdecimal\nDecimal\n(I5\ntR", [5], id="decimal-from-int"),
        pytest.param(b"cdatetime\ntimedelta\n(I999999999999\ntR", [999999999999], id="timedelta-overflow"),
        pytest.param(b"cipaddress\nIPv4Address\n(Vnot an ip\ntR", ["not an ip"], id="bad-ip"),
    ],
)
def test_malformed_known_value_is_kept_as_opaque_arguments(expr: bytes, expected: list[Any]) -> None:
    fields = decode(in_record(expr))

    assert fields["value"]["args"] == expected
    assert fields["msg"] == "hello"


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        pytest.param(
            b"c_codecs\nencode\n(Vx\nVrot13\ntR",
            {"__class__": "builtins.bytes", "args": ["x", "rot13"]},
            id="codecs-encode-other-codec",
        ),
        pytest.param(
            b"c__builtin__\nset\n(Vabc\ntR", {"__class__": "builtins.set", "args": ["abc"]}, id="set-of-a-string"
        ),
    ],
)
def test_stand_in_with_arguments_its_type_never_pickles_is_kept_inert(expr: bytes, expected: dict[str, Any]) -> None:
    # Never executed, never expanded: the record is delivered with the value as the pickle spelled it.
    fields = decode(in_record(expr))

    assert fields["value"] == expected
    assert fields["msg"] == "hello"


def test_builtin_type_stand_in_called_with_arguments_is_kept_inert() -> None:
    fields = decode(in_record(b"c__builtin__\nobject\n(I1\ntR"))

    assert fields["value"] == {"__class__": "builtins.object", "args": [1]}


# --------------------------------------------------------------------------- memory bombs


LONG_BINPUT_BOMB = b"\x80\x02N" + b"r" + (2**31).to_bytes(4, "little") + b"."
MEMO_BOMBS = [
    pytest.param(LONG_BINPUT_BOMB, id="LONG_BINPUT-2**31"),
    pytest.param(b"\x80\x02N" + b"r" + (2**32 - 1).to_bytes(4, "little") + b".", id="LONG_BINPUT-max"),
    pytest.param(in_record(b"N" + b"r" + (2**31).to_bytes(4, "little")), id="LONG_BINPUT-in-record"),
    pytest.param(b"Np" + b"9" * 30 + b"\n.", id="PUT-30-digits"),
    pytest.param(b"Np2147483648\n.", id="PUT-2**31"),
    pytest.param(b"Np4000000000\n.", id="PUT-10-digits"),
    pytest.param(in_record(b"Np99999999999\n"), id="PUT-in-record"),
]


@pytest.mark.parametrize("bomb", MEMO_BOMBS)
def test_memo_index_bomb_is_refused_before_unpickling(bomb: bytes) -> None:
    # Guard first: if the scan ever let this through, decode_payload would hand it to the C
    # unpickler, which allocates a memo table of twice the index (16+ GiB).
    with pytest.raises(UnsafePickle, match="memo index"):
        scan(bomb)

    with pytest.raises(UnsafePickle, match=r"memo index .* out of range"):
        decode_payload(bomb, LIMITS)


def laughs(levels: int, leaf: object = "ha") -> list[Any]:
    node: list[Any] = [leaf]
    for _ in range(levels):
        node = [node, node]
    return node


def test_billion_laughs_is_refused_by_the_depth_limit() -> None:
    payload = pickle.dumps({"msg": "lol", "bomb": laughs(40)}, 1)
    assert len(payload) < 1024  # 2**40 leaves described in under a kilobyte

    with pytest.raises(DecodeLimitExceeded, match="deeper than 32 levels"):
        decode_payload(payload, LIMITS)


def test_billion_laughs_within_the_depth_limit_is_refused_by_the_size_limit() -> None:
    payload = pickle.dumps({"msg": "lol", "bomb": laughs(40)}, 2)
    limits = DecodeLimits(max_depth=64, max_decoded_bytes=64 * 1024)

    with pytest.raises(DecodeLimitExceeded, match="maximum decoded size"):
        decode_payload(payload, limits)


def test_billion_laughs_with_large_leaves_is_refused_at_default_limits() -> None:
    payload = pickle.dumps({"msg": "lol", "bomb": laughs(30, "x" * 4096)}, 2)
    assert len(payload) < 8192

    with pytest.raises(ValueError, match="maximum decoded size"):
        decode_payload(payload, LIMITS)


def test_dict_laughs_are_refused() -> None:
    node: dict[str, Any] = {"leaf": "ha"}
    for _ in range(40):
        node = {"a": node, "b": node}

    limits = DecodeLimits(max_depth=64, max_decoded_bytes=64 * 1024)

    with pytest.raises(DecodeLimitExceeded, match="maximum decoded size"):
        decode_payload(pickle.dumps({"msg": "lol", "bomb": node}, 4), limits)


def test_copying_stand_ins_cannot_amplify_a_small_pickle_into_a_large_allocation() -> None:
    # list(<memo'd 4 KiB str>) 1000 times: 10 KiB of pickle, ~33 MB of lists on the unpickler stack.
    text = "a" * 4096
    payload = (
        b"\x80\x02}" + binunicode("msg") + binunicode("m") + b"s" + binunicode("value")
        + b"(c__builtin__\nlist\nq\x01" + binunicode(text) + b"q\x00"
        + b"h\x01h\x00\x85R" * 1000 + b"ls."
    )  # fmt: skip
    assert len(payload) < 12 * 1024
    limits = DecodeLimits(max_decoded_bytes=64 * 1024)

    tracemalloc.start()
    try:
        with contextlib.suppress(ValueError):  # refusing the frame is fine; what it costs is the question
            decode_payload(payload, limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak < 8 * 1024 * 1024


# --------------------------------------------------------------------------- recursion and depth


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_self_referencing_list_and_dict_render_as_recursive_reference(protocol: int) -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    knot: dict[str, Any] = {"a": 1}
    knot["self"] = knot
    record: dict[str, Any] = {"msg": "loops", "loop": loop, "knot": knot}
    record["record"] = record

    fields = decode(pickle.dumps(record, protocol))

    assert fields["loop"] == [1, RECURSIVE_REFERENCE]
    assert fields["knot"] == {"a": 1, "self": RECURSIVE_REFERENCE}
    assert fields["record"] == RECURSIVE_REFERENCE
    assert fields["msg"] == "loops"


def test_mutual_recursion_through_an_opaque_object_is_cut() -> None:
    shape = Shape()
    shape.self_ref = [shape]  # type: ignore[attr-defined]

    fields = decode(record_dumps(shape, 1))

    assert fields["value"]["state"]["self_ref"] == [RECURSIVE_REFERENCE]


def nested(levels: int) -> object:
    value: object = "leaf"
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_nesting_deeper_than_max_depth_is_refused(protocol: int) -> None:
    deep = pickle.dumps({"msg": "deep", "value": nested(40)}, protocol)
    fits = pickle.dumps({"msg": "deep", "value": nested(31)}, protocol)

    with pytest.raises(DecodeLimitExceeded, match="deeper than 32 levels"):
        decode_payload(deep, LIMITS)
    assert decode(fits)["value"] == nested(31)


def test_nesting_inside_opaque_state_counts_towards_the_depth() -> None:
    shape = Shape()
    shape.tree = nested(40)  # type: ignore[attr-defined]

    with pytest.raises(DecodeLimitExceeded, match="deeper than"):
        decode_payload(record_dumps(shape, 2), LIMITS)


# --------------------------------------------------------------------------- opcodes no record carries


class _Row:
    pass


ROW = _Row()


class _PersistentPickler(pickle.Pickler):
    def persistent_id(self, obj: object) -> str | None:
        return "row-7" if obj is ROW else None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_persistent_ids_are_refused(protocol: int) -> None:
    buffer = io.BytesIO()
    _PersistentPickler(buffer, protocol).dump({"msg": "db row", "row": ROW})
    opcode = "PERSID" if protocol == 0 else "BINPERSID"

    with pytest.raises(UnsafePickle, match=f"opcode {opcode} is not allowed"):
        decode_payload(buffer.getvalue(), LIMITS)


class Registered:
    pass


@pytest.mark.parametrize(("code", "opcode"), [(0xF1, "EXT1"), (0xF1F1, "EXT2"), (0x0F1F1F1F, "EXT4")])
def test_extension_registry_codes_are_refused(code: int, opcode: str) -> None:
    copyreg.add_extension(__name__, "Registered", code)
    try:
        payload = pickle.dumps({"msg": "ext", "cls": Registered}, 2)
    finally:
        copyreg.remove_extension(__name__, "Registered", code)

    with pytest.raises(UnsafePickle, match=f"opcode {opcode} is not allowed"):
        decode_payload(payload, LIMITS)


@pytest.mark.parametrize("data", [bytearray(b"abc"), b"abc"], ids=["writable", "readonly"])
def test_out_of_band_buffers_are_refused(data: bytes | bytearray) -> None:
    buffers: list[pickle.PickleBuffer] = []
    payload = pickle.dumps({"msg": "buf", "buf": pickle.PickleBuffer(data)}, 5, buffer_callback=buffers.append)
    assert buffers  # the pickle really refers to an out-of-band buffer

    with pytest.raises(UnsafePickle, match="opcode NEXT_BUFFER is not allowed"):
        decode_payload(payload, LIMITS)


# --------------------------------------------------------------------------- broken input


def _sample_record(protocol: int) -> bytes:
    return pickle.dumps(
        {
            "msg": "order 7 shipped",
            "args": None,
            "levelno": 20,
            "created": 1700000000.25,
            "when": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
            "amount": decimal.Decimal("9.99"),
            "tags": {"x", "y"},
            "blob": b"\x00\x01",
            "nested": {"a": [1, 2, (3, 4)]},
        },
        protocol,
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_truncation_is_a_value_error(protocol: int) -> None:
    payload = _sample_record(protocol)
    decode(payload)  # the whole pickle is fine

    for cut in range(len(payload)):
        with pytest.raises(ValueError, match=r"truncated|undecodable"):
            decode_payload(payload[:cut], LIMITS)


@pytest.mark.parametrize("seed", range(4))
def test_random_garbage_is_a_value_error_or_a_record(seed: int) -> None:
    rng = random.Random(seed)

    for _ in range(2000):
        garbage = rng.randbytes(rng.randint(0, 64))
        try:
            result = decode_payload(garbage, LIMITS)
        except ValueError:
            continue
        assert isinstance(json.loads(result), dict)  # a few bytes can spell "}." (an empty record)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_mutated_records_are_a_value_error_or_a_record(protocol: int) -> None:
    rng = random.Random(protocol)
    payload = _sample_record(protocol)

    for _ in range(1500):
        mutated = bytearray(payload)
        for _ in range(rng.randint(1, 3)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        try:
            result = decode_payload(bytes(mutated), LIMITS)
        except ValueError:
            continue
        assert isinstance(json.loads(result), dict)


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (["a", "list"], "list"),
        (("a", "tuple"), "tuple"),
        ("a string", "str"),
        (None, "NoneType"),
        (42, "int"),
        ({"a"}, "set"),
    ],
)
def test_a_payload_that_is_not_a_dict_is_refused_with_its_type(value: object, name: str) -> None:
    for protocol in PROTOCOLS:
        with pytest.raises(ValueError, match=f"payload is a pickled {name}, not a record dict"):
            decode_payload(pickle.dumps(value, protocol), LIMITS)


@pytest.mark.parametrize("record", [{1: "one", "msg": "m"}, {b"msg": "py2 bytes key"}, {("a",): 1}])
def test_a_record_dict_with_non_string_keys_is_refused(record: dict[Any, Any]) -> None:
    with pytest.raises(ValueError, match="record dict has non-string keys"):
        decode_payload(pickle.dumps(record, 2), LIMITS)


def test_nested_dicts_may_have_non_string_keys() -> None:
    fields = decode(record_dumps({1: "one", None: "none", False: "no", 2.5: "x"}, 2))

    assert fields["value"] == {"1": "one", "null": "none", "false": "no", "2.5": "x"}


@pytest.mark.parametrize("sign", [1, -1])
def test_huge_int_does_not_break_json_encoding(sign: int) -> None:
    body = b"\xff" * 99_999 + b"\x7f"  # LONG4 with 100 000 bytes: a positive int of 799 999 bits
    if sign < 0:
        body = b"\x01" + b"\x00" * 99_998 + b"\x80"
    value = int.from_bytes(body, "little", signed=True)
    assert (value > 0) == (sign > 0)
    payload = in_record(b"\x8b" + len(body).to_bytes(4, "little") + body)

    fields = decode(payload)

    assert fields["value"] == f"<int of {value.bit_length()} bits>"
    assert fields["msg"] == "hello"


def test_protocol_0_string_with_invalid_utf8_is_delivered_as_bytes() -> None:
    # A Python 2 str is bytes: one that is not UTF-8 renders as Python 3's
    # bytes do (and as Python 3 logging formats a bytes msg: str(msg)).
    payload = b"(dS'msg'\nS'caf\\xe9 \\xff'\nsS'levelno'\nI20\ns."

    fields = decode(payload)

    assert fields["msg"] == "b'caf\\xe9 \\xff'"
    assert fields["levelno"] == 20


def test_protocol_0_string_that_is_utf8_is_delivered_as_text() -> None:
    payload = b"(dS'msg'\nS'caf\\xc3\\xa9'\nsS'levelno'\nI20\ns."

    assert decode(payload)["msg"] == "caf\u00e9"


def test_unicode_with_a_lone_surrogate_stays_text_beside_a_python2_byte_string() -> None:
    # BINUNICODE 'x\udcff' (text, from Python 3 or a Python 2 unicode) and a
    # SHORT_BINSTRING of the bytes 61 FF (Python 2 bytes) in one record.
    # (Text equal to a byte string's decoding would render as bytes too:
    # docs/stream-format.md says so.)
    payload = b"(dU\x03msgX\x04\x00\x00\x00x\xed\xb3\xbfsU\x04blobU\x02a\xffs."

    fields = decode(payload)

    assert fields["msg"] == "x\udcff"
    assert fields["blob"] == "b'a\\xff'"


# --------------------------------------------------------------------------- the class-free fast path

CLASS_FREE_CALLS = {
    # REDUCE, BUILD, NEWOBJ and NEWOBJ_EX with only built-in values on the
    # stack: with no class named there is no callable to reach.
    "REDUCE on a str": b"(S'os.system'\n(S'echo pwned'\ntR.",
    "REDUCE on a list": b"](S'x'\ntR.",
    "BUILD on a dict": b"}(S'__class__'\nS'x'\ndb.",
    "BUILD on a str": b"S'x'\n}b.",
    "NEWOBJ on a str": b"\x80\x02U\x01x)\x81.",
    "NEWOBJ_EX on a tuple": b"\x80\x04)))}\x92.",
}


@pytest.mark.parametrize("payload", CLASS_FREE_CALLS.values(), ids=list(CLASS_FREE_CALLS))
def test_class_free_pickles_that_call_something_only_fail(payload: bytes) -> None:
    assert not scan(payload) & NAMES_CLASSES  # so the stock loader takes them
    with pytest.raises(ValueError, match="undecodable pickle"):
        safe_loads(payload)


# --------------------------------------------------------------------------- no process-wide state from a frame

# Every class find_class can hand a frame: the shared stand-ins, an opaque
# class (per frame) and the getattr stand-in.
SHARED_NAMES = sorted(
    {f"{module}\n{name}" for module, name in known_types.KNOWN} | {"myapp\nThing", "builtins\ngetattr"}
)


def build_on_global(name: str, state: bytes) -> bytes:
    """A record whose value is the class ``name`` itself, BUILT with ``state``."""
    return in_record(b"c" + name.encode() + b"\n" + state + b"b")


def slot_state(**attributes: str) -> bytes:
    """(None, {attribute: text}): BUILD's slot state, which the unpickler setattr()s when there is no __setstate__."""
    pairs = b"".join(binunicode(key) + binunicode(value) for key, value in attributes.items())
    return b"N}(" + pairs + b"u\x86"


def shared_state() -> dict[str, object]:
    """What a frame could change for the next one: every shared stand-in's attributes, and the table itself."""
    return {
        "known": dict(known_types.KNOWN),
        **{f"{cls.__module__}.{cls.__qualname__}": dict(vars(cls)) for cls in set(known_types.KNOWN.values())},
    }


@pytest.mark.parametrize("name", SHARED_NAMES)
@pytest.mark.parametrize("form", ["slot state", "dict state"])
def test_build_on_a_class_changes_nothing_for_the_next_frame(name: str, form: str) -> None:
    before = shared_state()
    honest = in_record(b"c__builtin__\nstr\n")  # extra={"value": str}: a type logged as a value
    rendered = decode(honest)
    state = slot_state(qualname="PWNED", rebuild="PWNED", __init__="x") if form == "slot state" else b"}"
    state += b"" if form == "slot state" else binunicode("qualname") + binunicode("PWNED") + b"s"

    with contextlib.suppress(ValueError):
        decode_payload(build_on_global(name, state), LIMITS)

    assert shared_state() == before
    assert decode(honest) == rendered
    assert "PWNED" not in json.dumps(rendered)


def test_shared_stand_ins_are_frozen_and_the_table_read_only() -> None:
    for cls in set(known_types.KNOWN.values()):
        with pytest.raises(TypeError, match="immutable"):
            cls.qualname = "x"  # type: ignore[misc]
        with pytest.raises(TypeError, match="immutable"):
            del cls.qualname  # type: ignore[misc]
    with pytest.raises(TypeError):
        known_types.KNOWN[("os", "system")] = OpaqueObject  # type: ignore[index]


def test_stand_ins_hash_and_compare_by_identity() -> None:
    # The cost scan charges nothing for hashing an object a stand-in made:
    # that is only true while none of them defines its own __hash__ or __eq__.
    for cls in {OpaqueObject, *known_types.KNOWN.values()}:
        assert cls.__hash__ is object.__hash__, cls
        assert cls.__eq__ is object.__eq__, cls


def test_large_slot_state_on_a_class_is_not_kept_across_frames() -> None:
    # 200 frames of ~0.9 MB each once grew the catcher by ~200 MiB for good.
    frame = build_on_global("builtins\nobject", slot_state(**{f"a{i}": "x" * 4500 for i in range(200)}))
    assert len(frame) > 900_000
    tracemalloc.start()
    try:
        for _ in range(20):
            with contextlib.suppress(ValueError):
                decode_payload(frame, LIMITS)
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept < 1_000_000, f"{kept} bytes still held after 20 frames"
