"""The rotated segments of the central file: compressed and pruned off the write path.

:class:`SegmentKeeper` applies retention (:func:`consumers.rotation.expired`)
in a thread at normal priority, woken after each rotation and once a minute
(for ``--keep-age``), so that a busy CPU never holds it up; it hands
compression to a second thread that gets only CPU time nothing else wants
(SCHED_IDLE).  For each plain segment, oldest first, that one writes
``SEGMENT.gz.tmp`` (with the segment's mode), syncs it, renames it to
``SEGMENT.gz`` and only then removes the plain segment; a segment that
fails (no space) is logged and skipped.  A crash leaves at most a temporary
file (removed on start, the segment compressed again) or a plain segment
beside its finished ``.gz`` (the plain one removed on start: the ``.gz`` is
complete, since it got its name last), so no record stays in two files.

It only ever touches names of the form ``PATH.<UTC time>[-N][.gz][.tmp]``:
never PATH, its checkpoint or its lock, and never the file the checkpoint
covers (``protected``), which after a crash in the middle of a rotation may
carry a segment's name until the consumer has completed it.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from consumers.file_sink import fsync_directory
from consumers.rotation import RotationSettings, Segment, expired, parse_segment
from relay.common.counters import ConsumerStats

__all__ = ["SegmentKeeper", "list_segments"]

log = logging.getLogger("logrelay.segments")

#: Bytes read and compressed at a time (zlib releases the GIL for each).
CHUNK: Final = 1 << 20
COMPRESS_LEVEL: Final = 6
#: Where SCHED_IDLE is refused: how much lower than the consumer's the keeper's thread runs (nice).
NICENESS: Final = 19
#: Seconds between retention passes without a rotation (for --keep-age).
IDLE_PASS: Final = 60.0
_TEMPORARY: Final = ".tmp"


def list_segments(path: Path) -> list[Segment]:
    """The segments beside ``path``, in write order (plain and ``.gz``; not temporary files)."""
    base = path.name
    found: list[Segment] = []
    with os.scandir(path.parent) as entries:
        for entry in entries:
            if entry.name.startswith(base) and entry.is_file(follow_symlinks=False):
                segment = parse_segment(base, entry.name)
                if segment is not None:
                    found.append(segment)
    return sorted(found)


class SegmentKeeper:
    """Compresses finished segments and applies retention, in a background thread.

    ``protected()`` returns the device and inode of the file the checkpoint
    covers, which is never compressed or removed.  ``step``: a seam for fault
    injection, called before each step of a compression (``"compress"``,
    ``"rename"``, ``"remove"``).
    """

    def __init__(
        self,
        path: Path,
        settings: RotationSettings,
        protected: Callable[[], tuple[int, int]],
        *,
        stats: ConsumerStats | None = None,
        step: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self.settings = settings
        self._protected = protected
        self._step = step or (lambda name: None)
        self.stats = stats or ConsumerStats()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._compressor: threading.Thread | None = None
        # Retention removing a segment, and a compression replacing one, never interleave.
        self._lock = threading.Lock()
        # A compression asked for while the compressor is already at work (a rotation during a
        # long compression) is not lost: it runs another pass before it exits.  Both flags
        # change together under this lock, so a request never meets a compressor on its way out.
        self._compress_lock = threading.Lock()
        self._compress_wanted = False
        self._compressing = False

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        """Resolve what a crash left (synchronously), then keep the segments in threads."""
        self.resolve_leftovers()
        if self.settings.compress == "none" and not self.settings.retains:
            return
        self._thread = threading.Thread(target=self._run, name="logrelay-segments", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A rotation happened: prune and compress now."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop, abandoning a compression in progress (its temporary file is removed)."""
        self._stopping.set()
        self._wake.set()
        for thread in (self._thread, self._compressor):
            if thread is not None:
                thread.join(timeout)
        self._thread = self._compressor = None

    def _run(self) -> None:
        """Retention at normal priority, so that a busy CPU never holds it up; compression handed to an idle one."""
        while not self._stopping.is_set():
            try:
                self._prune()
            except OSError as exc:
                log.error("retention of the segments of %s failed (%s); trying again later", self.path, exc)
            if self.settings.compress == "gzip":
                self._request_compression()
            self._wake.wait(IDLE_PASS)
            self._wake.clear()

    def _request_compression(self) -> None:
        with self._compress_lock:
            self._compress_wanted = True
            if self._compressing:
                return  # the running compressor makes another pass before it exits
            self._compressing = True
        self._compressor = threading.Thread(target=self._compress_in_idle_time, name="logrelay-compress", daemon=True)
        self._compressor.start()

    def _compress_in_idle_time(self) -> None:
        _lower_priority()
        compressed = False
        while True:
            with self._compress_lock:
                if not self._compress_wanted or self._stopping.is_set():
                    self._compressing = False
                    break
                self._compress_wanted = False
            try:
                compressed = self._compress_all() or compressed
            except BaseException:
                with self._compress_lock:
                    self._compressing = False
                raise
        if compressed:
            self._wake.set()  # sizes changed: retention by bytes again

    # -- the work ----------------------------------------------------------------

    def resolve_leftovers(self) -> None:
        """Remove temporary files and plain segments whose ``.gz`` is complete (what a crash leaves)."""
        base = self.path.name
        with os.scandir(self.path.parent) as entries:
            names = {entry.name for entry in entries if entry.name.startswith(base)}
        for name in sorted(names):
            if name.endswith(_TEMPORARY) and parse_segment(base, name[: -len(_TEMPORARY)]) is not None:
                log.info("removing %s, a compression a stop interrupted", name)
                _remove(self.path.parent / name)
                continue
            segment = parse_segment(base, name)
            if segment is not None and not segment.compressed and name + ".gz" in names:
                log.info("removing %s: its compressed copy %s.gz is complete", name, name)
                _remove(self.path.parent / name)

    def pass_once(self) -> None:
        """Apply retention, compress every finished plain segment (oldest first), apply retention again."""
        self._prune()
        if self.settings.compress == "gzip" and self._compress_all():
            self._prune()

    def _compress_all(self) -> bool:
        """Compress the finished plain segments, oldest first; whether any was.

        A segment that fails (no space, unreadable) is logged and skipped:
        the others, and retention, go on.
        """
        done = False
        for segment in list_segments(self.path):
            if self._stopping.is_set():
                break
            if segment.compressed or self._is_protected(segment):
                continue
            try:
                done = self._compress(self.path.parent / segment.name) or done
            except OSError as exc:
                log.error("cannot compress %s (%s); trying again later", segment.name, exc)
        return done

    def _is_protected(self, segment: Segment) -> bool:
        try:
            status = os.stat(self.path.parent / segment.name)
        except FileNotFoundError:
            return True  # gone meanwhile: nothing to do with it
        return (status.st_dev, status.st_ino) == self._protected()

    def _compress(self, plain: Path) -> bool:
        """``plain`` to ``plain.gz`` through a temporary file, the plain one removed last; whether it was."""
        target = plain.with_name(plain.name + ".gz")
        temporary = target.with_name(target.name + _TEMPORARY)
        self._step("compress")
        started = time.monotonic()
        try:
            with open(plain, "rb") as source, open(temporary, "wb") as raw:
                # The segment's mode (a log may not be for everyone's eyes), whatever the umask.
                os.fchmod(raw.fileno(), stat.S_IMODE(os.fstat(source.fileno()).st_mode))
                # gzip's own default level (GzipFile's is 9: slower for little gain on log lines);
                # mtime=0: the same segment compresses to the same bytes.
                with gzip.GzipFile(plain.name, "wb", COMPRESS_LEVEL, raw, mtime=0) as compressed:
                    while chunk := source.read(CHUNK):
                        if self._stopping.is_set():
                            raise _Abandoned
                        compressed.write(chunk)
                raw.flush()
                os.fsync(raw.fileno())
            self._step("rename")
            with self._lock:
                if not plain.exists():  # removed by retention meanwhile
                    raise _Abandoned
                os.rename(temporary, target)
        except _Abandoned:
            _remove(temporary)
            return False
        except BaseException:
            _remove(temporary)
            raise
        fsync_directory(plain.parent)
        self._step("remove")
        size = _size(plain)
        with self._lock:
            _remove(plain)
        self.stats.segments_compressed += 1
        log.info("compressed %s: %d -> %d bytes in %.1fs", plain.name, size, _size(target), time.monotonic() - started)
        return True

    def _prune(self) -> None:
        if not self.settings.retains:
            return
        segments = [segment for segment in list_segments(self.path) if not self._is_protected(segment)]
        sized = [(segment, _size(self.path.parent / segment.name)) for segment in segments]
        doomed = expired(sized, self.settings, time.time())
        for segment in doomed:
            log.info("removing segment %s (retention)", segment.name)
            with self._lock:
                _remove(self.path.parent / segment.name)
        self.stats.segments_removed += len(doomed)


class _Abandoned(Exception):
    """A stop was requested in the middle of a compression."""


def _lower_priority() -> None:
    """Let this thread run only on CPU time nothing else wants (SCHED_IDLE), else at nice 19.

    On Linux a thread is a task of its own, so this leaves the consumer's
    other threads (and the catcher's, under ``logrelay up``) as they are.
    """
    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):  # not permitted either: run at normal priority
            os.setpriority(os.PRIO_PROCESS, tid, NICENESS)


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
