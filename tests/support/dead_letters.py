"""Dead letters written as logrelay writes them: a frame the real decoder refuses, by the real publish script."""

from __future__ import annotations

import logging
import logging.handlers

import redis

from relay.common import stream
from relay.common.stream import StreamKeys
from relay.decode.frames import BadFrame, DecodeLimits, FrameDecoder
from relay.publish.script import PUBLISH_SCRIPT, DeadLetterEntry, script_args

__all__ = ["SMALL_LIMITS", "big_frame", "consumer_dead_letter", "publish_dead_letter", "refused"]

#: A catcher started with --max-decoded-bytes 64KiB.
SMALL_LIMITS = DecodeLimits(max_decoded_bytes=64 * 1024)


def big_frame(message_bytes: int = 200_000, name: str = "app.big") -> bytes:
    """A stock SocketHandler frame (``makePickle``: length header and pickle) of a record with a long message."""
    record = logging.LogRecord(name, logging.ERROR, "/srv/app/big.py", 12, "x" * message_bytes, None, None)
    # Fixed times: the same arguments make the same frame, byte for byte.
    record.__dict__.update(order_id=42, created=1700000000.25, msecs=250.0, relativeCreated=1234.5)
    return logging.handlers.SocketHandler("unused", 0).makePickle(record)


def refused(frame: bytes, limits: DecodeLimits = SMALL_LIMITS) -> BadFrame:
    """What the catcher's decoder makes of ``frame`` under ``limits``: it must be a refusal."""
    (event,) = FrameDecoder(limits).feed(frame)
    assert isinstance(event, BadFrame), "the frame was expected to be refused"
    return event


def publish_dead_letter(
    client: redis.Redis,
    bad: BadFrame,
    *,
    keys: StreamKeys | None = None,
    sender: str = "10.0.0.7:51234",
    received: str = "1700000000.250000",
    catcher: str = "catcher-a-1",
    seq: int = 1,
) -> bytes:
    """Write ``bad`` as a catcher does (one publish script call, as the publisher makes it); its id."""
    keys = keys or StreamKeys()
    args = script_args([DeadLetterEntry(bad.raw, bad.reason, sender, received)], seq, catcher, 0, "block")
    client.eval(PUBLISH_SCRIPT, 3, keys.records, keys.dead_letters, keys.producer(f"{catcher}:test"), *args)
    ((letter_id, _),) = client.xrevrange(keys.dead_letters, count=1)
    assert isinstance(letter_id, bytes)
    return letter_id


def consumer_dead_letter(
    client: redis.Redis,
    fields: dict[bytes, bytes],
    *,
    reason: str = "record is not a JSON object",
    entry_id: bytes = b"1700000000000-3",
    group: bytes = b"logrelay-file",
    keys: StreamKeys | None = None,
) -> bytes:
    """Write an entry the consumer could not render as ``consumers/file_consumer.FileConsumer._dead_letter`` does."""
    keys = keys or StreamKeys()
    entry = {
        **fields,
        stream.REASON.encode(): reason.encode(),
        stream.ENTRY_ID.encode(): entry_id,
        stream.GROUP.encode(): group,
    }
    letter_id = client.xadd(keys.dead_letters, entry)  # type: ignore[arg-type]
    assert isinstance(letter_id, bytes)
    return letter_id
