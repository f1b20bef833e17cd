"""The Lua script that writes one batch, and the layout of its arguments.

One EVALSHA per batch: atomic (all of a batch's entries and its sequence
number, or nothing) and idempotent per producer (see :mod:`relay.publisher`).
Several batches may be sent back to back before their replies arrive (a
pipeline); the script keeps them in order: a pipelined batch applies only
right after the one before it, and is held whole if that one held records.
Every key it touches shares one hash slot (:class:`relay.settings.StreamKeys`),
so it runs on Redis Cluster too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final, Literal, NamedTuple

from relay.resp import bulk_string

__all__ = [
    "PRODUCER_KEY_TTL",
    "PUBLISH_SCRIPT",
    "SCHEMA_VERSION",
    "BatchResult",
    "DeadLetterEntry",
    "Entry",
    "FullPolicy",
    "RecordEntry",
    "pack_publish",
    "parse_result",
    "script_args",
]

#: Version of the stream entry layout (README, "Stream entry format").
SCHEMA_VERSION: Final = "1"

# Seconds a producer's last-sequence key lives after its last batch.  A retry
# always comes within an outage; a week covers any outage Redis survives.
PRODUCER_KEY_TTL: Final = 7 * 24 * 3600

#: What to do when the stream is at its maximum length: hold records (and push
#: back on senders) or drop the new ones, counted.
FullPolicy = Literal["block", "shed"]

#: How the publisher words a batch held back by a full stream (``block`` policy).
STREAM_FULL: Final = "LOGRELAY_FULL"

PUBLISH_SCRIPT: Final = """
-- KEYS: records stream, dead-letter stream, producer key
-- ARGV: seq, ttl, catcher, schema, n_records, n_dead, max_length, policy, pipelined,
--       n_records x (record, client, received),
--       n_dead x (raw, reason, client, received)
-- Returns {written, shed, held}: held records (policy block, stream full) were
-- not written and must be sent again in a later batch.  {-1, 0, held}: this seq
-- was applied before (held: what it held then).  {-2, 0, 0}: not applied, the
-- batch before it in the pipeline was not (applying it would reorder records).
--
-- The producer key holds "last:last_held:run_start:run_held": the last applied
-- seq and how many records it held, and where the current run of holding
-- batches started (0: none) with what that first batch held.  A pipelined
-- batch was sent before its sender knew the outcome of the one before; if
-- that one held records, it is held whole, so that held records go first.
local seq, n_records = tonumber(ARGV[1]), tonumber(ARGV[5])
local pipelined = ARGV[9] == '1'
local last, last_held, run_start, run_held = 0, 0, 0, 0
local state = redis.call('GET', KEYS[3])
if state then
  local a, b, c, d = string.match(state, '^(%d+):(%d+):(%d+):(%d+)$')
  if not a then
    return redis.error_reply('LOGRELAY_STATE producer key ' .. KEYS[3] .. ' holds ' .. string.sub(state, 1, 40))
  end
  last, last_held, run_start, run_held = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  if seq <= last then
    -- Retries only ever repeat batches of the sender's current pipeline:
    -- a repeat of the run's first batch held run_held, later ones all.
    local held = 0
    if run_start > 0 and seq >= run_start then
      held = (seq == run_start) and run_held or n_records
    end
    return {-1, 0, held}
  end
end
if pipelined and (not state or seq ~= last + 1) then
  return {-2, 0, 0}
end
-- Fail before the first write: a script stopped halfway keeps its writes.
for k = 1, 2 do
  local t = redis.call('TYPE', KEYS[k])['ok']
  if t ~= 'none' and t ~= 'stream' then
    return redis.error_reply('WRONGTYPE key ' .. KEYS[k] .. ' is a ' .. t .. ', not a stream')
  end
end
local catcher, schema = ARGV[3], ARGV[4]
local n_dead = tonumber(ARGV[6])
local max_length, policy = tonumber(ARGV[7]), ARGV[8]
local behind_held = pipelined and last_held > 0
local keep = n_records
if behind_held then
  keep = 0
elseif max_length > 0 then
  local room = max_length - redis.call('XLEN', KEYS[1])
  if room < n_records then
    -- keep the oldest of the batch, in order, as far as there is room
    keep = math.max(room, 0)
  end
end
local i = 10
for r = 1, keep do
  redis.call('XADD', KEYS[1], '*', 'v', schema, 'record', ARGV[i],
             'client', ARGV[i + 1], 'catcher', catcher, 'received', ARGV[i + 2])
  i = i + 3
end
i = 10 + 3 * n_records
for _ = 1, n_dead do
  redis.call('XADD', KEYS[2], '*', 'v', schema, 'reason', ARGV[i + 1], 'raw', ARGV[i],
             'client', ARGV[i + 2], 'catcher', catcher, 'received', ARGV[i + 3])
  i = i + 4
