"""``logrelay status``: is it keeping up?  The stream, its consumer groups, the dead letters, the live processes.

A table for people, ``--json`` for scripts; ``--max-lag N`` makes it exit 1
when a group has more than N entries left to read (cron and monitoring
checks).  Read-only: it reads no group's entries and changes nothing.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click
import orjson

from relay.cli.consume import Duration
from relay.cli.options import REDIS_URL_OPTION, STREAM_OPTIONS, redis_settings, stream_keys, with_options
from relay.cli.redis_query import run_query
from relay.cli.terminal import printable
from relay.common.group_staleness import DEFAULT_STALE_AFTER
from relay.common.stream_report import StreamReport, read_report

__all__ = ["lagging_groups", "render_report", "status"]


def _when(moment: float | None) -> str:
    if moment is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(moment))


def _seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _table(rows: list[list[str]]) -> list[str]:
    # Cells hold what senders and processes wrote (a dead letter's reason, a heartbeat's address): shown, not obeyed.
    rows = [[printable(cell, one_line=True) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def render_report(report: StreamReport) -> str:
    """The report as text for people."""
    lines = []
    if not report.exists:
        lines.append(f"stream {report.stream!r}: does not exist (nothing was published yet, or another --stream)")
    else:
        lines.append(
            f"stream {report.stream!r}: {report.length:,} entries, "
            f"first {report.first_id or '-'} ({_when(report.first_time)}), "
            f"last {report.last_id or '-'} ({_when(report.last_time)})"
        )
    if report.groups:
        rows = [["GROUP", "LAG", "PENDING", "LAST DELIVERED", "CONSUMERS (pending, idle)", "STATE"]]
        for group in report.groups:
            consumers = ", ".join(f"{c.name} ({c.pending}, {_seconds(c.idle)})" for c in group.consumers) or "none"
            lag = "?" if group.lag is None else f"{group.lag:,}" + ("+" if group.lag_counted else "")
            state = "stale" if group.stale else "reading"
            rows.append([group.name, lag, f"{group.pending:,}", group.last_delivered_id, consumers, state])
        lines += ["consumer groups:", *_table(rows)]
        if any(group.stale for group in report.groups):
            lines.append(
                "  stale: no consumer read for --stale-group-after; trimming keeps its entries "
                "(XGROUP DESTROY it if nobody will)"
            )
    elif report.exists:
        lines.append("consumer groups: none (no consumer has read this stream)")
    lines.append(f"dead letters ({report.dead_letter_stream!r}): {report.dead_letters:,}")
    if report.newest_dead_letters:
        rows = [["ID", "TIME", "CLIENT", "REASON"]]
        for letter in report.newest_dead_letters:
            reason = letter.reason if len(letter.reason) <= 80 else letter.reason[:77] + "..."
            rows.append([letter.id, _when(letter.time), letter.client or "-", reason])
        lines += _table(rows)
    if report.processes:
        rows = [["KIND", "ID", "WHERE", "STATE", "RATE", "LAST BEAT"]]
        for process in report.processes:
            rows.append(_process_row(process))
        lines += ["processes:", *_table(rows)]
    else:
        lines.append("processes: none beating (no catcher or consumer has reported in the last 15 s)")
    return "\n".join(lines)


def _rate(rates: Any, name: str, unit: str) -> str:
    """A rate of the heartbeat's, if it is one (anyone who can write the key can write anything there)."""
    value = rates.get(name, 0) if isinstance(rates, dict) else 0
    if not isinstance(value, int | float) or isinstance(value, bool):
        return f"? {unit}/s"
    return f"{value:,.0f} {unit}/s"


def _process_row(process: dict[str, Any]) -> list[str]:
    rates = process.get("rates")
    if process.get("kind") == "catcher":
        where = str(process.get("address", "-"))
        inputs = process.get("inputs")
        if isinstance(inputs, dict):
            # The other inputs (--listen-syslog, --listen-datagram, --listen-http) beside SocketHandler's.
            where = ", ".join([where, *(f"{kind} {address}" for kind, address in inputs.items())])
        state = f"{process.get('connections', 0)} connections" + ("" if process.get("ready", True) else ", not ready")
        awaiting = process.get("awaiting_replicas")
        if type(awaiting) is int and awaiting > 0:
            # Applied on the master, held until --wait-replicas replicas acknowledge them.
            state += f", {awaiting:,} awaiting {process.get('wait_replicas')} replicas"
        rate = _rate(rates, "records_received", "records")
    else:
        where = str(process.get("output", "-"))
        state = "writing" if process.get("writing") else "standing by"
        rate = _rate(rates, "lines_written", "lines")
    return [str(process.get("kind")), str(process.get("id")), where, state, rate, f"{_seconds(process['age'])} ago"]


def lagging_groups(report: StreamReport, max_lag: int) -> list[str]:
    """One message per group whose lag exceeds ``max_lag`` (or cannot be told), or one if no group reads a stream
    that holds entries."""
    messages = []
    if report.length and not report.groups:
        # Nobody reads the stream: everything in it waits (a consumer that never started, another --stream).
        messages.append(f"no consumer group reads stream {report.stream!r}, which holds {report.length:,} entries")
    for group in report.groups:
        if group.lag is None or group.lag > max_lag:
            lag = "an unknown number of" if group.lag is None else f"{group.lag:,}"
            messages.append(f"group {group.name!r} has {lag} entries left to read (more than --max-lag {max_lag:,})")
    return messages


@click.command()
@with_options(REDIS_URL_OPTION, STREAM_OPTIONS)
@click.option("--json", is_flag=True, help="One JSON object, for scripts.")
@click.option(
    "--max-lag",
    type=click.IntRange(0),
    default=None,
    help="Exit 1 if a consumer group has more than this many entries left to read.",
)
@click.option(
    "--stale-group-after",
    type=Duration(),
    default=DEFAULT_STALE_AFTER,
    show_default="1h",
    help="Mark a consumer group stale when none of its consumers read for this long (1h, 30m), or it has none.",
)
def status(**options: Any) -> None:
    """Show the stream, its consumer groups (lag, pending), the dead letters and the live catchers and consumers."""
    keys = stream_keys(options)
    try:
        settings = redis_settings(options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    report = run_query(
        settings,
        lambda redis: read_report(redis, keys, stale_after=options["stale_group_after"]),
        client_name="logrelay-status",
        slot_key=keys.records,
    )
    if options["json"]:
        click.echo(orjson.dumps(report.as_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(render_report(report))
    if options["max_lag"] is not None:
        lagging = lagging_groups(report, options["max_lag"])
        for message in lagging:
            click.echo(f"logrelay status: {message}", err=True)
        if lagging:
            sys.exit(1)
