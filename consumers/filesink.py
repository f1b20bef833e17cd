"""The central log file: one writer, crash recovery, and a checkpoint.

Exactly-once across crashes rests on three files next to each other:

* ``PATH``: the log lines;
* ``PATH.checkpoint``: ``{"offset": N, "last_id": "<stream id>"}``, meaning
  "the first N bytes of PATH hold exactly the entries up to last_id";
* ``PATH.lock``: held with ``flock`` by the one process writing PATH (a
  second consumer waits on it: a hot standby).  The kernel releases it when
  the holder dies, even by ``kill -9``.

A batch is appended, flushed (and fsynced, per policy), then the checkpoint
is replaced atomically (write a temporary file, rename it over the old one),
and only then does the caller acknowledge the entries in Redis.  Recovery
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
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Checkpoint", "FileSink", "FsyncPolicy", "stream_id_key"]

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


class FileSink:
    """Appends batches of lines to one file, exactly once across crashes."""

    def __init__(self, path: Path, fsync: FsyncPolicy = FsyncPolicy.BATCH) -> None:
        self.path = path
        self.fsync = fsync
        self.checkpoint_path = path.with_name(path.name + ".checkpoint")
        self.lock_path = path.with_name(path.name + ".lock")
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self.checkpoint = Checkpoint()

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
        self.checkpoint = self._read_checkpoint()
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
        return self.checkpoint

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # -- writing ---------------------------------------------------------------

    def append(self, data: bytes, last_id: bytes) -> None:
        """Write ``data`` (whole lines) and move the checkpoint to ``last_id``.

        On return the lines are in the file and the checkpoint says so; the
        caller may acknowledge the entries.  On an exception nothing is
        promised, and the next call (or recovery) first cuts the file back to
        the last checkpoint, so a retry never doubles or tears a line.
        """
        assert self._fd is not None, "open() first"
        self._truncate_to_checkpoint()
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if self.fsync is FsyncPolicy.BATCH:
                os.fsync(self._fd)
        except OSError:
            # Disk full, I/O error: do not leave a torn batch in the file (and
            # its space taken) until the retry; cut back now.
            with contextlib.suppress(OSError):
                self._truncate_to_checkpoint()
            raise
        self._write_checkpoint(Checkpoint(self.checkpoint.offset + len(data), last_id.decode()))

    def advance(self, last_id: bytes) -> None:
        """Move the checkpoint past entries that produce no line (dead-lettered ones)."""
        if stream_id_key(last_id) > stream_id_key(self.checkpoint.last_id):
            self._write_checkpoint(Checkpoint(self.checkpoint.offset, last_id.decode()))

    def _truncate_to_checkpoint(self) -> None:
        assert self._fd is not None
        if os.fstat(self._fd).st_size != self.checkpoint.offset:
            os.ftruncate(self._fd, self.checkpoint.offset)
        os.lseek(self._fd, self.checkpoint.offset, os.SEEK_SET)

    def _read_checkpoint(self) -> Checkpoint:
        try:
            data = json.loads(self.checkpoint_path.read_text())
            checkpoint = Checkpoint(int(data["offset"]), str(data["last_id"]))
            stream_id_key(checkpoint.last_id)
        except FileNotFoundError:
            # A file we never wrote: keep what it holds, append after it.
            size = self.path.stat().st_size if self.path.exists() else 0
            return Checkpoint(size, "0-0")
        except (ValueError, KeyError, TypeError) as exc:
            raise RuntimeError(f"unreadable checkpoint {self.checkpoint_path}: {exc}") from exc
        return checkpoint

    def _write_checkpoint(self, checkpoint: Checkpoint) -> None:
        temporary = self.checkpoint_path.with_name(self.checkpoint_path.name + ".tmp")
        payload = json.dumps({"offset": checkpoint.offset, "last_id": checkpoint.last_id}).encode()
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, payload)
            if self.fsync is FsyncPolicy.BATCH:
                os.fsync(fd)
        finally:
            os.close(fd)
        # rename() is atomic: a reader sees the old checkpoint or the new one.
        os.replace(temporary, self.checkpoint_path)
        if self.fsync is FsyncPolicy.BATCH:
            _fsync_directory(self.checkpoint_path.parent)
        self.checkpoint = checkpoint


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # some file systems refuse; the rename still happened
            os.fsync(fd)
    finally:
        os.close(fd)
