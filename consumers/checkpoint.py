"""The checkpoint of the central file: what it holds, up to which entry, in which file.

``PATH.checkpoint`` holds ``{"seq": S, "offset": N, "last_id": "<stream
id>", "dev": D, "ino": I, "crc": C}``: "the first N bytes of the file with
device D and inode I hold exactly the entries up to last_id".  It is written
in place, in two slots taken in turn, each in its own 4 KiB block, so that a
write torn by a crash or a power loss reaches one slot: its CRC fails and
the other slot, one sync older, is used (:func:`read_checkpoint`).  One
fdatasync per checkpoint, where replacing a file by rename took two fsyncs
and a directory fsync.  :class:`consumers.file_sink.FileSink` writes it.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = ["SLOT_BLOCK", "Checkpoint", "encode_slot", "read_checkpoint", "stream_id_key"]


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
    # last_id as stream_id_key orders it, parsed once: covers() runs per entry.
    _last_key: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_last_key", stream_id_key(self.last_id))

    def covers(self, entry_id: bytes) -> bool:
        """True if the entry is already in the file."""
        return stream_id_key(entry_id) <= self._last_key


# The checkpoint file: slot k (k = seq % 2) is a line of JSON at offset
# k * SLOT_BLOCK, padded with spaces to SLOT_TEXT bytes.
SLOT_BLOCK: Final = 4096
SLOT_TEXT: Final = 256


_SLOT_KEYS: Final = frozenset({"seq", "offset", "last_id", "dev", "ino", "crc"})
#: Slots written before the checkpoint named its file.
_SLOT_KEYS_UNNAMED: Final = frozenset({"seq", "offset", "last_id", "crc"})


def _slot_body(seq: int, checkpoint: Checkpoint) -> str:
    body: dict[str, object] = {"seq": seq, "offset": checkpoint.offset, "last_id": checkpoint.last_id}
    if checkpoint.inode:
        body["dev"] = checkpoint.device
        body["ino"] = checkpoint.inode
    return json.dumps(body, separators=(",", ":"))


def encode_slot(seq: int, checkpoint: Checkpoint) -> bytes:
    body = _slot_body(seq, checkpoint)
    line = f'{body[:-1]},"crc":{zlib.crc32(body.encode())}}}\n'.encode()
    if len(line) > SLOT_TEXT:
        raise ValueError(f"checkpoint too long for its slot: {line!r}")
    return line.ljust(SLOT_TEXT, b" ")


def _decode_slot(raw: bytes) -> tuple[int, Checkpoint] | None:
    """(seq, checkpoint) of one slot, or None if it is empty, torn or not a slot."""
    try:
        data = json.loads(raw.strip(b" \n\0") or b"null")
        if not isinstance(data, dict) or (data.keys() != _SLOT_KEYS and data.keys() != _SLOT_KEYS_UNNAMED):
            return None
        seq, offset, last_id, crc = data["seq"], data["offset"], data["last_id"], data["crc"]
        device, inode = data.get("dev", 0), data.get("ino", 0)
        if type(seq) is not int or type(offset) is not int or type(last_id) is not str or offset < 0:
            return None
        if type(device) is not int or type(inode) is not int or ("ino" in data and not inode):
            return None
        checkpoint = Checkpoint(offset, last_id, device, inode)
    except ValueError:
        return None
    return (seq, checkpoint) if zlib.crc32(_slot_body(seq, checkpoint).encode()) == crc else None


def read_checkpoint(path: Path) -> tuple[int, Checkpoint] | None:
    """The newest valid checkpoint in ``path`` and its sequence number; None if there is no such file.

    Also reads the format of earlier versions (one JSON object, replaced by
    rename), as sequence -1.  Raises ``RuntimeError`` if the file holds no
    valid checkpoint: a guess could double or lose records.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    slots = [_decode_slot(data[k * SLOT_BLOCK : k * SLOT_BLOCK + SLOT_TEXT]) for k in (0, 1)]
    valid = [slot for slot in slots if slot is not None]
    if valid:
        return max(valid, key=lambda slot: slot[0])
    try:
        old = json.loads(data)
        checkpoint = Checkpoint(int(old["offset"]), str(old["last_id"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(f"unreadable checkpoint {path}: no valid slot ({exc})") from exc
    return -1, checkpoint
