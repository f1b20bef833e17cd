"""The central log file: one writer, crash recovery, and a checkpoint.

Exactly-once across crashes rests on three files next to each other:

* ``PATH``: the log lines;
* ``PATH.checkpoint``: ``{"seq": S, "offset": N, "last_id": "<stream id>",
  "crc": C}``, meaning "the first N bytes of PATH hold exactly the entries up
  to last_id", in two slots written in turn, in place (see
  :func:`read_checkpoint`);
* ``PATH.lock``: held with ``flock`` by the one process writing PATH (a
  second consumer waits on it: a hot standby).  The kernel releases it when
  the holder dies, even by ``kill -9``.

Writing and making durable are two steps, so that lines reach readers
without waiting for the disk: :meth:`FileSink.write` appends a batch (visible
at once, in the page cache); :meth:`FileSink.sync` fsyncs (per policy) what
was written before it started, then writes the checkpoint for exactly that
into the slot not holding the current one (and fdatasyncs it, per policy).
Only then does the caller acknowledge those entries in Redis.  One write and
one sync may run at the same time, in two threads: a sync covers the batches
whose write returned before it began (group commit).  A
slot torn by a crash or power loss fails its CRC: the other slot, one sync
older, is used, and what it does not cover (not acknowledged yet) is
written again.
Each slot sits in its own 4 KiB block, so a torn write reaches one slot.
One fdatasync per checkpoint, where replacing a file by rename took two
fsyncs and a directory fsync.  Recovery
truncates PATH to the checkpoint's offset, which removes torn lines and lines
whose checkpoint never landed; their entries are still pending in Redis and
are written again.  Entries at or below ``last_id`` that are still pending
were written but not acknowledged: they are acknowledged, not written.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import logging
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = ["Checkpoint", "FileSink", "FsyncPolicy", "read_checkpoint", "stream_id_key"]

log = logging.getLogger("logrelay.filesink")


class FsyncPolicy(enum.Enum):
    """When data reaches the disk, not only the page cache."""

    #: fsync the log and the checkpoint before every acknowledgement:
    #: survives power loss.
    BATCH = "batch"
    #: leave it to the kernel: survives any process crash (kill -9
    #: included), not a power loss or kernel panic.
    NEVER = "never"


def stream_id_key(entry_id: bytes | str) -> tuple[int, int]:
    """Order stream ids numerically: ``b"1700000000000-12"`` → ``(1700000000000, 12)``."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    offset: int = 0
    last_id: str = "0-0"
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


def _slot_body(seq: int, checkpoint: Checkpoint) -> str:
    return json.dumps({"seq": seq, "offset": checkpoint.offset, "last_id": checkpoint.last_id}, separators=(",", ":"))


def _encode_slot(seq: int, checkpoint: Checkpoint) -> bytes:
    body = _slot_body(seq, checkpoint)
    line = f'{body[:-1]},"crc":{zlib.crc32(body.encode())}}}\n'.encode()
    if len(line) > SLOT_TEXT:
        raise ValueError(f"checkpoint too long for its slot: {line!r}")
    return line.ljust(SLOT_TEXT, b" ")


def _decode_slot(raw: bytes) -> tuple[int, Checkpoint] | None:
    """(seq, checkpoint) of one slot, or None if it is empty, torn or not a slot."""
    try:
        data = json.loads(raw.strip(b" \n\0") or b"null")
        if not isinstance(data, dict) or set(data) != {"seq", "offset", "last_id", "crc"}:
            return None
        seq, offset, last_id, crc = data["seq"], data["offset"], data["last_id"], data["crc"]
        if type(seq) is not int or type(offset) is not int or type(last_id) is not str or offset < 0:
            return None
        checkpoint = Checkpoint(offset, last_id)
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


