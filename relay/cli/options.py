"""Click options, declared once and shared by the commands that take them.

``catch``, ``consume file`` and ``up`` take overlapping options; each list
below is applied with :func:`with_options`, and each command maps the values
onto its settings object with the ``*_settings`` functions, so an option's
name, type, default and help live in exactly one place.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import click

from relay.cli.log_output import LOG_OPTIONS, configure_logging
from relay.common.addresses import ListenAddress, parse_network
from relay.common.identity import process_name
from relay.common.redis_client import DEFAULT_REDIS_URL, RedisSettings, mask_url
from relay.common.signals import option_naming
from relay.common.stream import DEFAULT_DEAD_LETTER_MAX_LENGTH, StreamKeys
from relay.decode.frames import DecodeLimits
from relay.settings import MAX_LINGER_MS, CatcherSettings, TLSSettings

__all__ = [
    "CATCHER_OPTIONS",
    "DEAD_LETTER_LENGTH_OPTION",
    "DECODE_OPTIONS",
    "HEALTH_OPTIONS",
    "LOG_OPTIONS",
    "REDIS_URL_OPTION",
    "STREAM_LENGTH_OPTION",
    "STREAM_OPTIONS",
    "ParsedText",
    "catcher_settings",
    "configure_logging",
    "decode_limits",
    "redis_settings",
    "stream_keys",
    "with_options",
]

F = TypeVar("F", bound=Callable[..., Any])
Option = Callable[[F], F]


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS: Final = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_byte_size(text: str) -> int:
    """Parse ``"1048576"``, ``"512KiB"``, ``"1M"`` or ``"2 GiB"`` into bytes (binary units)."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a byte size: {text!r} (try 1048576, 512KiB or 1MiB)")
    number, unit, _ = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


def format_byte_size(size: int) -> str:
    """``1048576`` as ``"1MiB"``: the largest binary unit that divides it (for defaults shown in --help)."""
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def default(settings: type, name: str) -> Any:
    """The default of field ``name`` of a settings dataclass: the one place an option's default is written."""
    for item in dataclasses.fields(settings):
        if item.name == name:
            if item.default is not dataclasses.MISSING:
                return item.default
            if item.default_factory is not dataclasses.MISSING:
                return item.default_factory()
            raise ValueError(f"{settings.__name__}.{name} has no default")
    raise ValueError(f"{settings.__name__} has no field {name}")


