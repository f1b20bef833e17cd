"""Writing one dead letter back into the records stream: the replay script (``replay.lua``) and its call.

Exactly once by construction: one script call removes the letter from the
dead-letter stream and adds the record entry, atomically, and adds nothing if
the letter is already gone.  Running a replay twice, or again after it was
interrupted (even between sending the call and reading its reply), delivers
each record once.  Both keys share one hash slot
(:class:`relay.common.stream.StreamKeys`), so it runs on Redis Cluster too.

What goes into the entry (its fields, in the records schema's order) is the
caller's business: this module knows nothing of decoding (import contract:
publishing knows nothing of decoding).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from importlib import resources
from typing import Final

from redis.asyncio import Redis

from relay.common.stream import StreamKeys

__all__ = ["REPLAY_SCRIPT", "ReplayOutcome", "replay_entry"]

#: The Lua source, beside this module.
REPLAY_SCRIPT: Final = resources.files(__package__).joinpath("replay.lua").read_text(encoding="utf-8")


class ReplayOutcome(enum.IntEnum):
    """What one script call did (its reply)."""

    REPLAYED = 1  # the letter removed, its entry added
    GONE = 0  # the letter was not there any more: nothing added
    STREAM_FULL = -1  # the records stream is at max_length: nothing changed


async def replay_entry(
    redis: Redis,
    keys: StreamKeys,
    letter_id: bytes,
    fields: Sequence[tuple[str, bytes | str]],
    *,
    max_length: int = 0,
) -> ReplayOutcome:
    """Remove dead letter ``letter_id`` and add an entry of ``fields`` (in order) to the records stream, atomically.

    ``max_length`` > 0: leave everything as it is if the records stream
    already holds that many entries (the catcher's ``--max-stream-length``).
    Raises redis-py's errors as they come (a failed call changed nothing, or
    everything: calling again is always safe).
    """
    if not fields:
        raise ValueError("a record entry needs fields")
    script = redis.register_script(REPLAY_SCRIPT)  # EVALSHA, loading the script on NOSCRIPT
    args: list[bytes | str | int] = [letter_id, max_length]
    for name, value in fields:
        args += [name, value]
    reply = await script(keys=[keys.records, keys.dead_letters], args=args)
    return ReplayOutcome(int(reply))
