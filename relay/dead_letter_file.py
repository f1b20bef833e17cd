"""Dead letters copied into a JSON-lines file, so that they outlive an in-memory broker.

``logrelay up`` without ``--redis-url`` keeps its streams in its own memory:
at exit, the dead letters would go with it.  :class:`DeadLetterFile` copies
every letter the catcher and the consumer write into
``<output>.dead-letters.jsonl`` (:func:`dead_letter_path`), beside the
central file, as it arrives: one JSON object per line (:func:`letter_line`),
the entry's id and its fields, read back by :func:`read_letters`, and put
back into a dead-letter stream by :func:`load_letters` (``logrelay
dead-letters load``), where ``list``, ``show`` and ``replay`` work on them.

It reads the dead-letter stream, rather than sitting inside the catcher's
publisher or the consumer, because the stream is where both kinds of letter
meet, in the order they were accepted, and only once each (a batch retried
after a lost reply is applied once).  The file is appended to, never
rewritten; each page of letters is one ``write`` of whole lines, then an
fsync: a process killed (even ``kill -9``) leaves whole lines, and what a
page wrote survives a power loss once its fsync returned.  A line cut short
by a crash of the machine is closed by a newline before the next run
appends, so it costs that one line, never the next.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final, NamedTuple, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from relay.dead_letters import PAGE_SIZE, DeadLetter

__all__ = ["SUFFIX", "DeadLetterFile", "Loaded", "dead_letter_path", "letter_line", "load_letters", "read_letters"]

log = logging.getLogger("logrelay.dead_letter_file")

#: Appended to the central file's name: ``central.log.dead-letters.jsonl`` (not a segment name: rotation
#: and retention leave it alone).
SUFFIX: Final = ".dead-letters.jsonl"
#: Seconds between two looks at the dead-letter stream: letters are rare, and an in-process read is cheap.
POLL_INTERVAL: Final = 0.5
#: The JSON form of a field value that is not UTF-8 (a refused frame's pickle, always): ``{"base64": "..."}``.
BASE64: Final = "base64"


def dead_letter_path(output: Path) -> Path:
    """Where ``logrelay up`` keeps the dead letters of the central file ``output``."""
    return output.with_name(output.name + SUFFIX)


def _value(raw: bytes) -> str | dict[str, str]:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {BASE64: base64.b64encode(raw).decode("ascii")}


def letter_line(letter: DeadLetter) -> bytes:
    """One letter as one JSON line: ``{"id": ID, FIELD: VALUE, ...}``, its fields in the stream's order.

    A value is its text where it is UTF-8, else ``{"base64": ...}`` (a frame's
    pickle): nothing is lost, :func:`read_letters` gives back the same bytes.
    """
    fields = {name.decode("utf-8", "backslashreplace"): _value(value) for name, value in letter.fields.items()}
    return json.dumps({"id": letter.id, **fields}, ensure_ascii=False).encode("utf-8") + b"\n"


def _bytes(value: object) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and isinstance(value.get(BASE64), str):
        return base64.b64decode(value[BASE64], validate=True)
    raise ValueError(f"a field value is neither text nor {{{BASE64!r}: ...}}: {value!r}")


def read_letters(path: Path) -> Iterator[DeadLetter]:
    """The letters of a file :class:`DeadLetterFile` wrote, in order; a line that does not parse is skipped, logged.

    Read a line at a time: a file of any size costs one letter's memory.
    """
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
                letter_id = entry.pop("id")
                if not isinstance(letter_id, str):
                    raise ValueError("no id")
                fields = {name.encode("utf-8"): _bytes(value) for name, value in entry.items()}
            except (ValueError, KeyError, AttributeError, TypeError) as exc:
                log.warning("%s line %d is not a dead letter (%s): skipped", path, number, exc)
                continue
            yield DeadLetter(letter_id, fields)


class Loaded(NamedTuple):
    """What :func:`load_letters` did: letters added, and letters not added because the stream is past their id."""

    added: int
    already: int


async def load_letters(redis: Redis, key: str, letters: Iterable[DeadLetter]) -> Loaded:
    """Add ``letters`` to the dead-letter stream ``key`` under their own ids, a page per round trip.

    A letter whose id is not past the newest id the stream ever had (a
    letter loaded before, even replayed or purged since: Redis remembers the
    last id) is refused by Redis and not added, so loading a file again adds
    nothing and a replay stays exactly once.  Load into a stream the letters
    are newer than: a fresh ``--dead-letter-stream``, or the one ``up`` used.
    """
    added = already = 0
    page: list[DeadLetter] = []

    async def send() -> None:
        nonlocal added, already
        async with redis.pipeline(transaction=False) as pipe:
            for letter in page:
                pipe.xadd(key, letter.fields, id=letter.id)  # type: ignore[arg-type]
            replies = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, ResponseError) and "equal or smaller" in str(reply):
                already += 1
            elif isinstance(reply, Exception):
                raise reply
            else:
                added += 1
        page.clear()

    for letter in letters:
        page.append(letter)
        if len(page) == PAGE_SIZE:
            await send()
    if page:
        await send()
    return Loaded(added, already)


class DeadLetterFile:
    """Appends every letter of the dead-letter stream ``key`` to ``path`` until :meth:`stop`, then the rest.

    Copies from the oldest letter the stream holds (an embedded broker
    starts empty), each one once.  A letter trimmed away (``--dead-letter-max-length``)
    before it was read is not in the file: that takes more letters between
    two reads (:data:`POLL_INTERVAL`) than the bound, and is counted as trimmed.
    """

    def __init__(self, redis: Redis, key: str, path: Path) -> None:
        self._redis = redis
        self._key = key
        self.path = path
        self.written = 0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Copy what the stream holds now, then return from :meth:`run`."""
        self._stop.set()

    async def run(self) -> None:
        fd = await asyncio.to_thread(self._open)
        try:
            last = "-"
            while True:
                stopping = self._stop.is_set()
                try:
                    last = await self._copy_after(fd, last)
                except RedisError as exc:  # the embedded broker does not fail; a real one might
                    log.warning("cannot read dead letters from %r (%s); trying again", self._key, exc)
                if stopping:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), POLL_INTERVAL)
        finally:
            os.close(fd)

    async def _copy_after(self, fd: int, last: str) -> str:
        """Append the letters after ``last``, a page per write; the id of the last one copied."""
        while True:
            start = "-" if last == "-" else "(" + last
            reply = await self._redis.xrange(self._key, start, "+", PAGE_SIZE)
            page = cast(list[tuple[bytes, dict[bytes, bytes]]], reply)
            if not page:
                return last
            letters = [DeadLetter(entry_id.decode(), fields) for entry_id, fields in page]
            await asyncio.to_thread(self._append, fd, b"".join(letter_line(letter) for letter in letters))
            self.written += len(letters)
            last = letters[-1].id

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            # A line a machine crash cut short is ended here, so that the next line starts whole.
            if os.fstat(fd).st_size:
                with self.path.open("rb") as existing:
                    existing.seek(-1, os.SEEK_END)
                    if existing.read(1) != b"\n":
                        self._append(fd, b"\n")
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def _append(fd: int, data: bytes) -> None:
        """``data`` (whole lines) at the end of the file in one write where the kernel takes it whole; then fsync."""
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