class ParsedText(click.ParamType):  # type: ignore[type-arg]
    """An option's value parsed from its text by :meth:`parse`; a ValueError is a usage error naming the option.

    A value already of a ``ready`` type (a default written as one) passes as it is.
    """

    ready: tuple[type, ...] = ()

    def parse(self, text: str) -> Any:
        raise NotImplementedError

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, self.ready):
            return value
        try:
            return self.parse(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class ByteSize(ParsedText):
    """A byte count: ``1048576``, ``512KiB``, ``1MiB``."""

    name = "size"
    ready = (int,)

    def parse(self, text: str) -> int:
        return parse_byte_size(text)


class Address(ParsedText):
    """``HOST:PORT``, ``[::1]:PORT`` or ``:PORT``."""

    name = "host:port"
    ready = (ListenAddress,)

    def parse(self, text: str) -> ListenAddress:
        return ListenAddress.parse(text)


def with_options(*groups: list[Any]) -> Callable[[F], F]:
    """Apply lists of click options to a command, in the order given."""

    def decorate(command: F) -> F:
        for option in reversed([option for group in groups for option in group]):
            command = option(command)
        return command

    return decorate


REDIS_URL_OPTION = [
    click.option(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        help="Redis URL (redis://, rediss://, unix://, redis+sentinel://, redis+cluster://).",
    ),
]

STREAM_OPTIONS = [
    click.option("--stream", default=default(StreamKeys, "records"), help="Stream key of the records."),
    click.option("--dead-letter-stream", default="", show_default="{STREAM}:dead", help="Stream key for dead letters."),
    click.option(
        "--redis-timeout",
        type=click.FloatRange(0.1, 3600),
        default=default(RedisSettings, "socket_timeout"),
        help="Seconds to wait for a Redis reply.",
    ),
]

#: A catcher's, a consumer's, or ``logrelay up``'s (which serves both on it).
HEALTH_OPTIONS = [
    click.option(
        "--health-listen",
        type=Address(),
        default=None,
        show_default="no endpoint",
        help="Address of the HTTP endpoint: /livez, /readyz (for balancers), /metrics (Prometheus).",
    ),
]

#: The decoder's limits: the catcher applies them to every frame, ``dead-letters replay`` to the frames it
#: decodes again (so that a replay can raise the limit a frame was refused for).
DECODE_OPTIONS = [
    click.option(
        "--max-frame-bytes",
        type=ByteSize(),
        default=format_byte_size(default(DecodeLimits, "max_frame_bytes")),
        help="Largest frame accepted; a larger one goes to dead letters (its first bytes and size), "
        "up to --max-skip-bytes.",
    ),
    click.option(
        "--max-decoded-bytes",
        type=ByteSize(),
        default=format_byte_size(default(DecodeLimits, "max_decoded_bytes")),
        help="Largest record once decoded (JSON size); larger goes to dead letters.",
    ),
    click.option(
        "--max-depth",
        type=click.IntRange(1, DecodeLimits.MAX_DEPTH_LIMIT),
        default=default(DecodeLimits, "max_depth"),
        help="Deepest nesting accepted in a record.",
    ),
]

#: The stream's length bound: the catcher's, and the one ``dead-letters replay`` respects.
STREAM_LENGTH_OPTION = [
    click.option(
        "--max-stream-length",
        type=click.IntRange(0),
        default=default(CatcherSettings, "max_stream_length"),
        help="Most entries the stream may hold (0: no limit); consumers trim what every group acknowledged.",
    ),
]

#: The dead-letter stream's bound: every command that writes dead letters (catch, consume file, up) keeps to it.
DEAD_LETTER_LENGTH_OPTION = [
    click.option(
        "--dead-letter-max-length",
        type=click.IntRange(0),
        default=DEFAULT_DEAD_LETTER_MAX_LENGTH,
        help="About the most dead letters kept (whole stream nodes are trimmed: up to ~100 more); the oldest go "
        "first, counted as dead_letters_trimmed (0: no limit).",
    ),
]

CATCHER_OPTIONS = [
    click.option(
        "--listen",
        type=Address(),
        default=str(default(CatcherSettings, "listen")),
        help="Address to accept SocketHandler connections on.",
    ),
    click.option(
        "--listen-syslog",
        type=Address(),
        default=None,
        help="Also take syslog (RFC 5424 and 3164) on this address, UDP and TCP (TLS with --tls-cert); "
        "e.g. 127.0.0.1:5514.",
    ),
    click.option(
        "--listen-datagram",
        type=Address(),
        default=None,
        help="Also take stdlib DatagramHandler records (UDP) on this address, e.g. 127.0.0.1:9021.",
    ),
    click.option(
        "--listen-http",
        type=Address(),
        default=None,
        help="Also take stdlib HTTPHandler records and JSON (POST, GET) on this address (TLS with --tls-cert).",
    ),
    click.option(
        "--http-basic-auth",
        metavar="USER:PASSWORD",
        default=None,
        help="With --listen-http: require these HTTP basic-auth credentials (HTTPHandler's credentials=).",
    ),
    click.option(
        "--http-basic-auth-file",
        type=click.Path(dir_okay=False, exists=True),
        default=None,
        help="With --listen-http: require one of the USER:PASSWORD lines of this file.",
    ),
    click.option("--catcher-id", default=None, show_default="HOSTNAME-PID", help="Name recorded in every entry."),
    *DECODE_OPTIONS,
    click.option(
        "--max-skip-bytes",
        type=ByteSize(),
        default=None,
        # Not a fixed default: a --max-frame-bytes above it (valid before the skip cap existed) must still start.
        show_default=f"{format_byte_size(default(DecodeLimits, 'max_skip_bytes'))}, or --max-frame-bytes if larger",
        help="A SocketHandler frame over --max-frame-bytes and up to this is read and discarded (never held), "
        "the connection goes on; a larger one closes the connection.",
    ),
    click.option(
        "--max-partial-bytes",
        type=ByteSize(),
        default=format_byte_size(default(CatcherSettings, "max_partial_bytes")),
        help="Bytes of incomplete frames all connections together may hold; beyond it, a connection waits to read.",
    ),
    click.option(
        "--buffer-bytes",
        type=ByteSize(),
        default=format_byte_size(default(CatcherSettings, "buffer_bytes")),
        help="Records held while Redis is away (a publish failed); when full, reading stops.",
    ),
    *STREAM_LENGTH_OPTION,
    click.option(
        "--full-policy",
        type=click.Choice(["block", "shed"]),
        default=default(CatcherSettings, "full_policy"),
        help="At max-stream-length: block (hold records, push back on senders; lossless) or shed (drop new, counted).",
    ),
    click.option(
        "--batch-max-records",
        type=click.IntRange(1),
        default=default(CatcherSettings, "batch_max_records"),
        help="Most records per script call.",
    ),
    click.option(
        "--publish-window",
        type=click.IntRange(1),
        default=default(CatcherSettings, "publish_window"),
        help="Batches in flight to Redis at once, sent ahead of their replies; also bounds the read-ahead.",
    ),
    click.option(
        "--linger-ms",
        type=click.FloatRange(0, MAX_LINGER_MS),
        default=default(CatcherSettings, "linger_ms"),
        help="After a batch, how long the next, partial one waits for more records (0: never); "
        "fewer, fuller batches cost the catcher, Redis and the consumer less CPU per record.",
    ),
    click.option(
        "--wait-replicas",
        type=click.IntRange(0),
        default=default(CatcherSettings, "wait_replicas"),
        help="A batch counts as published (leaves the buffer) only once this many replicas acknowledged it; "
        "until then it is kept, and sent again to a new master after a failover (0: once the master applied it).",
    ),
    click.option(
        "--wait-timeout-ms",
        type=click.FloatRange(1, 60_000),
        default=default(CatcherSettings, "wait_timeout_ms"),
        help="With --wait-replicas: how long one WAIT may hold the publishing connection; "
        "batches not yet acknowledged are waited for again.",
    ),
    click.option(
        "--max-connections",
        type=click.IntRange(1),
        default=default(CatcherSettings, "max_connections"),
        help="Open connections allowed; more are refused.",
    ),
    click.option(
        "--allow",
        multiple=True,
        metavar="CIDR",
        help="Client network allowed to send (repeatable; the PROXY header's address behind a balancer). "
        "Default: everyone.",
    ),
    click.option(
        "--tls-cert", type=click.Path(dir_okay=False, exists=True), help="TLS certificate (PEM) for the listener."
    ),
    click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), help="Its private key (PEM)."),
    click.option(
        "--tls-client-ca",
        type=click.Path(dir_okay=False, exists=True),
        help="Require client certificates signed by this CA (mutual TLS).",
    ),
    click.option(
        "--max-connections-per-client",
        type=click.IntRange(0),
        default=default(CatcherSettings, "max_connections_per_client"),
        help="Open connections allowed from one client address (0: no limit).",
    ),
    click.option(
        "--frame-timeout",
        type=click.FloatRange(0),
        default=default(CatcherSettings, "frame_timeout"),
        help="Close a connection whose started frame is not complete after this many seconds (0: never).",
    ),
    click.option(
        "--idle-timeout",
        type=click.FloatRange(0),
        default=default(CatcherSettings, "idle_timeout"),
        help="Close a connection silent this many seconds (0: never; TCP keepalive finds dead peers). "
        "A stock SocketHandler loses the next records it sends after such a close.",
    ),
    click.option(
        "--drain-timeout",
        type=click.FloatRange(0),
        default=default(CatcherSettings, "drain_timeout"),
        help="On stop, seconds to keep reading open connections.",
    ),
    click.option(
        "--shutdown-timeout",
        type=click.FloatRange(0),
        default=default(CatcherSettings, "shutdown_timeout"),
        help="On stop, seconds to publish what is buffered.",
    ),
    click.option(
        "--proxy-protocol/--no-proxy-protocol",
        default=False,
        help="Expect a PROXY protocol v1/v2 header (from HAProxy) on every connection; refuse connections without.",
    ),
    *HEALTH_OPTIONS,
    click.option(
        "--shutdown-grace",
        type=click.FloatRange(0),
        default=default(CatcherSettings, "shutdown_grace"),
        help="On stop, seconds to keep serving while /readyz says 503, before closing the listener.",
    ),
    click.option(
        "--stats-interval",
        type=click.FloatRange(0),
        default=default(CatcherSettings, "stats_interval"),
        help="Seconds between stats log lines (0: only at exit).",
    ),
]


