"""The amplifier corpus: frames that try to buy more CPU or memory than their bytes should.

Each :class:`Amplifier` is a hostile pickle payload (the body of one
SocketHandler frame, within the default 1 MiB frame limit) and what the
catcher must do with it: refuse it with a reason (a dead letter) or deliver
it as an inert record.  They are the attacks found against the decoder (an
independent sanitizer build, a differential fuzzer, a live catcher under
attack) and more of the same kinds.  Used by the tests (each case, decoder
alone and live catcher), by ``bench/frame_cost.py`` (CPU and peak memory per
frame) and as seeds of ``tests/fuzz/cost.py``.
"""

from __future__ import annotations

import logging
import logging.handlers
import struct
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["AMPLIFIERS", "Amplifier", "amplifier", "frame", "honest_payload"]

MAX_FRAME = 1024 * 1024


@dataclass(frozen=True)
class Amplifier:
    """One hostile payload and the verdict the decoder must reach."""

    name: str
    what: str
    build: Callable[[], bytes]
    #: A regular expression the dead letter's reason must match; None: delivered as a record.
    refused: str | None


#: Every case, in the order defined.
AMPLIFIERS: list[Amplifier] = []


def amplifier(name: str, refused: str | None) -> Callable[[Callable[[], bytes]], Callable[[], bytes]]:
    """Register the decorated payload builder as a case; its docstring says what it tries."""

    def register(build: Callable[[], bytes]) -> Callable[[], bytes]:
        AMPLIFIERS.append(Amplifier(name, " ".join((build.__doc__ or "").split()), build, refused))
        return build

    return register


def frame(payload: bytes) -> bytes:
    """The payload as SocketHandler sends it: a 4-byte big-endian length first."""
    return struct.pack(">I", len(payload)) + payload


def sbu(text: bytes) -> bytes:
    """SHORT_BINUNICODE."""
    return b"\x8c" + bytes([len(text)]) + text


def bu(text: bytes) -> bytes:
    """BINUNICODE."""
    return b"X" + struct.pack("<I", len(text)) + text


def get(index: int) -> bytes:
    return b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index)


def record(value_ops: bytes) -> bytes:
    """``{"msg": "attack", "v": <value_ops>}``."""
    return b"\x80\x04}" + sbu(b"msg") + sbu(b"attack") + b"s" + sbu(b"v") + value_ops + b"s."


def fill_to(build: Callable[[int], bytes], limit: int = MAX_FRAME - 64) -> bytes:
    """The largest ``build(n)`` that fits in ``limit`` bytes (n found by doubling, then bisection)."""
    low, high = 1, 2
    while len(build(high)) <= limit:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if len(build(middle)) <= limit:
            low = middle
        else:
            high = middle
    return build(low)


def honest_payload(message_bytes: int = 0) -> bytes:
    """A real SocketHandler record (its message padded to ``message_bytes``), for comparison."""
    record_ = logging.LogRecord("app.web", logging.INFO, "/srv/app/web.py", 42, "%s took %d ms", ("u1", 7), None)
    if message_bytes:
        record_.msg = "x" * message_bytes
        record_.args = None
    handler = logging.handlers.SocketHandler("127.0.0.1", 9)
    try:
        return handler.makePickle(record_)[4:]
    finally:
        handler.close()


# -- the cases ---------------------------------------------------------------------


@amplifier("float-text-at-block-end", None)
def float_text_at_block_end() -> bytes:
    """The float is node 255, the last of the C parser's first block: its 24-character text once wrote a NUL into the
    byte after the block.
    """
    value = struct.pack(">d", -1.2345678901234567e-308)
    return b"\x80\x02}X\x01\x00\x00\x00a](" + b"K\x01" * 252 + b"G" + value + b"es."


@amplifier("float-nul-into-mark", "stack underflow")
def float_nul_into_mark() -> bytes:
    """The attack of the report: the stray NUL turned the MARK at the stack's bottom into -256, and TUPLE2 then wrote 8
    KiB before the node array.
    """
    value = struct.pack(">d", -1.2345678901234567e-308)
    return b"\x80\x02(}X\x01\x00\x00\x00a](" + b"K\x01" * 252 + b"G" + value + b"es\x86."


@amplifier("hash-flood-tuples", "weigh more than")
def hash_flood_tuples() -> bytes:
    """Two memoised ints with equal hashes (-1 and -2) combined into tuple keys through memo GETs: every key collides;
    17-18 s of CPU once.
    """
    head = b"\x80\x02}" + bu(b"v") + b"}" + b"J\xff\xff\xff\xffq\x000J\xfe\xff\xff\xffq\x010("

    def build(count: int) -> bytes:
        keys = b"".join(b"(" + b"".join(get((i >> bit) & 1) for bit in range(16)) + b"tN" for i in range(count))
        return head + keys + b"us."

    return fill_to(build, 261 * 1024)


