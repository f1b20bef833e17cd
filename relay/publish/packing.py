"""A batch's EVALSHA call in Redis's wire format, packed in one pass.

:func:`pack_publish` is what the publisher sends per batch.  The records'
part is packed by the C extension ``relay.publish._packing`` where it is
built, else by :func:`record_args_python`, its reference (same bytes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from relay.common import speedups
from relay.common.redis_protocol import bulk_string
from relay.publish.script import (
    DEFAULT_IDENTITY,
    DeadLetterEntry,
    Entry,
    FullPolicy,
    Identity,
    RecordEntry,
    script_header,
)

__all__ = ["IMPLEMENTATION", "pack_publish", "record_args_python"]


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
    identity: Identity = DEFAULT_IDENTITY,
    dead_max_length: int = 0,
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
        *script_header(records, dead, seq, catcher_id, max_length, policy, pipelined, identity, dead_max_length),
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

    The reference for ``relay.publish._packing.record_args``, which does the same in
    one pass in C (``python -m bench.speedups`` compares the two).
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
    extension = speedups.load("relay.publish._packing")
    if extension is None:
        return None
    pack: Callable[[list[Entry]], tuple[bytes, int] | None] = extension.record_args
    return pack


_record_args: Final = _load_record_args()
#: "c", or "python" where the records are packed by :func:`record_args_python`.
IMPLEMENTATION: Final = "c" if _record_args is not None else "python"
