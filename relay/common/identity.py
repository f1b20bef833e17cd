"""The default name of a process in Redis: which catcher wrote an entry, which consumer read it."""

from __future__ import annotations

import os
import socket

__all__ = ["process_name"]


def process_name() -> str:
    """``HOSTNAME-PID``: unique among the processes of a fleet at any one time."""
    return f"{socket.gethostname()}-{os.getpid()}"
