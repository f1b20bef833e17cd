"""What reached the stream and the central file, and the one exactly-once assertion every test uses."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.support.realredis import RedisServer

__all__ = [
    "assert_each_record_once_in_order",
    "count_json_lines",
    "entries_added",
    "group_info",
    "group_pending",
    "json_lines",
    "stream_length",
]


def assert_each_record_once_in_order(
    records: Iterable[tuple[str, int]] | Mapping[str, Sequence[int]], clients: int, count: int
) -> None:
    """Clients ``c0`` .. ``c{clients-1}`` each have records ``0 .. count-1``, each once, in their order.

    ``records``: (client, seq) pairs in the order they were found (the
    stream's or the file's), or the seqs found per client.
    """
    per_client: dict[str, list[int]] = defaultdict(list)
    if isinstance(records, Mapping):
        for client, seqs in records.items():
            per_client[client].extend(seqs)
    else:
        for client, seq in records:
            per_client[client].append(seq)
    assert sorted(per_client) == sorted(f"c{n}" for n in range(clients))
    for client, seqs in per_client.items():
        assert seqs == list(range(count)), f"{client}: records missing, doubled or out of order"


def stream_length(server: RedisServer, key: str = "logrelay") -> int:
    with server.client() as client:
        return int(client.xlen(key))


def entries_added(server: RedisServer, key: str = "logrelay") -> int:
    """Entries ever added to the stream: consumers trim it, this count stays."""
    with server.client() as client:
        return int(client.xinfo_stream(key)["entries-added"])


def group_info(server: RedisServer, group: str = "logrelay-file", key: str = "logrelay") -> dict[str, Any]:
    with server.client() as client:
        for info in client.xinfo_groups(key):
            if info["name"] == group.encode():
                return dict(info)
    raise AssertionError(f"no group {group}")


def group_pending(server: RedisServer, group: str = "logrelay-file") -> int:
    return int(group_info(server, group)["pending"])


def json_lines(path: Path, *, writer_running: bool = False) -> list[dict[str, Any]]:
    """Every line of a JSON-lines file, parsed; a torn or partial line fails the test.

    With ``writer_running``, a last line still being appended is left out.
    """
    if not path.exists():
        return []
    data = path.read_bytes()
    if writer_running:
        data = data[: data.rfind(b"\n") + 1]
    assert not data or data.endswith(b"\n"), "the file ends inside a line"
    return [json.loads(line) for line in data.splitlines()]


def count_json_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0