class FileSink:
    """Appends batches of lines to one file, exactly once across crashes."""

    def __init__(self, path: Path, fsync: FsyncPolicy = FsyncPolicy.BATCH) -> None:
        self.path = path
        self.fsync = fsync
        self.checkpoint_path = path.with_name(path.name + ".checkpoint")
        self.lock_path = path.with_name(path.name + ".lock")
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._checkpoint_fd: int | None = None
        self._seq = 0
        #: Durable: what the checkpoint file says.
        self.checkpoint = Checkpoint()
        #: Written: the end of the last whole batch in the file (at or past the checkpoint).
        self.written = Checkpoint()

    # -- ownership -------------------------------------------------------------

    def try_lock(self) -> bool:
        """Take the writer lock if free; return whether we hold it."""
        if self._lock_fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def open(self) -> Checkpoint:
        """Recover the file to its checkpoint and open it for appending (lock held)."""
        assert self._lock_fd is not None, "take the lock first"
        found = read_checkpoint(self.checkpoint_path)
        if found is None:
            # A file we never wrote: keep what it holds, append after it.
            size = self.path.stat().st_size if self.path.exists() else 0
            found = (-1, Checkpoint(size, "0-0"))
        self._seq, self.checkpoint = found
        if self._seq < 0:
            # No slot file yet (a new file, or one from an earlier version):
            # make one the old, atomic way, once; slots are written in place after.
            self._seq = 0
            self._replace_checkpoint_file(_encode_slot(0, self.checkpoint))
        self._checkpoint_fd = os.open(self.checkpoint_path, os.O_WRONLY)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        size = os.fstat(self._fd).st_size
        if size > self.checkpoint.offset:
            log.warning(
                "%s: dropping %d bytes written after the last checkpoint (their entries are re-read)",
                self.path,
                size - self.checkpoint.offset,
            )
        elif size < self.checkpoint.offset:
            # Someone truncated or replaced the file; start at its end.
            log.warning(
                "%s is shorter (%d bytes) than its checkpoint (%d); appending at its end",
                self.path,
                size,
                self.checkpoint.offset,
            )
            self.checkpoint = Checkpoint(size, self.checkpoint.last_id)
        self._truncate_to_checkpoint()
        self.written = self.checkpoint
        return self.checkpoint

    def close(self) -> None:
        for fd in (self._fd, self._checkpoint_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._checkpoint_fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # -- writing ---------------------------------------------------------------

    def write(self, data: bytes, last_id: bytes) -> None:
        """Append ``data`` (whole lines, for the entries up to ``last_id``) after the last whole batch.

        The lines are visible to readers on return; they are durable, and
        covered by the checkpoint, once a :meth:`sync` that starts after this
        returns.  Empty ``data`` only moves ``last_id`` (entries that produce
        no line: dead letters), never backwards.  On ``OSError`` (disk full)
        the file is cut back to the last whole batch, so a retry neither
        doubles nor tears a line.  One write at a time; it may overlap a sync.
        """
        assert self._fd is not None, "open() first"
        end = self.written.offset
        if not data:
            if stream_id_key(last_id) > self.written._last_key:
                self.written = Checkpoint(end, last_id.decode())
            return
        view = memoryview(data)
        position = end
        try:
            if os.fstat(self._fd).st_size != end:
                # What a failed write left when cutting it back failed too.
                os.ftruncate(self._fd, end)
            while view:
                # pwrite at our own offset: nothing depends on the file position
                # (a sync, or a failed write before, never moves it).
                written = os.pwrite(self._fd, view, position)
                view = view[written:]
                position += written
        except OSError:
            # Disk full, I/O error: do not leave a torn batch in the file (and
            # its space taken) until the retry; cut back now.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, end)
            raise
        # Published last, in one assignment: a sync in another thread reads
        # either the end before this batch or the end after it, never between.
        self.written = Checkpoint(position, last_id.decode())

    def sync(self) -> Checkpoint:
        """Make everything written so far durable (per policy) and checkpoint it; return the new checkpoint.

        Covers the batches whose :meth:`write` returned before this call; a
        write running meanwhile waits for the next sync.  After an ``OSError``
        the kernel may have dropped the pages that failed, and a second fsync
        can succeed without them: call :meth:`rewind` and write the batches
        past the checkpoint again.
        """
        assert self._fd is not None, "open() first"
        target = self.written  # read once: the fsync below covers every byte up to it
        if target == self.checkpoint:
            return target
        if self.fsync is FsyncPolicy.BATCH and target.offset != self.checkpoint.offset:
            os.fsync(self._fd)
        self._write_checkpoint(target)
        return target

    def rewind(self) -> None:
        """Forget what was written past the checkpoint and cut the file back to it (no write or sync running)."""
        self.written = self.checkpoint
        self._truncate_to_checkpoint()

    def _truncate_to_checkpoint(self) -> None:
        assert self._fd is not None
        if os.fstat(self._fd).st_size != self.checkpoint.offset:
            os.ftruncate(self._fd, self.checkpoint.offset)

    def _write_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Write ``checkpoint`` into the slot that does not hold the current one."""
        assert self._checkpoint_fd is not None
        seq = self._seq + 1
        os.pwrite(self._checkpoint_fd, _encode_slot(seq, checkpoint), (seq % 2) * SLOT_BLOCK)
        if self.fsync is FsyncPolicy.BATCH:
            os.fdatasync(self._checkpoint_fd)
        self._seq = seq
        self.checkpoint = checkpoint

    def _replace_checkpoint_file(self, content: bytes) -> None:
        temporary = self.checkpoint_path.with_name(self.checkpoint_path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, content)
            if self.fsync is FsyncPolicy.BATCH:
                os.fsync(fd)
        finally:
            os.close(fd)
        # rename() is atomic: a reader sees the old file or the new one.
        os.replace(temporary, self.checkpoint_path)
        if self.fsync is FsyncPolicy.BATCH:
            _fsync_directory(self.checkpoint_path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # some file systems refuse; the rename still happened
            os.fsync(fd)
    finally:
        os.close(fd)
