"""In-process file consumers for the consumer tests: what they wrote, a disk that stalls on demand."""

from __future__ import annotations

import errno
import json
import os
import threading
from collections.abc import Awaitable, Callable

from consumers.file_consumer import FileConsumer

__all__ = ["ConsumerFactory", "HeldFsync", "written"]

#: The ``consumer_factory`` fixture's type (tests/consumers/conftest.py).
ConsumerFactory = Callable[..., Awaitable[FileConsumer]]


def written(consumer: FileConsumer) -> list[int]:
    """The ``n`` of every JSON line in the consumer's file, in file order."""
    return [json.loads(line)["n"] for line in consumer.settings.output.read_bytes().splitlines()]


class HeldFsync:
    """``os.fsync`` as a slow disk on demand: each call waits, in its thread, until released, then really syncs.

    ``lose_first``: the first call instead fails with EIO after the kernel
    "dropped" the unsynced pages (the file is cut back to ``lose_first``
    bytes), as a failed write-back may do.
    """

    real = staticmethod(os.fsync)

    def __init__(self, *, held: bool = True, lose_first: int | None = None) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        if not held:
            self.release.set()
        self.lose_first = lose_first

    def __call__(self, fd: int) -> None:
        self.entered.set()
        if self.lose_first is not None:
            keep, self.lose_first = self.lose_first, None
            os.ftruncate(fd, keep)
            raise OSError(errno.EIO, "Input/output error")
        assert self.release.wait(30), "never released"
        self.real(fd)
