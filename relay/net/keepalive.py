"""TCP keepalive on accepted connections: how a silent peer that is gone gets noticed.

A connection that sends nothing is not closed for it (``--idle-timeout`` is
off by default: a stock ``SocketHandler`` cannot tell that we closed its
connection and loses its next records).  A client that died or lost its
network without closing would then hold its slot forever; the kernel's
keepalive probes find it instead: after :data:`KEEPALIVE_IDLE` seconds of
silence, a probe every :data:`KEEPALIVE_INTERVAL` seconds, and after
:data:`KEEPALIVE_COUNT` unanswered ones the connection is reset (the
protocol sees ``connection_lost``), about two minutes in all.  The probes
also keep NAT and load-balancer state for a quiet client alive (several
drop a flow silent for 4 to 6 minutes).  A live peer's kernel answers the
probes; the client's program never sees them.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any, Final

__all__ = ["KEEPALIVE_COUNT", "KEEPALIVE_IDLE", "KEEPALIVE_INTERVAL", "enable_keepalive"]

#: Seconds of silence before the first probe (under the 240 s idle timeout of the strictest common balancer).
KEEPALIVE_IDLE: Final = 60
#: Seconds between unanswered probes.
KEEPALIVE_INTERVAL: Final = 15
#: Unanswered probes before the connection is dropped.
KEEPALIVE_COUNT: Final = 4


def enable_keepalive(sock: Any) -> None:
    """Turn keepalive on for the TCP socket ``sock`` (a socket, or asyncio's ``TransportSocket``).

    Where the system lacks one of the timing options (they are Linux's and
    most BSDs'), its default stays; a socket that is not TCP (a test's
    pipe) or is already closed is left as it is.
    """
    if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (
            ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
            ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
            ("TCP_KEEPCNT", KEEPALIVE_COUNT),
        ):
            option = getattr(socket, name, None)
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
