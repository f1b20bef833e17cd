"""Running sender processes and reading back what reached the stream."""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from tests.support.polling import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def stock_logger(name: str, port: int) -> Iterator[logging.Logger]:
    """Logger ``name`` sending through a stock ``SocketHandler`` to 127.0.0.1:``port`` (and nowhere else).

    At exit the handler is removed and closed, which sends what it still holds.
    """
    handler = logging.handlers.SocketHandler("127.0.0.1", port)
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        handler.close()


def start_senders(
    port: int,
    clients: int,
    count: int,
    *,
    patient: bool = False,
    pad: int = 0,
    rate: float = 0,
    reliable: bool = False,
) -> list[subprocess.Popen[bytes]]:
    args = [sys.executable, "-m", "tests.support.sender", "--port", str(port), "--count", str(count)]
    args += ["--pad", str(pad), "--rate", str(rate)]
    if reliable:
        args.append("--reliable")
    if patient:
        args.append("--patient")
    return [
        subprocess.Popen([*args, "--client", f"c{n}"], cwd=REPO_ROOT, stdout=subprocess.PIPE) for n in range(clients)
    ]


def finish_senders(procs: list[subprocess.Popen[bytes]], timeout: float = 120) -> list[dict[str, Any]]:
    """Wait for every sender; return their reports."""
    reports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"sender exited with {proc.returncode}"
        reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    return reports


def read_stream(client: redis.Redis, key: str = "logrelay") -> list[tuple[bytes, dict[bytes, bytes]]]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = []
    last = b"-"
    while True:
        batch = client.xrange(key, min=last, count=10_000)
        if entries and batch and batch[0][0] == entries[-1][0]:
            batch = batch[1:]
        if not batch:
            return entries
        entries.extend(batch)
        last = batch[-1][0]


def wait_for_entries(
    client: redis.Redis, count: int, key: str = "logrelay", timeout: float = 30
) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of ``key`` once it holds at least ``count`` (AssertionError after ``timeout`` seconds)."""

    def enough() -> list[tuple[bytes, dict[bytes, bytes]]]:
        found = read_stream(client, key)
        return found if len(found) >= count else []

    return wait_until(enough, timeout=timeout, what=f"{count} entries in {key}")


def sequences_by_client(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> dict[str, list[int]]:
    """Map each client id to the ``seq`` values of its records, in stream order."""
    seqs: dict[str, list[int]] = defaultdict(list)
    for _, fields in entries:
        record = json.loads(fields[b"record"])
        seqs[record["client_id"]].append(record["seq"])
    return dict(seqs)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
