"""The central log file: one writer, crash recovery, and a checkpoint.

Exactly-once across crashes rests on three files next to each other:

* ``PATH``: the log lines;
* ``PATH.checkpoint``: "the first N bytes of the file with device D and
  inode I (PATH, unless it was renamed) hold exactly the entries up to
  last_id", and in which ``--format`` (:mod:`consumers.checkpoint`): a sink
  given another format finds the file :attr:`FileSink.holds_another_format`,
  and its owner rotates it before writing, so that no file mixes two;
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
whose write returned before it began (group commit).  Recovery
truncates PATH to the checkpoint's offset, which removes torn lines and lines
whose checkpoint never landed; their entries are still pending in Redis and
are written again.  Entries at or below ``last_id`` that are still pending
were written but not acknowledged: they are acknowledged, not written.

Rotation (:meth:`FileSink.rotate`) is a step of the group commit: sync and
checkpoint what was written, rename PATH to its segment's name, create a new
PATH, checkpoint it (offset 0, same last_id).  A reopen after an outside
rename (:meth:`FileSink.reopen`, SIGHUP after logrotate) is the same without
our rename.  The checkpoint names its file by device and inode, so a crash
between any two steps is recovered on start: if PATH is not the
checkpoint's file, the file that is (found in the same directory, whatever
its name) is cut back to the checkpoint's offset, which completes it, and
writing continues in PATH.  Each record is then in exactly one of the files.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import logging
import os
import stat
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Final

from consumers.checkpoint import (
    SLOT_BLOCK,
    Checkpoint,
    encode_slot,
    merge_producers,
    read_checkpoint_slot,
    stream_id_key,
)

__all__ = ["COPYTRUNCATE_ERROR", "FileSink", "FsyncPolicy", "fsync_directory"]

log = logging.getLogger("logrelay.filesink")


class FsyncPolicy(enum.Enum):
    """When data reaches the disk, not only the page cache."""

    #: fsync the log and the checkpoint before every acknowledgement:
    #: survives power loss.
    BATCH = "batch"
    #: leave it to the kernel: survives any process crash (kill -9
    #: included), not a power loss or kernel panic.
    NEVER = "never"


#: What the log says when the file turns out shorter than what was written to it.
COPYTRUNCATE_ERROR: Final = (
    "%s was truncated under the consumer (%d bytes where %d were written): logrotate's copytruncate "
    "loses the lines written between its copy and its truncate; rotate by rename instead "
    "(logrotate: create, then postrotate kill -HUP the consumer), or use --rotate-size/--rotate-interval"
)


def _no_step(step: str) -> None:
    """Production: no pause between the steps of a rotation or a recovery."""


class FileSink:
    """Appends batches of lines to one file, exactly once across crashes, rotations and reopens.

    ``step``: a seam for fault injection, called with the name of each step
    of a rotation, a reopen and a recovery just before it runs (``"rename"``,
    ``"create"``, ``"checkpoint"``, ...); a test raises there to stop the
    sink as a ``kill -9`` would.
    """

    def __init__(
        self,
        path: Path,
        fsync: FsyncPolicy = FsyncPolicy.BATCH,
        *,
        line_format: str | None = None,
        step: Callable[[str], None] = _no_step,
    ) -> None:
        self.path = path
        self.fsync = fsync
        #: The ``--format`` of the lines written, recorded in the checkpoint; None: not recorded.
        self.line_format = line_format
        self.step = step
        self.checkpoint_path = path.with_name(path.name + ".checkpoint")
        self.lock_path = path.with_name(path.name + ".lock")
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._checkpoint_fd: int | None = None
        self._seq = 0
        # Where the current checkpoint's slot is in the checkpoint file (the next goes in the other).
        self._slot = 0
        #: The file written: device and inode.
        self._identity = (0, 0)
        # A sync (in the syncer's thread) and a rotation or reopen never overlap.
        self._sync_lock = threading.Lock()
        #: Durable: what the checkpoint file says.
        self.checkpoint = Checkpoint()
        #: Written: the end of the last whole batch in the file (at or past the checkpoint).
        self.written = Checkpoint()
        # An fsync failed: the kernel may have dropped pages it reported once, and a
        # second fsync would not say so; no checkpoint until rewind() and a rewrite.
        self._sync_failed = False

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
        """Recover the file to its checkpoint and open it for appending (lock held).

        If PATH is not the file the checkpoint covers (a crash in the middle
        of a rotation, or after logrotate renamed it and before the reopen),
        that file is found in the directory by its device and inode and cut
        back to the checkpoint's offset, and writing continues in PATH.
        """
        assert self._lock_fd is not None, "take the lock first"
        found = read_checkpoint_slot(self.checkpoint_path)
        if found is None:
            # A file we never wrote: keep what it holds, append after it.
            size = self.path.stat().st_size if self.path.exists() else 0
            found = (-1, -1, Checkpoint(size, "0-0"))
        self._seq, self._slot, checkpoint = found
        self.checkpoint = checkpoint
        mode = 0o644
        moved = checkpoint.inode != 0 and not _is_file(self.path, checkpoint.device, checkpoint.inode)
        if moved:
            completed = self._complete_moved_file(checkpoint)
            if completed is not None:
                mode = completed
                checkpoint = replace(checkpoint, offset=0)
            elif _size(self.path) >= checkpoint.offset:
                # Nothing renamed from PATH is here, and PATH holds at least what the
                # checkpoint covers: the same file under another device or inode
                # number (a remount, a restored copy). Cut it back as ever.
                log.warning(
                    "%s has another device or inode than its checkpoint says (a remount or a copy?): "
                    "taking it for the checkpoint's file",
                    self.path,
                )
                moved = False
            else:
                checkpoint = replace(checkpoint, offset=0)
        existed = self.path.exists()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, mode)
        if moved and not existed:
            os.fchmod(self._fd, mode)  # the renamed file's mode, whatever the umask
        status = os.fstat(self._fd)
        self._identity = (status.st_dev, status.st_ino)
        size = status.st_size
        if size > checkpoint.offset:
            if moved:
                # Not the file the checkpoint covers (a new PATH after a
                # rename): nothing in it is ours; keep it, append after it.
                checkpoint = replace(checkpoint, offset=size)
            else:
                log.warning(
                    "%s: dropping %d bytes written after the last checkpoint (their entries are re-read)",
                    self.path,
                    size - checkpoint.offset,
                )
        elif size < checkpoint.offset:
            log.error(COPYTRUNCATE_ERROR + "; appending at its end", self.path, size, checkpoint.offset)
            checkpoint = replace(checkpoint, offset=size)
        checkpoint = replace(checkpoint, device=self._identity[0], inode=self._identity[1])
        if self.line_format is not None and (checkpoint.line_format is None or checkpoint.offset == 0):
            # Nothing in the file says otherwise (an earlier version's checkpoint, an empty file): ours.
            checkpoint = replace(checkpoint, line_format=self.line_format)
        if not checkpoint.producers and checkpoint.floor == "0-0":
            # Written without record identities (an earlier version, older
            # catchers): what it holds is known by stream id, up to here.
            checkpoint = replace(checkpoint, floor=checkpoint.last_id)
        if self._seq < 0:
            # No slot file yet (a new file, or one from an earlier version):
            # make one the old, atomic way, once; slots are written in place after.
            self._seq = self._slot = 0
            self._replace_checkpoint_file(encode_slot(0, checkpoint))
            self._checkpoint_fd = os.open(self.checkpoint_path, os.O_WRONLY)
        else:
            self._checkpoint_fd = os.open(self.checkpoint_path, os.O_WRONLY)
            named = (self.checkpoint.device, self.checkpoint.inode, self.checkpoint.offset, self.checkpoint.line_format)
            if named != (*self._identity, checkpoint.offset, checkpoint.line_format):
                self.step("checkpoint")
                self._write_checkpoint(checkpoint)
        self.checkpoint = checkpoint
        self._truncate_to_checkpoint()
        self.written = self.checkpoint
        return self.checkpoint

    def _complete_moved_file(self, checkpoint: Checkpoint) -> int | None:
        """Cut the file the checkpoint covers, renamed away from PATH, back to the checkpoint; return its mode.

        None if no such file is in the directory.
        """
        moved = _find_by_identity(self.path, checkpoint.device, checkpoint.inode, checkpoint.offset)
        if moved is None:
            log.warning(
                "%s: the file its checkpoint covers (device %d, inode %d) is no longer in %s "
                "(compressed or removed before the consumer reopened it?)",
                self.path,
                checkpoint.device,
                checkpoint.inode,
                self.path.parent,
            )
            return None
        self.step("complete")
        fd = os.open(moved, os.O_WRONLY)
        try:
            status = os.fstat(fd)
            if status.st_size > checkpoint.offset:
                os.ftruncate(fd, checkpoint.offset)
                if self.fsync is FsyncPolicy.BATCH:
                    os.fsync(fd)
        finally:
            os.close(fd)
        log.info(
            "%s was renamed to %s before the consumer reopened it: completed it at its checkpoint (%d bytes), "
            "continuing in %s",
            self.path,
            moved.name,
            min(status.st_size, checkpoint.offset),
            self.path,
        )
        return stat.S_IMODE(status.st_mode)

    def close(self) -> None:
        for fd in (self._fd, self._checkpoint_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._checkpoint_fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # -- writing ---------------------------------------------------------------

    def write(self, data: bytes, last_id: bytes, producers: Mapping[str, int] | None = None) -> None:
        """Append ``data`` (whole lines, for the entries up to ``last_id``) after the last whole batch.

        ``producers``: the highest record number of each producer among
        those lines (see :class:`~consumers.checkpoint.Checkpoint`).

        The lines are visible to readers on return; they are durable, and
        covered by the checkpoint, once a :meth:`sync` that starts after this
        returns.  ``last_id`` never goes backwards; empty ``data`` only moves
        it and the producers (entries that produce no line: dead letters).  On ``OSError`` (disk full)
        the file is cut back to the last whole batch, so a retry neither
        doubles nor tears a line.  One write at a time; it may overlap a sync.
        A file found shorter than what was written (``copytruncate``) is an
        error in the log; writing goes on at its end.
        """
        assert self._fd is not None, "open() first"
        end = self.written.offset
        known, floor = self.written.producers, self.written.floor
        if producers:
            known, forgotten = merge_producers(known, producers)
            if forgotten:
                # Everything the forgotten producer wrote is at or below the end of this batch.
                floor = max(self.written.last_id, last_id.decode(), key=stream_id_key)
        # last_id never goes back: after a Redis failover, new entries may
        # have ids below those written before (records are known by their
        # identity then, see consumers.batch_renderer).
        last = last_id.decode() if stream_id_key(last_id) > self.written._last_key else self.written.last_id
        if not data:
            self.written = Checkpoint(end, last, *self._identity, known, floor, self.written.line_format)
            return
        view = memoryview(data)
        try:
            size = os.fstat(self._fd).st_size
            if size < end:
                log.error(COPYTRUNCATE_ERROR, self.path, size, end)
                end = size
            elif size != end:
                # What a failed write left when cutting it back failed too.
                os.ftruncate(self._fd, end)
            position = end
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
        self.written = Checkpoint(position, last, *self._identity, known, floor, self.written.line_format)

    def sync(self) -> Checkpoint:
        """Make everything written so far durable (per policy) and checkpoint it; return the new checkpoint.

        Covers the batches whose :meth:`write` returned before this call; a
        write running meanwhile waits for the next sync.  After an ``OSError``
        the kernel may have dropped the pages that failed, and a second fsync
        can succeed without them: call :meth:`rewind` and write the batches
        past the checkpoint again.
        """
        with self._sync_lock:
            return self._sync_locked()

    def _sync_locked(self) -> Checkpoint:
        assert self._fd is not None, "open() first"
        if self._sync_failed:
            raise OSError(errno.EIO, "an earlier fsync failed: rewind and write again before syncing")
        target = self.written  # read once: the fsync below covers every byte up to it
        if target == self.checkpoint and target.inode == self.checkpoint.inode:
            return target
        if self.fsync is FsyncPolicy.BATCH and target.offset != self.checkpoint.offset:
            try:
                os.fsync(self._fd)
            except OSError:
                self._sync_failed = True
                raise
        self._write_checkpoint(target)
        return target

    @property
    def holds_another_format(self) -> bool:
        """Whether the file holds lines of another ``--format`` than :attr:`line_format` (after :meth:`open`).

        Then :meth:`rotate` it before writing: no file mixes two formats.
        """
        recorded = self.written.line_format
        return self.line_format is not None and recorded is not None and recorded != self.line_format

    def is_current(self) -> bool:
        """Whether PATH is still the file being written (not renamed away by someone else)."""
        return _is_file(self.path, *self._identity)

    # -- rotation ----------------------------------------------------------------

    def rotate(self, segment: Path) -> Checkpoint:
        """Rename the file to ``segment`` and go on in a new, empty PATH; return the new checkpoint.

        No write may run meanwhile (a sync may: it is waited for).  The steps:
        sync and checkpoint what was written, so that the segment is
        complete; rename; create PATH with the old file's mode; checkpoint
        the new file.  A crash between two steps is recovered by
        :meth:`open`.  If PATH is gone already (a rotation that failed after
        its rename), the rename is skipped.
        """
        with self._sync_lock:
            self.step("sync")
            self._sync_locked()
            if _is_file(self.path, *self._identity):
                self.step("rename")
                os.rename(self.path, segment)
            return self._continue_in_path()

    def reopen(self) -> Checkpoint | None:
        """After an outside rename (logrotate, then SIGHUP): go on in PATH; None if PATH is still our file.

        No write may run meanwhile.  What was written is synced and
        checkpointed first (in the renamed file); PATH is created if
        missing, with the old file's mode; a PATH someone else created keeps
        what it holds, and writing goes on after it.
        """
        with self._sync_lock:
            if _is_file(self.path, *self._identity):
                return None
            self.step("sync")
            self._sync_locked()
            return self._continue_in_path()

    def _continue_in_path(self) -> Checkpoint:
        """Open PATH (created with the current file's mode) in place of the current file; checkpoint it."""
        assert self._fd is not None
        old = self._fd
        mode = stat.S_IMODE(os.fstat(old).st_mode)
        self.step("create")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            created = True
        except FileExistsError:  # logrotate's create: its mode and owner stay
            fd = os.open(self.path, os.O_WRONLY)
            created = False
        try:
            status = os.fstat(fd)
            if created:
                os.fchmod(fd, mode)  # the old file's mode, whatever the umask
            if self.fsync is FsyncPolicy.BATCH:
                fsync_directory(self.path.parent)
            checkpoint = replace(
                self.written,
                offset=status.st_size,
                device=status.st_dev,
                inode=status.st_ino,
                line_format=self.line_format or self.written.line_format,
            )
            self.step("checkpoint")
            self._write_checkpoint(checkpoint)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._identity = (status.st_dev, status.st_ino)
        self.written = checkpoint
        os.close(old)
        return checkpoint

    def rewind(self) -> None:
        """Forget what was written past the checkpoint and cut the file back to it (no write or sync running)."""
        self.written = self.checkpoint
        self._truncate_to_checkpoint()
        self._sync_failed = False

    def _truncate_to_checkpoint(self) -> None:
        assert self._fd is not None
        if os.fstat(self._fd).st_size != self.checkpoint.offset:
            os.ftruncate(self._fd, self.checkpoint.offset)

    def _write_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Write ``checkpoint`` into the slot that does not hold the current one."""
        assert self._checkpoint_fd is not None
        seq = self._seq + 1
        # Never over the current slot: after an earlier version's second
        # slot (at 4 KiB, inside the first block) too, the next is the second block.
        slot = 0 if self._slot == SLOT_BLOCK else SLOT_BLOCK
        os.pwrite(self._checkpoint_fd, encode_slot(seq, checkpoint), slot)
        if self.fsync is FsyncPolicy.BATCH:
            os.fdatasync(self._checkpoint_fd)
        self._seq, self._slot = seq, slot
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
            fsync_directory(self.checkpoint_path.parent)


def _is_file(path: Path, device: int, inode: int) -> bool:
    """Whether ``path`` is the file with that device and inode."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return False
    return (status.st_dev, status.st_ino) == (device, inode)


#: Compressed and temporary files: never the file being written, whatever inode they got.
_COMPRESSED: Final = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z", ".tmp")


def _find_by_identity(path: Path, device: int, inode: int, least_size: int) -> Path | None:
    """The file renamed from ``path``: in its directory, a name starting with its name, that device and inode.

    Inode numbers are reused once a file is gone: a file that does not start
    with PATH's name (logrotate's ``PATH.1``, ``PATH-20261206``, ours
    ``PATH.<time>``), a compressed or temporary one, or one holding less than
    the checkpoint covers is not the one.
    """
    with os.scandir(path.parent) as entries:
        for entry in entries:
            if (
                entry.inode() == inode
                and entry.name.startswith(path.name)
                and not entry.name.endswith(_COMPRESSED)
                and entry.is_file(follow_symlinks=False)
            ):
                status = entry.stat(follow_symlinks=False)
                if status.st_dev == device and status.st_size >= least_size:
                    return Path(entry.path)
    return None


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return -1


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable (where the file system allows)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # some file systems refuse; the rename still happened
            os.fsync(fd)
    finally:
        os.close(fd)
