"""Waiting on conditions with a deadline, instead of sleeping and hoping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], *, timeout: float = 10.0, what: str = "condition", max_delay: float = 0.1
) -> T:
    """Poll ``condition`` until it returns something truthy; return that.

    Polls at growing intervals up to ``max_delay`` seconds (a benchmark that
    times the condition keeps it small).  Raises ``AssertionError`` naming
    ``what`` if the deadline passes.
    """
    deadline = time.monotonic() + timeout
    delay = min(0.005, max_delay)
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, max_delay)


async def async_wait_until(
    condition: Callable[[], Awaitable[T]] | Callable[[], T], *, timeout: float = 10.0, what: str = "condition"
) -> T:
    """The asyncio flavour of :func:`wait_until`; ``condition`` may be a coroutine function."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