def redis_settings(options: dict[str, Any]) -> RedisSettings:
    """``--redis-url`` and ``--redis-timeout``.

    A URL that names no Redis (an unknown scheme, a bad port or database) is
    a configuration error like a refused password: one line naming the
    option and its variable, with the accepted forms, and exit status 1
    (:class:`click.ClickException`, which the commands' usage-error
    handling of ``ValueError`` lets through).
    """
    try:
        return RedisSettings.from_url(options["redis_url"], socket_timeout=options["redis_timeout"])
    except ValueError as exc:
        # The option and its variable right after the URL the message quotes, before the forms it suggests.
        shown, naming = repr(mask_url(options["redis_url"])), option_naming("redis_url")
        message = str(exc)
        if naming:
            message = message.replace(shown, f"{shown} {naming}", 1) if shown in message else f"{message} {naming}"
        raise click.ClickException(message) from None


def stream_keys(options: dict[str, Any]) -> StreamKeys:
    return StreamKeys(options["stream"], options["dead_letter_stream"])


def decode_limits(options: dict[str, Any]) -> DecodeLimits:
    """Map :data:`DECODE_OPTIONS`' values onto :class:`DecodeLimits` (``ValueError`` if they are out of range)."""
    skip = options.get("max_skip_bytes")
    return DecodeLimits(
        max_frame_bytes=options["max_frame_bytes"],
        max_depth=options["max_depth"],
        max_decoded_bytes=options["max_decoded_bytes"],
        # The catcher's (CATCHER_OPTIONS), if given; else (and for a replay, which decodes one frame and
        # skips none) the default, raised to --max-frame-bytes: any frame limit without a skip cap is valid.
        max_skip_bytes=skip
        if skip is not None
        else max(options["max_frame_bytes"], default(DecodeLimits, "max_skip_bytes")),
    )


