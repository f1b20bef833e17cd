"""The Lua script that writes one batch (``publish.lua``), and the layout of its arguments.

One EVALSHA per batch: atomic (all of a batch's entries and its sequence
number, or nothing) and idempotent per producer (see :mod:`relay.publish.publisher`).
Several batches may be sent back to back before their replies arrive (a
pipeline); the script keeps them in order: a pipelined batch applies only
right after the one before it, and is held whole if that one held records.
Every key it touches shares one hash slot (:class:`relay.common.stream.StreamKeys`),
so it runs on Redis Cluster too.
"""

from __future__ import annotations

from importlib import resources
from typing import Final, Literal, NamedTuple

from relay.common import stream
from relay.common.stream import SCHEMA_VERSION

__all__ = [
    "DEFAULT_IDENTITY",
    "PRODUCER_KEY_TTL",
    "PUBLISH_SCRIPT",
    "BatchResult",
    "DeadLetterEntry",
    "Entry",
    "FullPolicy",
    "Identity",
    "RecordEntry",
    "parse_result",
    "script_args",
    "script_header",
]


# Seconds a producer's last-sequence key lives after its last batch.  A retry
# always comes within an outage; a week covers any outage Redis survives.
PRODUCER_KEY_TTL: Final = 7 * 24 * 3600

#: What to do when the stream is at its maximum length: hold records (and push
#: back on senders) or drop the new ones, counted.
FullPolicy = Literal["block", "shed"]

#: How the publisher words a batch held back by a full stream (``block`` policy).
STREAM_FULL: Final = "LOGRELAY_FULL"


def _publish_script() -> str:
    """The Lua source (``publish.lua``, beside this module) with the stream contract's field names filled in."""
    source = resources.files(__package__).joinpath("publish.lua").read_text(encoding="utf-8")
    fields = {
        "version": stream.VERSION,
        "record": stream.RECORD,
        "client": stream.CLIENT,
        "catcher": stream.CATCHER,
        "received": stream.RECEIVED,
        "reason": stream.REASON,
        "raw": stream.RAW,
        "seq": stream.SEQ,
    }
    for name, value in fields.items():
        source = source.replace("{{" + name + "}}", value)
    if "{{" in source:
        raise RuntimeError("publish.lua names a field the stream contract does not have")
    return source


PUBLISH_SCRIPT: Final = _publish_script()


class RecordEntry(NamedTuple):
    record: bytes
    client: str
    received: str


class DeadLetterEntry(NamedTuple):
    raw: bytes
    reason: str
    client: str
    received: str


Entry = RecordEntry | DeadLetterEntry


class BatchResult(NamedTuple):
    duplicate: bool  # applied before, by an attempt whose reply was lost
    shed: int  # records dropped by the ``shed`` policy
    held: int  # the batch's last records, not written (``block`` policy, stream full): send again
    # Not applied: the batch before it in the pipeline was not applied either.
    out_of_turn: bool = False
    # The oldest dead letters removed to keep the dead-letter stream near its maximum length.
    dead_trimmed: int = 0


class Identity(NamedTuple):
    """Who numbers a batch's records: the producer's token and the number of the batch's first record."""

    token: str
    first: int


#: The identity of the batches of callers that give none (tests and tools): a fixed token, records from 1.
DEFAULT_IDENTITY: Final = Identity("0" * 16, 1)


def script_header(
    records: int,
    dead: int,
    seq: int,
    catcher_id: str,
    max_length: int,
    policy: FullPolicy,
    pipelined: bool,
    identity: Identity,
    dead_max_length: int = 0,
) -> list[bytes | str | int]:
    """The script's first arguments (before the records and dead letters).

    ``dead_max_length``: the dead-letter stream is trimmed to about that many
    entries after the batch's letters are added (0: never trimmed).
    """
    return [
        seq,
        PRODUCER_KEY_TTL,
        catcher_id,
        SCHEMA_VERSION,
        records,
        dead,
        max_length,
        policy,
        int(pipelined),
        identity.token,
        identity.first,
        dead_max_length,
    ]


def script_args(
    batch: list[Entry],
    seq: int,
    catcher_id: str,
    max_length: int,
    policy: FullPolicy,
    *,
    pipelined: bool = False,
    identity: Identity = DEFAULT_IDENTITY,
    dead_max_length: int = 0,
) -> list[bytes | str | int]:
    """ARGV for :data:`PUBLISH_SCRIPT`: header, then records, then dead letters.

    ``pipelined``: the batch is sent before the reply to the batch before it
    (seq - 1) has arrived.  ``identity``: how its records are numbered (the
    record entries' ``seq`` field).  ``dead_max_length``: see :func:`script_header`.
    """
    dead = sum(1 for e in batch if type(e) is DeadLetterEntry)
    records = len(batch) - dead
    args = script_header(records, dead, seq, catcher_id, max_length, policy, pipelined, identity, dead_max_length)
    for record in batch:
        if type(record) is RecordEntry:
            args.extend(record)
    for dead_letter in batch:
        if type(dead_letter) is DeadLetterEntry:
            args.extend(dead_letter)
    return args


def parse_result(reply: object) -> BatchResult:
    """The script's reply ``{written, shed, held, dead_trimmed}`` (see ``publish.lua``)."""
    if not (isinstance(reply, list | tuple) and len(reply) == 4):
        raise ValueError(f"unexpected reply from the publish script: {reply!r}")
    written, shed, held, trimmed = (int(value) for value in reply)
    if written == -2:
        return BatchResult(False, 0, 0, out_of_turn=True)
    return BatchResult(written < 0, shed, held, dead_trimmed=trimmed)
