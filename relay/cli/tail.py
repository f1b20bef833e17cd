"""``logrelay tail``: the newest records of the stream and, with ``-f``, new ones as they come.

It reads with XREVRANGE and XREAD only (consumers.stream_tail): no consumer
group, no acknowledgement, no write, so it never affects what the consumers
deliver.  Filtering and rendering are sans-I/O (consumers.record_filter,
consumers.tail_view) and use the file consumer's formatter, so a line printed
here is the line the central file holds.  This module is the I/O around them:
the options, the Redis client, stdout (colour, a closed pipe) and the signals.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import IO, Any, Final

import click
import redis.exceptions

from consumers.formatting import build_formatter
from consumers.record_filter import RecordFilter, parse_level
from consumers.stream_tail import StreamTail
from consumers.tail_view import NewestCollector, Outcome, TailLine, TailView
from relay.cli.consume import LINE_FORMAT_OPTIONS
from relay.cli.options import (
    LOG_OPTIONS,
    REDIS_URL_OPTION,
    STREAM_OPTIONS,
    ParsedText,
    configure_logging,
    redis_settings,
    with_options,
)
from relay.cli.redis_query import redis_failure
from relay.cli.terminal import printable_bytes
from relay.common.redis_client import RedisSettings, create_redis
from relay.common.redis_refusal import RedisRefused
from relay.common.signals import serve_with_signals

__all__ = ["TAIL_OPTIONS", "tail"]

DEFAULT_LINES: Final = 10
DEFAULT_SCAN_LIMIT: Final = 100_000


class Level(ParsedText):
    """A logging level: a name (debug, info, warning, error, critical) or a number."""

    name = "level"
    ready = (int,)

    def parse(self, text: str) -> int:
        return parse_level(text)


TAIL_OPTIONS = [
    click.option(
        "-n",
        "--lines",
        type=click.IntRange(0),
        default=DEFAULT_LINES,
        help="Print the newest N matching records, oldest first (0: none, with -f only new ones).",
    ),
    click.option("-f", "--follow", is_flag=True, help="Then print new records as they arrive, until Ctrl-C."),
    click.option("--level", type=Level(), default=None, help="Only records of this level and above (name or number)."),
    click.option(
        "--logger",
        multiple=True,
        metavar="PREFIX",
        help="Only records of this logger or below it (app.db: app.db, app.db.pool; not app.dbx). Repeatable: any.",
    ),
    click.option(
        "--grep", default=None, metavar="REGEX", help="Only records whose message matches (Python re.search)."
    ),
    *LINE_FORMAT_OPTIONS,
    click.option(
        "--color/--no-color",
        "color",
        default=None,
        show_default="on a terminal, unless NO_COLOR is set",
        help="Colour lines by level.",
    ),
    click.option(
        "--scan-limit",
        type=click.IntRange(1),
        default=DEFAULT_SCAN_LIMIT,
        help="Read at most this many entries looking for the newest N matches: a filter that matches "
        "nothing stops here instead of reading the whole stream.",
    ),
]

#: click.style arguments per level, from the highest threshold down: INFO stays plain, anything below it is dim.
_LEVEL_STYLES: Final[tuple[tuple[int, dict[str, Any]], ...]] = (
    (50, {"fg": "red", "bold": True}),
    (40, {"fg": "red"}),
    (30, {"fg": "yellow"}),
    (20, {}),
    (0, {"dim": True}),
)


def level_style(level: int | None) -> dict[str, Any]:
    """click.style's arguments for a record of ``level`` (no level: plain)."""
    if level is None:
        return {}
    for threshold, style in _LEVEL_STYLES:
        if level >= threshold:
            return style
    return {}


class OutputClosed(Exception):
    """Whoever read stdout went away (``logrelay tail -f | head``): a normal end."""


class TailPrinter:
    """Lines to stdout (coloured if asked), notes to stderr; a closed stdout raises :class:`OutputClosed`.

    ``escape``: control characters in the lines (a sender's ``ESC ]...``) are
    printed as ``\\xNN``, not sent to the terminal; for a terminal, or output
    coloured for one.  Otherwise the lines are the central file's, byte for byte.
    """

    def __init__(self, out: IO[bytes], *, color: bool, note: Callable[[str], None], escape: bool = True) -> None:
        self._out = out
        self._color = color
        self._note = note
        self._escape = escape

    def show(self, outcomes: list[Outcome]) -> None:
        """Print each outcome in order, then flush (a follower's reader sees each batch at once)."""
        try:
            for outcome in outcomes:
                if isinstance(outcome, TailLine):
                    if self._escape:
                        outcome = TailLine(outcome.entry_id, printable_bytes(outcome.text), outcome.level)
                    self._out.write(self._colored(outcome) if self._color else outcome.text)
                else:
                    # Lines before a note must not come after it on a terminal showing both.
                    self._out.flush()
                    self._note(outcome.note())
            self._out.flush()
        except BrokenPipeError as exc:
            raise OutputClosed from exc

    @staticmethod
    def _colored(line: TailLine) -> bytes:
        style = level_style(line.level)
        if not style:
            return line.text
        # The entry's lines (a traceback follows its line) share its colour; the newline stays outside.
        text = line.text.decode("utf-8", "replace").rstrip("\n")
        return (click.style(text, **style) + "\n").encode("utf-8", "backslashreplace")


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null, so that the interpreter's last flush of a closed pipe does not print an error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file descriptor (a test runner's stdout): nothing will flush into a pipe


