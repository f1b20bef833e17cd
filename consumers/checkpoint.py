"""The checkpoint of the central file: what it holds, up to which entry, in which file.

``PATH.checkpoint`` holds ``{"seq": S, "offset": N, "last_id": "<stream
id>", "dev": D, "ino": I, "producers": {TOKEN: N, ...}, "format": F, "crc":
C}``: "the first N bytes of the file with device D and inode I hold exactly
the entries up to last_id, and of each producer's records (their ``seq``
field, see :mod:`relay.common.stream`) those numbered up to N, as lines of
``--format`` F".  A slot without ``format`` (an earlier version's) leaves it
unknown: the consumer then adopts its own (:mod:`consumers.file_sink`).  The producers make the
file exactly-once across a Redis failover: records it holds that the new
master lost come back from their catcher under new stream ids, and are
known by their numbers (:mod:`consumers.batch_renderer` skips them).  At most
:data:`MAX_PRODUCERS` are kept, those that wrote last.

It is written in place, in two slots taken in turn (at offsets 0 and
:data:`SLOT_BLOCK`), so that a write torn by a crash or a power loss reaches
one slot: its CRC fails and the other slot, one sync older, is used
(:func:`read_checkpoint`).  One fdatasync per checkpoint, where replacing a
file by rename took two fsyncs and a directory fsync.  Earlier versions
kept their second slot at 4 KiB; it is read too, and the first slot written
after it is the one at SLOT_BLOCK.  :class:`consumers.file_sink.FileSink`
writes it.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final

from relay.common.stream import SEQ_TOKEN

__all__ = [
    "MAX_PRODUCERS",
    "NO_PRODUCERS",
    "SLOT_BLOCK",
    "Checkpoint",
    "Producers",
    "encode_slot",
    "merge_producers",
    "read_checkpoint",
    "read_checkpoint_slot",
    "stream_id_key",
]

#: A checkpoint's producers: token → the number of its last record in the file.
Producers = Mapping[str, int]

#: Producers a checkpoint remembers.  A catcher sends records again only
#: after a failover, those it was still holding: the producers that wrote
#: last are the ones that can; the oldest beyond this many are forgotten.
MAX_PRODUCERS: Final = 1024

NO_PRODUCERS: Final[Producers] = MappingProxyType({})
_TOKEN: Final = re.compile(SEQ_TOKEN)


def merge_producers(producers: Producers, updates: Mapping[str, int]) -> tuple[Producers, bool]:
    """``producers`` with ``updates`` applied (the higher number kept), the updated ones last, at most
    MAX_PRODUCERS; and whether one was forgotten to keep to that."""
    if not updates:
        return producers, False
    merged = dict(producers)
    for token, number in updates.items():
        merged[token] = max(merged.pop(token, 0), number)
    forgotten = list(merged)[: max(0, len(merged) - MAX_PRODUCERS)]
    for token in forgotten:
        del merged[token]
    return MappingProxyType(merged), bool(forgotten)


def stream_id_key(entry_id: bytes | str) -> tuple[int, int]:
    """Order stream ids numerically: ``b"1700000000000-12"`` → ``(1700000000000, 12)``."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    offset: int = 0
    last_id: str = "0-0"
    #: The file it covers, by device and inode (0, 0: not known, from an earlier version).
    device: int = field(default=0, compare=False)
    inode: int = field(default=0, compare=False)
    #: Of each producer, the number of its last record in the file (in insertion order: least recent first).
    producers: Producers = field(default_factory=lambda: NO_PRODUCERS, compare=False)
    #: A record of a producer not in ``producers`` is in the file if its stream id is at or below this: the
    #: last_id when the file had no producers yet (written by a version before identities), or when one was
    #: forgotten (beyond MAX_PRODUCERS).
    floor: str = field(default="0-0", compare=False)
    #: The ``--format`` the file's lines are written with (``json`` or a logging format); None: not known.
    line_format: str | None = field(default=None, compare=False)
    # last_id as stream_id_key orders it, parsed once: covers() runs per entry.
    _last_key: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_last_key", stream_id_key(self.last_id))

    def covers(self, entry_id: bytes) -> bool:
        """True if the entry is already in the file (by its stream id)."""
        return stream_id_key(entry_id) <= self._last_key


# The checkpoint file: two slots, each a line of JSON, at offsets 0 and
# SLOT_BLOCK (and, from earlier versions, OLD_SLOT); a slot's line ends at
# its first newline, and is at most SLOT_BLOCK bytes.
SLOT_BLOCK: Final = 65536
#: Where earlier versions kept their second slot.
OLD_SLOT: Final = 4096
SLOT_OFFSETS: Final = (0, OLD_SLOT, SLOT_BLOCK)


