"""The stream contract: what a catcher writes into Redis and a consumer reads back.

Defined here once.  The publish script (``relay/publish/publish.lua``) is
filled in from it, the publisher and the consumers read it, and a test
checks that the consumer's C reader (``consumers/_read_replies.h``) agrees.
The entry layout is described for users in docs/stream-format.md.

* The records stream: one entry per record, fields in this order:
  ``v`` (the schema version), ``record`` (the record's attributes as a JSON
  object), ``client`` (the sender, ``host:port``), ``catcher`` (the catcher
  that accepted it), ``received`` (Unix time, as text, when it was read),
  ``seq`` (the record's identity: ``TOKEN:N``, the catcher process's
  producer token, 16 lowercase hex digits, and the record's number from 1,
  increasing in stream order per token; entries written before it existed
  have no ``seq``; a replay of dead letters numbers its records under a
  token of its own).
* The dead-letter stream: one entry per refused frame: ``v``, ``reason``,
  ``raw`` (the frame's bytes), ``client``, ``catcher``, ``received``; and one
  per entry a consumer could not render: the entry's own fields, then
  ``reason``, ``entry_id`` (its id in the records stream) and ``group``
  (the consumer group that read it).

All the keys of one stream share a Redis Cluster hash slot
(:class:`StreamKeys`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEAD_LETTER_FIELDS",
    "DEFAULT_DEAD_LETTER_MAX_LENGTH",
    "DEFAULT_STREAM",
    "RECORD_FIELDS",
    "RECORD_FIELDS_WITHOUT_SEQ",
    "SCHEMA_VERSION",
    "SEQ_TOKEN",
    "StreamKeys",
]

#: The entry layout's version; a consumer refuses entries of another.
SCHEMA_VERSION: Final = "1"

VERSION: Final = "v"
RECORD: Final = "record"
CLIENT: Final = "client"
CATCHER: Final = "catcher"
RECEIVED: Final = "received"
REASON: Final = "reason"
RAW: Final = "raw"
ENTRY_ID: Final = "entry_id"
GROUP: Final = "group"
SEQ: Final = "seq"
#: How many dead letters a writer keeps the dead-letter stream near (--dead-letter-max-length; docs/faults.md
#: says why): a tenth of the records stream's default bound.  A letter is a refused frame, a few hundred bytes
#: to a few KiB as senders send them (100,000 of them: tens to hundreds of MiB of Redis memory); a flood of
#: bad frames then costs the oldest letters, counted.  A bound by count, not bytes: a letter keeps its frame
#: (up to --max-frame-bytes, so that it can be replayed), and the worst case is N times that.
DEFAULT_DEAD_LETTER_MAX_LENGTH: Final = 100_000

#: A producer token in a ``seq`` value (a regular expression): 16 lowercase hex digits.
SEQ_TOKEN: Final = "[0-9a-f]{16}"

#: A record's entry, field by field in order.
RECORD_FIELDS: Final = (VERSION, RECORD, CLIENT, CATCHER, RECEIVED, SEQ)
#: A record's entry as written before record identities (and by a replay), field by field in order.
RECORD_FIELDS_WITHOUT_SEQ: Final = (VERSION, RECORD, CLIENT, CATCHER, RECEIVED)
#: A dead letter's entry, field by field in order.
DEAD_LETTER_FIELDS: Final = (VERSION, REASON, RAW, CLIENT, CATCHER, RECEIVED)

DEFAULT_STREAM: Final = "logrelay"


@dataclass(frozen=True, slots=True)
class StreamKeys:
    """The Redis keys one stream of records uses.

    Every key a catcher writes in one script call must live in one hash slot
    for Redis Cluster, so the derived keys carry the stream name as a hash tag
    (``{logrelay}:dead``), unless the stream name already has one.
    """

    records: str = DEFAULT_STREAM
    dead_letters: str = ""

    def __post_init__(self) -> None:
        if not self.records:
            raise ValueError("the stream key must not be empty")
        if not self.dead_letters:
            object.__setattr__(self, "dead_letters", f"{self.tag}:dead")

    @property
    def tag(self) -> str:
        """The stream name as a hash tag, for keys that must share its slot."""
        start = self.records.find("{")
        if start >= 0 and self.records.find("}", start + 2) > start:
            return self.records
        return "{" + self.records + "}"

    @property
    def processes(self) -> str:
        """Sorted set of the processes that keep a heartbeat (member ``KIND:ID``, score: the last beat's time)."""
        return f"{self.tag}:processes"

    def heartbeat(self, kind: str, process_id: str) -> str:
        """Key of one process's heartbeat (a JSON description that expires unless renewed)."""
        return f"{self.tag}:process:{kind}:{process_id}"

    def producer(self, producer_id: str) -> str:
        """Key holding the last batch sequence number a catcher process applied."""
        return f"{self.tag}:producer:{producer_id}"