def _use_color(option: bool | None, out: IO[bytes]) -> bool:
    if option is not None:
        return option
    return out.isatty() and not os.environ.get("NO_COLOR")


class Tail:
    """One run of ``logrelay tail``: the newest lines, then (following) new ones until cancelled."""

    def __init__(
        self,
        settings: RedisSettings,
        stream_key: str,
        view: TailView,
        printer: TailPrinter,
        *,
        lines: int,
        follow: bool,
        scan_limit: int,
    ) -> None:
        self._settings = settings
        self._stream_key = stream_key
        self._view = view
        self._printer = printer
        self._lines = lines
        self._follow = follow
        self._scan_limit = scan_limit

    async def run(self) -> int:
        client = create_redis(self._settings, client_name="logrelay-tail", slot_key=self._stream_key)
        try:
            reader = StreamTail(client, self._stream_key)
            start = await self._show_newest(reader) if self._lines else await reader.newest_id()
            if self._follow:
                # A blocked XREAD is a reply that takes block_ms: keep it well inside the socket timeout.
                block_ms = max(1, min(2000, int(self._settings.socket_timeout * 500)))
                async for batch in reader.follow(start, block_ms=block_ms, on_outage=self._outage, on_back=self._back):
                    shown = (self._view.render(entry_id, fields) for entry_id, fields in batch)
                    self._printer.show([outcome for outcome in shown if outcome is not None])
        except redis.exceptions.RedisError as exc:
            raise click.ClickException(redis_failure(self._settings, exc)) from None
        finally:
            await client.aclose()
        return 0

    def _outage(self, exc: redis.exceptions.RedisError | OSError) -> None:
        """Say that Redis went away, and go on; a refused login (a password changed meanwhile) ends the tail."""
        if RedisRefused.of(exc, self._settings.url) is not None:
            raise click.ClickException(redis_failure(self._settings, exc))
        click.echo(f"logrelay tail: {redis_failure(self._settings, exc)}; retrying", err=True)

    def _back(self, last: bytes) -> None:
        click.echo(f"logrelay tail: Redis answers again; going on after {last.decode()}", err=True)

    async def _show_newest(self, reader: StreamTail) -> bytes:
        """Print the newest matching lines; return the id a follow goes on from."""
        collector = NewestCollector(self._view, self._lines)
        scan = await reader.scan_newest(collector, self._scan_limit)
        self._printer.show(collector.oldest_first())
        if scan.limit_reached:
            click.echo(
                f"logrelay tail: {collector.found} of {self._lines} records found in the newest {collector.scanned} "
                f"entries; --scan-limit {self._scan_limit} stopped the search",
                err=True,
            )
        return scan.newest_id


async def run_until_stopped(tail_run: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run ``tail_run()`` as a task that SIGINT or SIGTERM cancels; a stop by signal is exit status 0."""
    work: asyncio.Task[int] = asyncio.ensure_future(tail_run())

    async def wait() -> int:
        try:
            return await work
        except asyncio.CancelledError:
            if work.cancelled():
                return 0  # stopped by a signal: the normal end of a follow
            raise

    def stop() -> None:
        work.cancel()

    return await serve_with_signals(wait, stop)


@click.command()
@with_options(REDIS_URL_OPTION, STREAM_OPTIONS, TAIL_OPTIONS, LOG_OPTIONS)
def tail(**options: Any) -> None:
    """Print the newest records of the stream, and with -f new ones until Ctrl-C.

    Reads without a consumer group: never affects what the consumers deliver.
    """
    configure_logging(options)
    try:
        settings = redis_settings(options)
        record_filter = RecordFilter.build(level=options["level"], loggers=options["logger"], grep=options["grep"])
        formatter = build_formatter(options["format"], options["placeholder"])
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    out = click.get_binary_stream("stdout")
    color = _use_color(options["color"], out)
    printer = TailPrinter(out, color=color, note=lambda text: click.echo(text, err=True), escape=color or out.isatty())
    runner = Tail(
        settings,
        options["stream"],
        TailView(formatter, record_filter),
        printer,
        lines=options["lines"],
        follow=options["follow"],
        scan_limit=options["scan_limit"],
    )
    try:
        code = asyncio.run(run_until_stopped(runner.run))
    except OutputClosed:
        _silence_stdout()
        code = 0
    except KeyboardInterrupt:
        code = 0  # Ctrl-C before the loop took the signal over
    sys.exit(code)
