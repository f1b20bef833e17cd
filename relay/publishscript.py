"""The Lua script that writes one batch, and the layout of its arguments.

One EVALSHA per batch: atomic (all of a batch's entries and its sequence
number, or nothing), one round trip, and idempotent per producer (see
:mod:`relay.publisher`).  Every key it touches shares one hash slot
(:class:`relay.settings.StreamKeys`), so it runs on Redis Cluster too.
"""

from __future__ import annotations

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

#: The error a ``block`` policy returns when the stream is full.
STREAM_FULL: Final = "LOGRELAY_FULL"

PUBLISH_SCRIPT: Final = """
-- KEYS: records stream, dead-letter stream, producer key
-- ARGV: seq, ttl, catcher, schema, n_records, n_dead, max_length, policy,
--       n_records x (record, client, received),
--       n_dead x (raw, reason, client, received)
-- Returns {written, shed, held}: held records (policy block, stream full) were
-- not written and must be sent again in a later batch.  A repeat of an applied
-- seq returns {-1, 0, held} with the held count of that first application.
local seq = tonumber(ARGV[1])
local previous = redis.call('GET', KEYS[3])
if previous then
  local last, last_held = string.match(previous, '^(%d+):?(%d*)$')
  if seq <= tonumber(last) then
    return {-1, 0, tonumber(last_held) or 0}
  end
end
-- Fail before the first write: a script stopped halfway keeps its writes.
for k = 1, 2 do
  local t = redis.call('TYPE', KEYS[k])['ok']
  if t ~= 'none' and t ~= 'stream' then
    return redis.error_reply('WRONGTYPE key ' .. KEYS[k] .. ' is a ' .. t .. ', not a stream')
  end
end
local catcher, schema = ARGV[3], ARGV[4]
local n_records, n_dead = tonumber(ARGV[5]), tonumber(ARGV[6])
local max_length, policy = tonumber(ARGV[7]), ARGV[8]
local keep = n_records
if max_length > 0 then
  local room = max_length - redis.call('XLEN', KEYS[1])
  if room < n_records then
    -- keep the oldest of the batch, in order, as far as there is room
    keep = math.max(room, 0)
    if policy == 'block' and keep == 0 and n_dead == 0 then
      return redis.error_reply('LOGRELAY_FULL stream ' .. KEYS[1] .. ' is at its maximum of '
                               .. max_length .. ' entries')
    end
  end
end
local i = 9
for r = 1, n_records do
  if r <= keep then
    redis.call('XADD', KEYS[1], '*', 'v', schema, 'record', ARGV[i],
               'client', ARGV[i + 1], 'catcher', catcher, 'received', ARGV[i + 2])
  end
  i = i + 3
end
for _ = 1, n_dead do
  redis.call('XADD', KEYS[2], '*', 'v', schema, 'reason', ARGV[i + 1], 'raw', ARGV[i],
             'client', ARGV[i + 2], 'catcher', catcher, 'received', ARGV[i + 3])
  i = i + 4
end
local held = 0
local shed = 0
if policy == 'block' then held = n_records - keep else shed = n_records - keep end
redis.call('SET', KEYS[3], seq .. ':' .. held, 'EX', ARGV[2])
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


def _script_header(
    batch: list[Entry], seq: int, catcher_id: str, max_length: int, policy: FullPolicy
) -> list[bytes | str | int]:
    dead = sum(1 for e in batch if type(e) is DeadLetterEntry)
    return [seq, PRODUCER_KEY_TTL, catcher_id, SCHEMA_VERSION, len(batch) - dead, dead, max_length, policy]


def script_args(
    batch: list[Entry], seq: int, catcher_id: str, max_length: int, policy: FullPolicy
) -> list[bytes | str | int]:
    """ARGV for :data:`PUBLISH_SCRIPT`: header, then records, then dead letters."""
    args = _script_header(batch, seq, catcher_id, max_length, policy)
    for record in batch:
        if type(record) is RecordEntry:
            args.extend(record)
    for dead_letter in batch:
        if type(dead_letter) is DeadLetterEntry:
            args.extend(dead_letter)
    return args


def pack_publish(
    sha: str, keys: list[str], batch: list[Entry], seq: int, catcher_id: str, max_length: int, policy: FullPolicy
) -> bytes:
    """The whole ``EVALSHA`` call for one batch, in Redis's wire format (RESP), as one bytes object.

    Byte for byte what redis-py's ``pack_command("EVALSHA", sha, len(keys),
    *keys, *script_args(...))`` sends (a test checks it), for a fraction of
    the work: a record's bytes are copied once, into the command, and the
    client address and receive time (shared by every record of one socket
    read) are encoded once per batch instead of once per record.
    """
    header = ["EVALSHA", sha, len(keys), *keys, *_script_header(batch, seq, catcher_id, max_length, policy)]
    records = sum(1 for e in batch if type(e) is RecordEntry)
    count = len(header) + 3 * records + 4 * (len(batch) - records)
    parts = [b"*%d\r\n" % count]
    parts.extend(bulk_string(value) for value in header)
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
    for entry in batch:
        if type(entry) is DeadLetterEntry:
            parts.extend(bulk_string(value) for value in entry)
    return b"".join(parts)


def parse_result(reply: object) -> BatchResult:
    if not (isinstance(reply, list | tuple) and len(reply) == 3):
        raise ValueError(f"unexpected reply from the publish script: {reply!r}")
    written, shed, held = (int(value) for value in reply)
    return BatchResult(written < 0, shed, held)
