"""The publish script numbers each record (the ``seq`` field, TOKEN:N) exactly as N prints, across digit boundaries.

The script prints the last two digits of N from a table and the others once
per hundred records (a number printed per record costs Redis more); these
tests hold it to the plain decimal form, on fakeredis's Lua and on a real
redis-server's, whose number printing differ.
"""

from __future__ import annotations

import fakeredis
import pytest
import redis

from relay.common.stream import StreamKeys
from relay.publish.script import PUBLISH_SCRIPT, Entry, Identity, RecordEntry, script_args
from tests.support.realredis import RedisServer

TOKEN = "0123456789abcdef"
#: Batches' first numbers: the first hundred, the turns of a hundred and a thousand, and a long-lived producer's.
FIRSTS = (1, 2, 57, 99, 100, 101, 150, 199, 901, 999, 1000, 99_950, 123_456_789_012)
RECORDS = 230  # each batch crosses two turns of a hundred at least


def identities(client: redis.Redis, key: str) -> list[str]:
    return [fields[b"seq"].decode() for _, fields in client.xrange(key)]


def check(client: redis.Redis) -> None:
    for n, first in enumerate(FIRSTS):
        keys = StreamKeys(f"logs-{n}")
        batch: list[Entry] = [RecordEntry(b'{"msg":"x"}', "c", "1") for _ in range(RECORDS)]
        args = script_args(batch, 1, "catcher", 0, "block", identity=Identity(TOKEN, first))
        reply = client.eval(PUBLISH_SCRIPT, 3, keys.records, keys.dead_letters, keys.producer("p"), *args)
        assert reply == [RECORDS, 0, 0, 0]
        expected = [f"{TOKEN}:{number}" for number in range(first, first + RECORDS)]
        assert identities(client, keys.records) == expected, f"batch from {first}"


def test_identities_on_fakeredis() -> None:
    check(fakeredis.FakeRedis())


@pytest.mark.integration
def test_identities_on_a_real_redis_server(redis_server: RedisServer) -> None:
    with redis_server.client() as client:
        check(client)
