"""``logrelay consume ...``: the consumers' commands."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import click

from consumers.file_consumer import FileConsumer
from consumers.file_sink import FsyncPolicy
from consumers.format_check import FormatError
from consumers.rotation import COMPRESSIONS, RotationSettings, parse_duration
from consumers.settings import FileConsumerSettings
from relay.cli.config_show import log_effective_settings
from relay.cli.options import (
    DEAD_LETTER_LENGTH_OPTION,
    HEALTH_OPTIONS,
    LOG_OPTIONS,
    REDIS_URL_OPTION,
    STREAM_OPTIONS,
    ByteSize,
    ParsedText,
    configure_logging,
    default,
    redis_settings,
    stream_keys,
    with_options,
)
from relay.common.addresses import ListenAddress
from relay.common.redis_client import RedisSettings
from relay.common.signals import option_naming, run_command

__all__ = ["FILE_OPTIONS", "LINE_FORMAT_OPTIONS", "consume", "file_consumer_settings", "format_usage_errors"]


class Duration(ParsedText):
    """Seconds: ``90``, ``90s``, ``15m``, ``1h``, ``7d``, ``hourly``, ``daily``."""

    name = "duration"
    ready = (int, float)

    def parse(self, text: str) -> float:
        return parse_duration(text)


#: How a record becomes a line: the file consumer's, and ``tail``'s (the same lines).
LINE_FORMAT_OPTIONS = [
    click.option(
        # Named "format" (not format_) so that its variable is LOGRELAY_CONSUME_FILE_FORMAT.
        "--format",
        default=default(FileConsumerSettings, "format"),
        help="A logging %-style format (with %(client)s, %(catcher)s, %(received)s), or 'json'.",
    ),
    click.option(
        "--placeholder",
        default=default(FileConsumerSettings, "placeholder"),
        help="Rendered for a format field a record lacks.",
    ),
]


@contextlib.contextmanager
def format_usage_errors() -> Iterator[None]:
    """Turn a :class:`FormatError` raised inside into a usage error naming ``--format`` and its variable."""
    try:
        yield
    except FormatError as exc:
        raise click.BadParameter(str(exc), param_hint=option_naming("format") or "'--format'") from exc


FILE_OPTIONS = [
    click.option(
        "--output",
        type=click.Path(dir_okay=False, writable=True, path_type=Path),
        required=True,
        help="The central log file (PATH.checkpoint and PATH.lock are kept next to it).",
    ),
    *LINE_FORMAT_OPTIONS,
    click.option(
        "--group", default=default(FileConsumerSettings, "group"), help="Consumer group; one per output file."
    ),
    click.option("--consumer", default=None, show_default="HOSTNAME-PID", help="This consumer's name in the group."),
    click.option(
        "--fsync",
        type=click.Choice([policy.value for policy in FsyncPolicy]),
        default=default(FileConsumerSettings, "fsync").value,
        help="batch: fsync before every acknowledgement (survives power loss); never: page cache only.",
    ),
    click.option(
        "--batch-size",
        type=click.IntRange(1),
        default=default(FileConsumerSettings, "batch_size"),
        help="Most entries read per batch.",
    ),
    click.option(
        "--block-ms",
        type=click.IntRange(1),
        default=default(FileConsumerSettings, "block_ms"),
        help="Longest wait for new entries per read.",
    ),
    click.option(
        "--sync-interval-ms",
        type=click.IntRange(0),
        default=default(FileConsumerSettings, "sync_interval_ms"),
        help="Least time between two syncs (fsync, checkpoint, acknowledgement) while entries keep coming; "
        "lines are written at once.",
    ),
    click.option(
        "--trim-interval",
        type=click.FloatRange(0),
        default=default(FileConsumerSettings, "trim_interval"),
        help="Seconds between trims of the stream below what every consumer group acknowledged (0: never).",
    ),
    click.option(
        "--stale-group-after",
        type=Duration(),
        default=default(FileConsumerSettings, "stale_group_after"),
        show_default="1h",
        help="Warn (log, metrics) about a consumer group of the stream with no consumer, or none that read "
        "for this long (1h, 30m): it keeps entries from being trimmed.",
    ),
    click.option(
        "--rotate-size",
        type=ByteSize(),
        default=None,
        help="Rotate the file once it holds this much (256KiB, 100MiB): it becomes PATH.<UTC time>.",
    ),
    click.option(
        "--rotate-interval",
        type=Duration(),
        default=None,
        help="Rotate at each boundary of this period on the UTC clock: hourly, daily, or a duration (15m).",
    ),
    click.option("--keep", type=click.IntRange(0), default=None, help="Keep at most this many rotated segments."),
    click.option("--keep-age", type=Duration(), default=None, help="Remove segments rotated longer ago (7d)."),
    click.option(
        "--keep-bytes", type=ByteSize(), default=None, help="Remove the oldest segments beyond this total size."
    ),
    click.option(
        "--compress",
        type=click.Choice(COMPRESSIONS),
        default=default(RotationSettings, "compress"),
        help="Compress rotated segments (in a thread, off the write path): PATH.<UTC time>.gz.",
    ),
    click.option(
        "--max-deliveries",
        type=click.IntRange(1),
        default=default(FileConsumerSettings, "max_deliveries"),
        help="An entry delivered this often without being written goes to dead letters.",
    ),
]


def file_consumer_settings(
    options: dict[str, Any], redis: RedisSettings | None = None, *, health_listen: ListenAddress | None = None
) -> FileConsumerSettings:
    """Map ``consume file``'s option values onto :class:`FileConsumerSettings`.

    ``health_listen`` apart: ``logrelay up``'s --health-listen is the one endpoint of both halves, not the consumer's.
    """
    extra = {"consumer": options["consumer"]} if options["consumer"] else {}
    return FileConsumerSettings(
        output=options["output"],
        redis=redis or redis_settings(options),
        keys=stream_keys(options),
        group=options["group"],
        format=options["format"],
        placeholder=options["placeholder"],
        fsync=FsyncPolicy(options["fsync"]),
        batch_size=options["batch_size"],
        block_ms=options["block_ms"],
        max_deliveries=options["max_deliveries"],
        dead_letter_max_length=options["dead_letter_max_length"],
        trim_interval=options["trim_interval"],
        stale_group_after=options["stale_group_after"],
        sync_interval_ms=options["sync_interval_ms"],
        rotation=RotationSettings(
            size=options["rotate_size"],
            interval=options["rotate_interval"],
            keep=options["keep"],
            keep_age=options["keep_age"],
            keep_bytes=options["keep_bytes"],
            compress=options["compress"],
        ),
        health_listen=health_listen,
        **extra,
    )


@click.group()
def consume() -> None:
    """Read the record stream through a consumer group and write a sink."""


@consume.command("file")
@with_options(REDIS_URL_OPTION, STREAM_OPTIONS, DEAD_LETTER_LENGTH_OPTION, FILE_OPTIONS, HEALTH_OPTIONS, LOG_OPTIONS)
def consume_file(**options: Any) -> None:
    """Write every record of the stream to one file, exactly once across crashes."""
    configure_logging(options)
    log_effective_settings()

    def build() -> tuple[Callable[[], Coroutine[Any, Any, int]], str]:
        with format_usage_errors():
            settings = file_consumer_settings(options, health_listen=options["health_listen"])
            consumer = FileConsumer(settings)
        return consumer.serve, f"cannot write {settings.output}"

    run_command(build)