@amplifier("shared-tuple-key", "weigh more than")
def shared_tuple_key() -> bytes:
    """t = (t, t) sixty times: a 133-byte key whose hash visits 2**60 items."""
    return b"\x80\x02}" + bu(b"v") + b"}K\x01\x85" + b"2\x86" * 60 + b"Nss."


@amplifier("slot-state-on-a-class", "undecodable pickle")
def slot_state_on_a_class() -> bytes:
    """BUILD with slot state on builtins.object's stand-in: setattr on a shared class, so later records rendered the
    attacker's text and memory grew.
    """
    pairs = b"".join(bu(b"a%d" % i) + bu(b"x" * 4500) for i in range(200))
    return record(b"c__builtin__\nobject\nN}(" + pairs + b"u\x86b")


@amplifier("zone-referenced-15k-times", None)
def zone_referenced_many_times() -> bytes:
    """One time with a zone that does not exist, referenced 15,000 times: each rebuild looked the zone up again (~60 µs
    each).
    """
    zone = b"cbuiltins\ngetattr\nczoneinfo\nZoneInfo\n" + sbu(b"_unpickle") + b"\x86R(" + sbu(b"No/Such_Zone")
    time = b"cdatetime\ntime\n(C\x06\x0c\x00\x00\x00\x00\x00" + zone + b"K\x01tRtR\x94"
    return record(b"]" + time + b"0(" + get(0) * 15_000 + b"e")


@amplifier("many-zones", "more than 8 time zones")
def many_zones() -> bytes:
    """Distinct missing zones, one per datetime: each a lookup of its own."""
    getattr_ = b"cbuiltins\ngetattr\nczoneinfo\nZoneInfo\n" + sbu(b"_unpickle") + b"\x86R\x94"
    times = b"".join(
        b"cdatetime\ntime\n(C\x06\x0c\x00\x00\x00\x00\x00" + get(0) + b"(" + sbu(b"No/Zone_%d" % i) + b"K\x01tRtR"
        for i in range(300)
    )
    return record(b"]" + getattr_ + b"0(" + times + b"e")


@amplifier("same-shape-keys", None)
def same_shape_keys() -> bytes:
    """32,767 str keys of one length with the same first and last byte: the C fast path's duplicate check went through
    them all for each (2.4 s/MiB).
    """
    keys = b"".join(bu(b"a%05da" % i) + b"N" for i in range(32_767))
    return b"\x80\x02}(" + keys + b"u."


@amplifier("empty-sets", "more than 65536 objects")
def empty_sets() -> bytes:
    """One byte per set: ~270 MiB of peak memory for a 1 MiB frame once."""
    return b"\x80\x04" + b"\x8f" * (MAX_FRAME - 16) + b"."


@amplifier("empty-dicts-in-a-list", "more than 65536 objects")
def empty_dicts_in_a_list() -> bytes:
    """A megabyte of EMPTY_DICT opcodes, appended."""
    return record(b"](" + b"}" * (MAX_FRAME - 64) + b"e")


@amplifier("opaque-appends", "stand-in calls")
def opaque_appends() -> bytes:
    """APPEND on an object a stand-in made: a call into Python per item."""
    return record(fill_to(lambda n: b"cmyapp\nThing\n)\x81" + b"Na" * n, MAX_FRAME - 64))


@amplifier("opaque-setitems", "stand-in calls")
def opaque_setitems() -> bytes:
    """SETITEM on a stand-in's object, pair by pair."""
    return record(fill_to(lambda n: b"cmyapp\nThing\n)\x81" + b"NNs" * n, MAX_FRAME - 64))


@amplifier("find-class-flood", "stand-in calls")
def find_class_flood() -> bytes:
    """find_class (Python) once per STACK_GLOBAL, the names shared through the memo."""
    head = b"]" + sbu(b"myapp") + b"\x940" + sbu(b"Thing") + b"\x940("
    return record(fill_to(lambda n: head + (get(0) + get(1) + b"\x93") * n + b"e", MAX_FRAME - 64))


@amplifier("reduce-shared-arguments", "stand-in calls")
def reduce_with_shared_arguments() -> bytes:
    """A 4,000-item argument tuple reused by every call: *args copies it each time."""
    head = b"]cmyapp\nThing\n\x94(" + b"N" * 4000 + b"t\x94("
    return record(fill_to(lambda n: head + (get(0) + get(1) + b"R") * n + b"e", MAX_FRAME - 64))


@amplifier("decimals-sharing-digits", "maximum decoded size")
def decimals_sharing_digits() -> bytes:
    """Each Decimal parses the same 400,000 digits again."""
    head = b"]cdecimal\nDecimal\n\x940" + bu(b"9" * 400_000) + b"\x940("
    return record(head + (get(0) + get(1) + b"\x85R") * 1000 + b"e")


@amplifier("path-of-shared-parts", "maximum decoded size")
def path_of_shared_parts() -> bytes:
    """One pure path joined from 5,000 references to one 100,000-character part."""
    return record(b"cpathlib\nPurePosixPath\n(" + bu(b"p" * 100_000) + b"\x94" + get(0) * 5000 + b"tR")