end
local held, shed = 0, 0
if policy == 'block' or behind_held then held = n_records - keep else shed = n_records - keep end
if held == 0 then
  run_start, run_held = 0, 0
elseif not behind_held then
  run_start, run_held = seq, held
end
redis.call('SET', KEYS[3], seq .. ':' .. held .. ':' .. run_start .. ':' .. run_held, 'EX', ARGV[2])
return {keep, shed, held}
"""


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


def _script_header(
    records: int, dead: int, seq: int, catcher_id: str, max_length: int, policy: FullPolicy, pipelined: bool
) -> list[bytes | str | int]:
    return [seq, PRODUCER_KEY_TTL, catcher_id, SCHEMA_VERSION, records, dead, max_length, policy, int(pipelined)]


def script_args(
    batch: list[Entry], seq: int, catcher_id: str, max_length: int, policy: FullPolicy, *, pipelined: bool = False
) -> list[bytes | str | int]:
    """ARGV for :data:`PUBLISH_SCRIPT`: header, then records, then dead letters.

    ``pipelined``: the batch is sent before the reply to the batch before it
    (seq - 1) has arrived.
    """
    dead = sum(1 for e in batch if type(e) is DeadLetterEntry)
    args = _script_header(len(batch) - dead, dead, seq, catcher_id, max_length, policy, pipelined)
    for record in batch:
        if type(record) is RecordEntry:
            args.extend(record)
    for dead_letter in batch:
        if type(dead_letter) is DeadLetterEntry:
            args.extend(dead_letter)
    return args


def pack_publish(
    sha: str,
    keys: list[str],
    batch: list[Entry],
    seq: int,
    catcher_id: str,
    max_length: int,
    policy: FullPolicy,
    *,
    pipelined: bool = False,
) -> bytes:
    """The whole ``EVALSHA`` call for one batch, in Redis's wire format (RESP), as one bytes object.

    Byte for byte what redis-py's ``pack_command("EVALSHA", sha, len(keys),
    *keys, *script_args(...))`` sends (a test checks it), for a fraction of
    the work: the records are packed in one pass in C (or by
    :func:`record_args_python`), each record's bytes copied once.
    """
    packed = _record_args(batch) if _record_args is not None else None
    record_args, records = packed if packed is not None else record_args_python(batch)
    dead = len(batch) - records
    header = [
        "EVALSHA",
        sha,
        len(keys),
        *keys,
        *_script_header(records, dead, seq, catcher_id, max_length, policy, pipelined),
    ]
    parts = [b"*%d\r\n" % (len(header) + 3 * records + 4 * dead)]
    parts.extend(bulk_string(value) for value in header)
    parts.append(record_args)
    if dead:
        for entry in batch:
            if type(entry) is DeadLetterEntry:
                parts.extend(bulk_string(value) for value in entry)
    return b"".join(parts)


def record_args_python(batch: list[Entry]) -> tuple[bytes, int]:
    """The record entries' script arguments (record, client, received each), in order, as RESP bulk strings; how many.

    The reference for ``relay._resp.record_args``, which does the same in
    one pass in C (measured: README, "Performance").
    """
    parts: list[bytes] = []
    append = parts.append
    # Consecutive records mostly share one socket read's client and receive
    # time (the same str objects): their encoding is made once per run.
    last_client = last_received = None
    tail = b""
    for entry in batch:
        if type(entry) is not RecordEntry:
            continue
        record, client, received = entry
        if client is not last_client or received is not last_received:
            last_client, last_received = client, received
            tail = b"\r\n" + bulk_string(client) + bulk_string(received)
        append(b"$%d\r\n" % len(record))
        append(record)
        append(tail)
    return b"".join(parts), len(parts) // 3


def _load_record_args() -> Callable[[list[Entry]], tuple[bytes, int] | None] | None:
    if os.environ.get("LOGRELAY_PURE_PYTHON"):
        return None
    try:
        from relay import _resp  # type: ignore[attr-defined]
    except ImportError:
        return None
    pack: Callable[[list[Entry]], tuple[bytes, int] | None] = _resp.record_args
    return pack


_record_args: Final = _load_record_args()
#: "c", or "none" where the records are packed by :func:`record_args_python`.
RECORD_ARGS_IMPLEMENTATION: Final = "c" if _record_args is not None else "none"


def parse_result(reply: object) -> BatchResult:
    if not (isinstance(reply, list | tuple) and len(reply) == 3):
        raise ValueError(f"unexpected reply from the publish script: {reply!r}")
    written, shed, held = (int(value) for value in reply)
    if written == -2:
        return BatchResult(False, 0, 0, out_of_turn=True)
    return BatchResult(written < 0, shed, held)
