"""How long to wait before trying Redis again, for the catcher and the consumers alike."""

from __future__ import annotations

import random

__all__ = ["retry_delay"]

FIRST_DELAY = 0.05
LONGEST_DELAY = 2.0


def retry_delay(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (0, 1, ...): ~50 ms doubling up to 2 s, with jitter.

    The jitter (a random half to all of the delay) keeps many catchers and
    consumers that lost Redis together from coming back in step.
    """
    delay = min(LONGEST_DELAY, FIRST_DELAY * 2.0 ** min(attempt, 10))
    return random.uniform(0.5, 1.0) * delay