@amplifier("repeated-lists", "beyond 65536 values|maximum decoded size")
def repeated_lists() -> bytes:
    """A list of 1,000 references to a list of 1,000 references: a million values to walk."""
    inner = b"(" + sbu(b"x") + b"\x94" + get(0) * 999 + b"l\x940"
    return record(inner + b"(" + get(1) * 1000 + b"l")


@amplifier("mappings-of-mappings", "beyond 65536 values")
def mappings_of_mappings() -> bytes:
    """OrderedDict(m, m, ...) of OrderedDict(m, m, ...): 16 million expansions, no pair at all."""
    empty = b"ccollections\nOrderedDict\n\x94)R\x940"
    middle = get(0) + b"(" + get(1) * 4000 + b"tR\x940"
    return record(empty + middle + get(0) + b"(" + get(2) * 4000 + b"tR")


@amplifier("many-empty-lists", None)
def many_empty_lists() -> bytes:
    """32,000 distinct empty lists: as many containers as a walk may visit, each created and walked."""
    return record(b"](" + b"]" * 32_000 + b"e")


@amplifier("too-many-empty-lists", "beyond 65536 values")
def too_many_empty_lists() -> bytes:
    """60,000 distinct empty lists: within the objects a record may create, beyond the visits of a walk."""
    return record(b"](" + b"]" * 60_000 + b"e")


@amplifier("references-to-one-dict", None)
def references_to_one_dict() -> bytes:
    """32,000 references to one empty dict: two visits each (the most a walk may make: the costliest way to spend
    them), nothing created.
    """
    return record(b"}\x940](" + get(0) * 32_000 + b"e")


@amplifier("references-past-the-budget", "beyond 65536 values")
def references_past_the_budget() -> bytes:
    """33,000 references to one dict."""
    return record(b"}\x940](" + get(0) * 33_000 + b"e")


@amplifier("many-opaque-objects", None)
def many_opaque_objects() -> bytes:
    """Instances of an unknown class, as many as the call budget allows, each with an argument."""
    return record(b"cmyapp\nThing\n\x940](" + (get(0) + b"N\x85R") * 4000 + b"e")


@amplifier("decimal-int-texts", "digits of decimal ints")
def decimal_int_texts() -> bytes:
    """LONG text of 4,300 digits, parsed in quadratic time, as often as fits."""
    return record(fill_to(lambda n: b"](" + (b"L" + b"7" * 4299 + b"L\n") * n + b"e", MAX_FRAME - 64))


@amplifier("big-ints-to-write", "big integers")
def big_ints_to_write() -> bytes:
    """4,000-digit ints (binary, cheap to read) whose decimal text costs quadratic time to write."""
    number = 7**4700
    data = number.to_bytes((number.bit_length() + 8) // 8, "little", signed=True)
    one = b"\x8b" + struct.pack("<i", len(data)) + data
    return record(fill_to(lambda n: b"](" + one * n + b"e", MAX_FRAME - 64))


@amplifier("colliding-int-keys", "weigh more than")
def colliding_int_keys() -> bytes:
    """4,095 ints that hash alike, the most the old number limit allowed."""
    keys = b""
    for j in range(1, 4096):
        key = j * (2**61 - 1)
        data = key.to_bytes((key.bit_length() + 8) // 8, "little", signed=True)
        keys += b"\x8a" + bytes([len(data)]) + data + b"N"
    return record(b"}(" + keys + b"u")


@amplifier("memo-index-bomb", "memo index .* out of range")
def memo_index_bomb() -> bytes:
    """Seven bytes that asked the C unpickler for a memo table of 16 GiB."""
    return b"\x80\x02Nr\x00\x00\x00\x80."


@amplifier("billion-laughs", "nests deeper|beyond 65536 values|maximum decoded size")
def billion_laughs() -> bytes:
    """Lists of two references to the list before, 60 levels deep."""
    body = sbu(b"lol") + b"\x940"
    for level in range(60):
        body += b"(" + get(level) * 2 + b"l\x940"
    return record(body + get(60))


@amplifier("deep-nesting", "nests deeper")
def deep_nesting() -> bytes:
    """100,000 nested lists."""
    return record(b"]" * 60_000 + b"a" * 59_999)


@amplifier("long-attribute-chain", "distinct globals")
def long_attribute_chain() -> bytes:
    """getattr(getattr(Class, "aaa..."), "aaa...") ...: each level a new class with a longer name."""
    body = b"cbuiltins\ngetattr\n\x940cmyapp\nThing\n"
    for level in range(1, 301):
        body += b"\x940" + get(0) + b"(" + get(level) + bu(b"a" * 200) + b"tR"
    return record(body)


@amplifier("honest-typical", None)
def honest_typical() -> bytes:
    """A real SocketHandler record (reference)."""
    return honest_payload()


@amplifier("honest-megabyte", None)
def honest_megabyte() -> bytes:
    """A real record with a 1 MiB message (reference)."""
    return honest_payload(MAX_FRAME - 2048)


assert len({case.name for case in AMPLIFIERS}) == len(AMPLIFIERS)
