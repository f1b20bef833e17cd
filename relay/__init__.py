"""logrelay's catcher: SocketHandler frames in, Redis stream entries out."""

from __future__ import annotations

__version__ = "0.1.0"