_SLOT_KEYS: Final = frozenset({"seq", "offset", "last_id", "dev", "ino", "crc"})
#: Slots written before the checkpoint named its file.
_SLOT_KEYS_UNNAMED: Final = frozenset({"seq", "offset", "last_id", "crc"})
#: Keys a slot may lack (written before they existed, or with nothing to say).
_OPTIONAL_KEYS: Final = frozenset({"producers", "floor", "format"})


def _slot_body(seq: int, checkpoint: Checkpoint) -> str:
    body: dict[str, object] = {"seq": seq, "offset": checkpoint.offset, "last_id": checkpoint.last_id}
    if checkpoint.inode:
        body["dev"] = checkpoint.device
        body["ino"] = checkpoint.inode
    if checkpoint.producers:
        body["producers"] = dict(checkpoint.producers)
    if checkpoint.floor != "0-0":
        body["floor"] = checkpoint.floor
    if checkpoint.line_format is not None:
        body["format"] = checkpoint.line_format
    return json.dumps(body, separators=(",", ":"))


def encode_slot(seq: int, checkpoint: Checkpoint) -> bytes:
    """One slot's line: the checkpoint and its sequence number as JSON, with a CRC, and a newline."""
    body = _slot_body(seq, checkpoint)
    line = f'{body[:-1]},"crc":{zlib.crc32(body.encode())}}}\n'.encode()
    if len(line) > SLOT_BLOCK:
        raise ValueError(f"checkpoint too long for its slot: {len(line)} bytes")
    return line


def _producers(value: object) -> Producers | None:
    """The producers of a slot, checked: tokens of 16 hex digits, positive numbers; None if anything else."""
    if not isinstance(value, dict) or len(value) > MAX_PRODUCERS:
        return None
    for token, number in value.items():
        if not _TOKEN.fullmatch(token) or type(number) is not int or number < 1:
            return None
    return MappingProxyType(value)


def _decode_slot(raw: bytes) -> tuple[int, Checkpoint] | None:
    """(seq, checkpoint) of one slot, or None if it is empty, torn or not a slot."""
    try:
        data = json.loads(raw.partition(b"\n")[0].strip(b" \0") or b"null")
        if not isinstance(data, dict) or data.keys() - _OPTIONAL_KEYS not in (_SLOT_KEYS, _SLOT_KEYS_UNNAMED):
            return None
        seq, offset, last_id, crc = data["seq"], data["offset"], data["last_id"], data["crc"]
        device, inode = data.get("dev", 0), data.get("ino", 0)
        if type(seq) is not int or type(offset) is not int or type(last_id) is not str or offset < 0:
            return None
        if type(device) is not int or type(inode) is not int or ("ino" in data and not inode):
            return None
        producers = _producers(data.get("producers", {}))
        floor, line_format = data.get("floor", "0-0"), data.get("format")
        if producers is None or type(floor) is not str or not (line_format is None or type(line_format) is str):
            return None
        stream_id_key(floor)  # ValueError if it is no stream id
        checkpoint = Checkpoint(offset, last_id, device, inode, producers or NO_PRODUCERS, floor, line_format)
    except ValueError:
        return None
    return (seq, checkpoint) if zlib.crc32(_slot_body(seq, checkpoint).encode()) == crc else None


def read_checkpoint_slot(path: Path) -> tuple[int, int, Checkpoint] | None:
    """The newest valid checkpoint in ``path``: its sequence number, the slot's offset, the checkpoint.

    None if there is no such file.  The format of earlier versions (one JSON
    object, replaced by rename) is read as sequence -1, offset -1.  Raises
    ``RuntimeError`` if the file holds no valid checkpoint: a guess could
    double or lose records.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    valid: list[tuple[int, int, Checkpoint]] = []
    for offset in SLOT_OFFSETS:
        slot = _decode_slot(data[offset : offset + SLOT_BLOCK])
        if slot is not None:
            valid.append((slot[0], offset, slot[1]))
    if valid:
        return max(valid, key=lambda found: found[0])
    try:
        old = json.loads(data)
        checkpoint = Checkpoint(int(old["offset"]), str(old["last_id"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(f"unreadable checkpoint {path}: no valid slot ({exc})") from exc
    return -1, -1, checkpoint


def read_checkpoint(path: Path) -> tuple[int, Checkpoint] | None:
    """The newest valid checkpoint in ``path`` and its sequence number (see :func:`read_checkpoint_slot`)."""
    found = read_checkpoint_slot(path)
    return None if found is None else (found[0], found[2])
