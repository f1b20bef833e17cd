"""``logrelay dead-letters list | show ID | replay | purge | load FILE``: look at the dead-letter stream and act on it.

The work is :mod:`relay.dead_letters`' (reading, classifying, replaying);
this module parses options, talks to the user and maps failures onto one
line and an exit status: 2 for usage, 1 for what went wrong at run time
(Redis unreachable or refusing, an id that is not there, letters a replay
left in place).  Every command pages through the stream
(:data:`relay.dead_letters.PAGE_SIZE` entries per call), oldest first.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, Final, TypeVar

import click
from redis.asyncio import Redis

from relay.cli.options import (
    DECODE_OPTIONS,
    REDIS_URL_OPTION,
    STREAM_LENGTH_OPTION,
    STREAM_OPTIONS,
    decode_limits,
    redis_settings,
    stream_keys,
    with_options,
)
from relay.cli.redis_query import run_query
from relay.cli.terminal import printable
from relay.common.stream import StreamKeys
from relay.dead_letter_file import load_letters, read_letters
from relay.dead_letters import (
    DeadLetter,
    dead_letters,
    delete_range,
    fetch,
    last_id,
    parse_before,
    replay,
    valid_id,
)

__all__ = ["dead_letters_group", "hex_dump"]

T = TypeVar("T")

#: Bytes of ``raw`` that ``show`` prints as a hex dump (``--raw`` writes them all).
HEX_PREVIEW: Final = 256
#: Characters of any other field ``show`` prints.
TEXT_PREVIEW: Final = 4096
#: Characters of the reason in ``list``'s table (``--json`` has it whole).
REASON_WIDTH: Final = 60


def _run(options: dict[str, Any], work: Callable[[Redis, StreamKeys], Coroutine[Any, Any, T]]) -> T:
    """Run ``work`` with a client for ``--redis-url`` and the stream keys; Redis failures as one line, exit 1."""
    try:
        settings = redis_settings(options)
        keys = stream_keys(options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc

    return run_query(
        settings, lambda redis: work(redis, keys), client_name="logrelay-dead-letters", slot_key=keys.records
    )


def _check_ids(ids: tuple[str, ...]) -> None:
    for letter_id in ids:
        if not valid_id(letter_id):
            raise click.UsageError(f"not a dead letter id: {letter_id!r} (ids look like 1700000000000-0)")


async def _fetch_all(redis: Redis, key: str, ids: tuple[str, ...]) -> list[DeadLetter]:
    """The letters named on the command line; one line and exit 1, before anything is done, if one is not there."""
    letters = []
    for letter_id in dict.fromkeys(ids):  # each once, in the order given
        letter = await fetch(redis, key, letter_id)
        if letter is None:
            raise click.ClickException(f"no dead letter {letter_id} in {key}")
        letters.append(letter)
    return letters


def _one_line(text: str, width: int) -> str:
    text = printable(" ".join(text.split()), one_line=True)
    return text if len(text) <= width else text[: width - 3] + "..."


def hex_dump(data: bytes) -> str:
    """``data`` as offset, 16 bytes in hex and their printable ASCII, per line (as ``xxd`` shows it)."""
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        hex_part = " ".join(chunk[i : i + 2].hex() for i in range(0, len(chunk), 2))
        text = "".join(chr(byte) if 32 <= byte < 127 else "." for byte in chunk)
        lines.append(f"{offset:08x}: {hex_part:<39}  {text}")
    return "\n".join(lines)


@click.group("dead-letters")
def dead_letters_group() -> None:
    """Look at the dead-letter stream, replay what now decodes, purge the rest."""


@dead_letters_group.command("list")
@click.option("--json", is_flag=True, help="A JSON array: id, kind, reason, client, time, received, size.")
@click.option("--count", type=click.IntRange(1), default=None, help="Show at most this many.  [default: all]")
@with_options(REDIS_URL_OPTION, STREAM_OPTIONS)
def list_letters(count: int | None, **options: Any) -> None:
    """List dead letters, oldest first: id, time received (UTC), kind (catcher or consumer), client, size, reason."""
    # The option is --json (LOGRELAY_DEAD_LETTERS_LIST_JSON); the name json is the module's here.
    as_json: bool = options.pop("json")

    async def work(redis: Redis, keys: StreamKeys) -> None:
        shown = 0
        if as_json:
            # Written as read, page by page: the stream is never held whole.
            click.echo("[", nl=False)
            async for letter in dead_letters(redis, keys.dead_letters, limit=count):
                click.echo(("," if shown else "") + "\n  " + json.dumps(letter.summary(), ensure_ascii=False), nl=False)
                shown += 1
            click.echo("\n]" if shown else "]")
            return
        row = "{:<22} {:<27} {:<8} {:<24} {:>9}  {}"
        async for letter in dead_letters(redis, keys.dead_letters, limit=count):
            if not shown:
                click.echo(row.format("ID", "TIME (UTC)", "KIND", "CLIENT", "SIZE", "REASON"))
            reason = _one_line(letter.reason, REASON_WIDTH)
            client, time = printable(letter.client, one_line=True), printable(letter.time, one_line=True)
            click.echo(row.format(letter.id, time, letter.kind, client, letter.size, reason))
            shown += 1
        if not shown:
            click.echo(f"no dead letters in {keys.dead_letters}")

    _run(options, work)


@dead_letters_group.command("show")
@click.argument("letter_id", metavar="ID")
@click.option(
    "--raw",
    "raw_only",
    allow_from_autoenv=False,
    is_flag=True,
    help="Write only the refused bytes, exactly, to stdout (for a file).",
)
@with_options(REDIS_URL_OPTION, STREAM_OPTIONS)
def show(letter_id: str, raw_only: bool, **options: Any) -> None:
    """Show every field of one dead letter; raw as a hex dump of its first 256 bytes and its length.

    With --raw, the refused bytes alone: a catcher letter's frame pickle
    (without the 4-byte length header), a consumer letter's record field.
    """
    _check_ids((letter_id,))

    async def work(redis: Redis, keys: StreamKeys) -> None:
        (letter,) = await _fetch_all(redis, keys.dead_letters, (letter_id,))
        if raw_only:
            out = click.get_binary_stream("stdout")
            out.write(letter.payload)
            out.flush()
            return
        click.echo(f"id: {letter.id}")
        click.echo(f"kind: {letter.kind}")
        click.echo(f"time: {printable(letter.time, one_line=True)}")
        for name, value in letter.fields.items():
            label = printable(name.decode("utf-8", "backslashreplace"), one_line=True)
            if label == "raw":
                shown = f" (first {HEX_PREVIEW} shown)" if len(value) > HEX_PREVIEW else ""
                click.echo(f"raw: {len(value)} bytes{shown}")
                if value:
                    click.echo(hex_dump(value[:HEX_PREVIEW]))
                continue
            text = value.decode("utf-8", "backslashreplace")
            if len(text) > TEXT_PREVIEW:
                text = f"{text[:TEXT_PREVIEW]}... ({len(value)} bytes)"
            click.echo(f"{label}: {printable(text)}")

    _run(options, work)


@dead_letters_group.command("replay")
@click.argument("ids", nargs=-1, metavar="[ID]...")
# What to act on is said on the command line only: never from the environment or a config file.
@click.option(
    "--all",
    "all_",
    is_flag=True,
    allow_from_autoenv=False,
    help="Every dead letter there is when the command starts, oldest first.",
)
@click.option("--dry-run", is_flag=True, help="Decode and report, write nothing.")
@with_options(DECODE_OPTIONS, STREAM_LENGTH_OPTION, REDIS_URL_OPTION, STREAM_OPTIONS)
def replay_letters(ids: tuple[str, ...], all_: bool, dry_run: bool, **options: Any) -> None:
    """Put dead letters back into the records stream, each once, and remove them from the dead letters.

    A catcher letter's frame is decoded again, as the catcher would under
    the limits given here (raise the one it was refused for), and published
    with its original client, catcher and time; a consumer letter's record
    goes back as it was, to be read by every consumer group of the stream.
    What still does not decode stays, and the exit status is 1.
    """
    if bool(ids) == all_:
        raise click.UsageError("give dead letter IDs or --all (one of them)")
    _check_ids(ids)
    try:
        limits = decode_limits(options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    max_length: int = options["max_stream_length"]

    async def work(redis: Redis, keys: StreamKeys) -> int:
        if all_:
            end = await last_id(redis, keys.dead_letters)
            if end is None:
                click.echo(f"no dead letters in {keys.dead_letters}")
                return 0
            letters = dead_letters(redis, keys.dead_letters, end=end)
        else:
            letters = _iterate(await _fetch_all(redis, keys.dead_letters, ids))
        tally = {"replayed": 0, "would replay": 0, "refused": 0, "gone": 0, "full": 0}
        async for result in replay(redis, keys, letters, limits, max_length=max_length, dry_run=dry_run):
            tally[result.outcome] += 1
            letter = result.letter
            what = printable(f"{letter.id} ({letter.kind}, {letter.client or '-'}, {letter.time})", one_line=True)
            if result.outcome == "refused":
                click.echo(f"still refused {what}: {_one_line(result.reason, 200)}")
            elif result.outcome in ("gone", "full"):
                click.echo(f"not replayed {what}: {result.reason}")
                if result.outcome == "full":
                    break  # every letter after it would find the stream full too
            else:
                click.echo(f"{result.outcome} {what}")
        done = "would replay" if dry_run else "replayed"
        summary = f"{done} {tally[done]}, still refused {tally['refused']}"
        if tally["gone"]:
            summary += f", gone meanwhile {tally['gone']}"
        if tally["full"]:
            summary += ", stopped: the records stream is full"
        click.echo(summary)
        return 1 if tally["refused"] or tally["full"] else 0

    sys.exit(_run(options, work))


async def _iterate(letters: list[DeadLetter]) -> AsyncIterator[DeadLetter]:
    for letter in letters:
        yield letter


@dead_letters_group.command("purge")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option(
    "--all", "all_", is_flag=True, allow_from_autoenv=False, help="Every dead letter there is when the command starts."
)
@click.option(
    "--before",
    metavar="ID|TIME",
    allow_from_autoenv=False,
    help="Those written before this id, or this UTC time (2025-01-31T12:00:00Z).",
)
@click.option(
    "--yes", is_flag=True, allow_from_autoenv=False, help="Remove without asking (needed when not on a terminal)."
)
@with_options(REDIS_URL_OPTION, STREAM_OPTIONS)
def purge(ids: tuple[str, ...], all_: bool, before: str | None, yes: bool, **options: Any) -> None:
    """Remove dead letters for good: by id, --all, or --before an id or time."""
    if sum((bool(ids), all_, before is not None)) != 1:
        raise click.UsageError("give dead letter IDs, --all or --before (one of them)")
    _check_ids(ids)
    end = ""
    if before is not None:
        try:
            end = parse_before(before)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
    if not yes:
        what = f"{len(ids)} dead letter(s)" if ids else "every dead letter" + (f" before {before}" if before else "")
        if not sys.stdin.isatty():
            raise click.UsageError(f"refusing to remove {what} without --yes")
        click.confirm(f"Remove {what} for good?", abort=True)

    async def work(redis: Redis, keys: StreamKeys) -> int:
        key = keys.dead_letters
        if ids:
            letters = await _fetch_all(redis, key, ids)
            return int(await redis.xdel(key, *(letter.id for letter in letters)))
        stop = end or await last_id(redis, key)
        return 0 if stop is None else await delete_range(redis, key, stop)

    removed = _run(options, work)
    click.echo(f"removed {removed} dead letter(s)")


@dead_letters_group.command("load")
@click.argument("path", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_options(REDIS_URL_OPTION, STREAM_OPTIONS)
def load(path: Path, **options: Any) -> None:
    """Put the letters of a dead-letter file (``logrelay up``'s OUTPUT.dead-letters.jsonl) into the dead-letter stream.

    Each keeps its id, so list, show and replay then work on them, and
    loading the file again adds none of them twice (nor any replayed since).
    Load into a stream they are newer than: a new --dead-letter-stream.
    """

    try:
        path.open("rb").close()  # unreadable: said now, not as a Redis failure
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror or exc}") from exc

    async def work(redis: Redis, keys: StreamKeys) -> None:
        loaded = await load_letters(redis, keys.dead_letters, read_letters(path))
        click.echo(f"loaded {loaded.added} dead letter(s) into {keys.dead_letters}", nl=not loaded.already)
        if loaded.already:
            click.echo(f"; {loaded.already} not added: {keys.dead_letters} is past their ids (loaded before?)")

    _run(options, work)