def catcher_settings(options: dict[str, Any], redis: RedisSettings | None = None) -> CatcherSettings:
    """Map the catcher's option values onto :class:`CatcherSettings`."""
    return CatcherSettings(
        listen=options["listen"],
        redis=redis or redis_settings(options),
        keys=stream_keys(options),
        limits=decode_limits(options),
        catcher_id=options["catcher_id"] or process_name(),
        buffer_bytes=options["buffer_bytes"],
        max_partial_bytes=options["max_partial_bytes"],
        max_stream_length=options["max_stream_length"],
        full_policy=options["full_policy"],
        dead_letter_max_length=options["dead_letter_max_length"],
        batch_max_records=options["batch_max_records"],
        publish_window=options["publish_window"],
        linger_ms=options["linger_ms"],
        wait_replicas=options["wait_replicas"],
        wait_timeout_ms=options["wait_timeout_ms"],
        max_connections=options["max_connections"],
        max_connections_per_client=options["max_connections_per_client"],
        frame_timeout=options["frame_timeout"],
        idle_timeout=options["idle_timeout"],
        drain_timeout=options["drain_timeout"],
        shutdown_timeout=options["shutdown_timeout"],
        stats_interval=options["stats_interval"],
        proxy_protocol=options["proxy_protocol"],
        health_listen=options["health_listen"],
        shutdown_grace=options["shutdown_grace"],
        allow=tuple(parse_network(text) for text in options["allow"]),
        tls=tls_settings(options),
        listen_syslog=options["listen_syslog"],
        listen_datagram=options["listen_datagram"],
        listen_http=options["listen_http"],
        http_credentials=http_credentials(options),
    )


def http_credentials(options: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """``--http-basic-auth`` and the lines of ``--http-basic-auth-file`` as (user, password) pairs."""
    lines: list[str] = []
    if options["http_basic_auth"]:
        lines.append(options["http_basic_auth"])
    path = options["http_basic_auth_file"]
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read --http-basic-auth-file {path}: {exc}") from exc
        lines.extend(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))
    pairs = []
    for line in lines:
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise ValueError("HTTP basic-auth credentials must be USER:PASSWORD, both non-empty")
        pairs.append((user, password))
    if pairs and options["listen_http"] is None:
        raise ValueError("--http-basic-auth needs --listen-http")
    return tuple(pairs)


def tls_settings(options: dict[str, Any]) -> TLSSettings | None:
    cert, key, client_ca = options["tls_cert"], options["tls_key"], options["tls_client_ca"]
    if not (cert or key or client_ca):
        return None
    if not (cert and key):
        raise ValueError("TLS needs both --tls-cert and --tls-key")
    settings = TLSSettings(Path(cert), Path(key), Path(client_ca) if client_ca else None)
    settings.context()  # a bad file is a usage error now, not a failure at the first connection
    return settings
