"""How to reach Redis (:class:`RedisSettings`, :class:`RedisTarget`) and the clients built from it.

Five URL forms (docs/high-availability.md)::

    redis://[user:password@]host:port/db            rediss:// for TLS
    unix://[user:password@]/path/to/socket?db=N
    redis+sentinel://[user:password@]host:port[,host:port...]/SERVICE[/db]   rediss+sentinel:// for TLS
    redis+cluster://[user:password@]host:port[,host:port...]                 rediss+cluster:// for TLS

For Sentinel and Cluster the user and password are the data nodes'; the
Sentinels' own are query parameters (``sentinel_username``,
``sentinel_password``).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

__all__ = [
    "DEFAULT_REDIS_URL",
    "URL_FORMS",
    "RedisSettings",
    "RedisTarget",
    "create_redis",
    "mask_url",
    "raise_if_cancelled",
]

DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"
#: Query parameters of a URL that carry a secret (redis-py reads ``password`` from the query too).
SECRET_PARAMETERS: Final = frozenset({"password", "sentinel_password", "ssl_password"})
#: The accepted forms, for error messages.
URL_FORMS: Final = (
    "redis://[user:password@]host:port/db, rediss://... (TLS), unix:///path/to/redis.sock?db=0, "
    "redis+sentinel://[user:password@]host:port[,host:port...]/SERVICE[/db], "
    "redis+cluster://[user:password@]host:port[,host:port...] (rediss+sentinel://, rediss+cluster:// for TLS)"
)
SENTINEL_PORT: Final = 26379
CLUSTER_PORT: Final = 6379

_DIRECT_SCHEMES: Final = frozenset({"redis", "rediss", "unix"})
_HA_SCHEMES: Final[dict[str, tuple[Literal["sentinel", "cluster"], bool]]] = {
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
#: TLS settings a Sentinel or Cluster URL may carry, as redis-py names its keywords.
_TLS_PARAMETERS: Final = frozenset(
    {
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_cert_reqs",
        "ssl_check_hostname",
        "ssl_password",
    }
)
_SENTINEL_PARAMETERS: Final = frozenset({"sentinel_username", "sentinel_password", "sentinel_ssl"})
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
# user:password@ right after the scheme, whatever follows (a fallback for URLs urlsplit refuses).
_USERINFO: Final = re.compile(r"^([^:/]+://[^:@/]*:)[^@/]*@")


def mask_url(url: str) -> str:
    """``url`` with every password in it (``user:***@``, ``?password=***``) masked, for logs and messages.

    Works for every form :class:`RedisTarget` accepts, several ``host:port``
    included; a URL too broken to parse still has its ``user:password@`` masked.
    """
    if "://" not in url:
        return url
    try:
        parts = original = urlsplit(url)
        password = parts.password
    except ValueError:  # a bracket that opens no IPv6 address, say
        return _USERINFO.sub(r"\1***@", url)
    if password is not None:
        userinfo, _, hosts = parts.netloc.rpartition("@")
        user, _, _ = userinfo.partition(":")
        parts = parts._replace(netloc=f"{user}:***@{hosts}")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if any(name.lower() in SECRET_PARAMETERS for name, _ in pairs):
        masked = [(name, "***" if name.lower() in SECRET_PARAMETERS else value) for name, value in pairs]
        parts = parts._replace(query=urlencode(masked, safe="*/:"))
    # Untouched when there is nothing to mask (urlsplit/geturl would turn unix:///path into unix:/path).
    return url if parts == original else parts.geturl()


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """What a Redis URL points at, parsed (:meth:`parse`).

    ``kind``: ``direct`` (one server: ``redis://``, ``rediss://``,
    ``unix://``; redis-py reads those URLs itself), ``sentinel`` (``nodes``
    are the Sentinels, ``service`` the monitored master's name) or
    ``cluster`` (``nodes`` are startup nodes).  ``username``/``password``:
    the data nodes' login; ``tls``: TLS to the data nodes, with
    ``tls_options`` (redis-py's ``ssl_*`` keywords).  ``sentinel_tls``: TLS
    to the Sentinels too (the same options), by default as ``tls``.
    """

    kind: Literal["direct", "sentinel", "cluster"]
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    tls_options: dict[str, str | bool] = field(default_factory=dict)
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    sentinel_tls: bool = False

    @classmethod
    def parse(cls, url: str) -> RedisTarget:
        """Parse ``url``; ``ValueError`` (the password masked, the accepted forms given) if it is not one."""
        shown = mask_url(url)
        scheme, found, _ = url.partition("://")
        scheme = scheme.lower()
        if not found or (scheme not in _DIRECT_SCHEMES and scheme not in _HA_SCHEMES):
            raise ValueError(f"unsupported Redis URL scheme {scheme!r} in {shown!r}: use {URL_FORMS}")
        if scheme in _DIRECT_SCHEMES:
            try:
                parts = urlsplit(url)
                host = parts.hostname
                _ = parts.port  # a port that is not a number raises here, not in redis-py at the first connection
            except ValueError as exc:
                raise ValueError(f"malformed Redis URL {shown!r}: {exc}") from None
            if scheme != "unix" and not host:
                raise ValueError(f"no host in Redis URL {shown!r}: use {URL_FORMS}")
            return cls("direct")
        kind, tls = _HA_SCHEMES[scheme]
        try:
            # netloc, path and query only: urlsplit reads no host or port of a netloc until asked.
            parts = urlsplit(url)
        except ValueError as exc:
            raise ValueError(f"malformed Redis URL {shown!r}: {exc}") from None
        path, query = parts.path, parts.query
        userinfo, at, hosts = parts.netloc.rpartition("@")
        username = password = None
        if at:
            user, colon, secret = userinfo.partition(":")
            username = unquote(user) or None
            password = unquote(secret) if colon else None
        default_port = SENTINEL_PORT if kind == "sentinel" else CLUSTER_PORT
        nodes = tuple(_host_port(item, default_port, shown) for item in hosts.split(",") if item)
        if not nodes:
            raise ValueError(f"no host in Redis URL {shown!r}: use {URL_FORMS}")
        options = _query_options(query, kind, shown)
        tls = tls or _flag(options.pop("ssl", "false"), "ssl", shown)
        sentinel_tls = _flag(options.pop("sentinel_ssl", str(tls)), "sentinel_ssl", shown)
        sentinel_username = options.pop("sentinel_username", None)
        sentinel_password = options.pop("sentinel_password", None)
        tls_options: dict[str, str | bool] = dict(options)
        if "ssl_check_hostname" in tls_options:
            tls_options["ssl_check_hostname"] = _flag(
                str(tls_options["ssl_check_hostname"]), "ssl_check_hostname", shown
            )
        segments = [unquote(segment) for segment in path.split("/") if segment]
        if kind == "sentinel":
            if not segments:
                raise ValueError(
                    f"no Sentinel service name in Redis URL {shown!r}: "
                    "use redis+sentinel://host:port[,host:port...]/SERVICE[/db]"
                )
            if len(segments) > 2:
                raise ValueError(f"too many path segments in Redis URL {shown!r}: want /SERVICE[/db]")
            service = segments[0]
            db = _db(segments[1], shown) if len(segments) == 2 else 0
        else:
            if segments and segments != ["0"]:
                raise ValueError(f"a Redis Cluster has only database 0: drop the path of {shown!r}")
            service, db = "", 0
        return cls(
            kind,
            nodes,
            service,
            db,
            username,
            password,
            tls,
            tls_options,
            sentinel_username,
            sentinel_password,
            sentinel_tls,
        )


def _host_port(text: str, default_port: int, shown: str) -> tuple[str, int]:
    """``host:port``, ``host`` or ``[v6]:port`` as (host, port)."""
    if text.startswith("["):
        host, bracket, tail = text[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError(f"malformed address {text!r} in Redis URL {shown!r}")
        port_text = tail[1:]
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"no host in {text!r} in Redis URL {shown!r}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in {text!r} in Redis URL {shown!r}")
    return host, int(port_text)


def _query_options(query: str, kind: str, shown: str) -> dict[str, str]:
    accepted = {"ssl"} | _TLS_PARAMETERS | (_SENTINEL_PARAMETERS if kind == "sentinel" else set())
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in accepted:
            raise ValueError(
                f"unknown parameter {name!r} in Redis URL {shown!r} (accepted: {', '.join(sorted(accepted))})"
            )
        options[name] = value
    return options


def _flag(value: str, name: str, shown: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError(f"{name}={value!r} in Redis URL {shown!r}: want true or false")


def _db(text: str, shown: str) -> int:
    if not text.isdigit():
        raise ValueError(f"database {text!r} in Redis URL {shown!r} is not a number")
    return int(text)


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """How to reach Redis.  Build with :meth:`from_url`."""

    url: str = DEFAULT_REDIS_URL
    socket_timeout: float = 5.0
    connect_timeout: float = 2.0

    @classmethod
    def from_url(cls, url: str, **options: float) -> RedisSettings:
        """Validate a URL of one of the forms :class:`RedisTarget` parses (``ValueError`` naming them if not)."""
        RedisTarget.parse(url)
        return cls(url=url, **options)

    @property
    def target(self) -> RedisTarget:
        """What :attr:`url` points at (``ValueError`` if it is not a Redis URL)."""
        return RedisTarget.parse(self.url)

    @property
    def safe_url(self) -> str:
        """The URL with any password masked, for logs."""
        return mask_url(self.url)


def create_redis(settings: RedisSettings, *, client_name: str, slot_key: str | None = None) -> Redis:
    """Return an asyncio client for ``settings.url``: a plain ``Redis`` whatever the URL's form.

    redis-py's own retries are switched off: the callers own retry, backoff
    and outage logging, and must see every failure to keep their guarantees
    (the publisher relies on its batch sequence numbers, not on redis-py, to
    make a retry harmless).

    * ``redis://``, ``rediss://``, ``unix://``: one server, as redis-py reads the URL.
    * ``redis+sentinel://``: each new connection asks the Sentinels for the
      current master of the service (redis-py's ``SentinelConnectionPool``).
    * ``redis+cluster://``: each new connection asks the cluster which master
      serves the hash slot of ``slot_key`` (required: the stream's key; every
      key logrelay uses for one stream shares its slot).

    For the last two, a connection whose server answers as a node that is no
    longer (or not yet) the master (``READONLY``, ``MOVED``, ``CLUSTERDOWN``,
    ``TRYAGAIN``, ``LOADING``, ...) is dropped and the error raised as a
    ``redis.exceptions.ConnectionError``: an outage the caller retries, on a
    new connection that finds the new master.  A write is never sent to
    another node than the one found at connect time.
    """
    target = settings.target
    if target.kind == "direct":
        return Redis.from_url(
            settings.url,
            socket_timeout=settings.socket_timeout,
            socket_connect_timeout=settings.connect_timeout,
            retry=Retry(NoBackoff(), 0),
            client_name=client_name,
            decode_responses=False,
        )
    # Imported here: a plain redis:// URL never pays for the Sentinel and Cluster modules.
    from relay.common.redis_ha import cluster_slot_client, sentinel_master_client

    connection: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.connect_timeout,
        "retry": Retry(NoBackoff(), 0),
        "username": target.username,
        "password": target.password,
    }
    tls: dict[str, Any] = {"ssl": True, **target.tls_options} if target.tls else {}
    if target.kind == "sentinel":
        sentinel: dict[str, Any] = {
            **connection,
            "username": target.sentinel_username,
            "password": target.sentinel_password,
        }
        if target.sentinel_tls:
            sentinel.update({"ssl": True, **target.tls_options})
        return sentinel_master_client(
            target.nodes,
            target.service,
            sentinel_kwargs=sentinel,
            client_name=client_name,
            db=target.db,
            **connection,
            **tls,
        )
    if slot_key is None:
        raise ValueError(f"{settings.safe_url}: a Redis Cluster client needs the stream key (slot_key)")
    return cluster_slot_client(target.nodes, slot_key, client_name=client_name, **connection, **tls)


def raise_if_cancelled() -> None:
    """Raise CancelledError if the current task was asked to stop.

    redis-py (8.2 seen) may answer a command cancelled in flight with its reply,
    or with the error of the connection it dropped for it, instead of raising
    CancelledError: a loop that goes on after a Redis call must call this
    before its next round, or the cancellation is lost and the process's exit
    waits on it for ever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
