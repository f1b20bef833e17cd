"""ReplicaWait without Redis: which batches a WAIT's reply confirms."""

from __future__ import annotations

from collections import deque

from redis.exceptions import ResponseError

from relay.common.counters import CatcherStats
from relay.publish.batching import Batch
from relay.publish.replica_wait import ReplicaWait, Wait
from relay.publish.script import RecordEntry


def batches(applied: int, sent: int) -> deque[Batch]:
    """``applied`` batches the master applied, then ``sent`` it has not answered yet."""
    made = deque(Batch([RecordEntry(b"{}", "c", "1")], 100, seq, pipelined=False) for seq in range(applied + sent))
    for batch in list(made)[:applied]:
        batch.applied = True
    return made


def test_enough_replicas_confirm_the_applied_batches_up_to_the_one_it_was_sent_behind() -> None:
    in_flight = batches(3, 1)
    wait = ReplicaWait(1, 0.1, CatcherStats())
    assert wait.confirmed(Wait(in_flight[1]), 2, in_flight) == 2
    assert wait.acknowledging == 2
    # Sent behind a batch whose reply was an error: the applied ones before it.
    assert wait.confirmed(Wait(in_flight[3]), 1, in_flight) == 3
    # Sent behind a batch an earlier WAIT confirmed: those in flight now went out after it.
    assert wait.confirmed(Wait(Batch([], 0, 99, pipelined=False)), 1, in_flight) == 0


def test_too_few_replicas_confirm_nothing_and_are_counted() -> None:
    stats = CatcherStats()
    in_flight = batches(2, 0)
    wait = ReplicaWait(2, 0.1, stats)
    assert wait.confirmed(Wait(in_flight[1]), 1, in_flight) == 0
    assert (stats.replica_waits_short, wait.acknowledging) == (1, 1)


def test_an_error_reply_is_returned_not_raised() -> None:
    in_flight = batches(1, 0)
    wait = ReplicaWait(1, 0.1, CatcherStats())
    error = ResponseError("ERR WAIT cannot be used with replica instances")
    assert wait.confirmed(Wait(in_flight[0]), error, in_flight) is error
    assert isinstance(wait.confirmed(Wait(in_flight[0]), b"1", in_flight), Exception)


def test_the_command() -> None:
    wait = ReplicaWait(2, 0.25, CatcherStats())
    assert wait.command == b"*3\r\n$4\r\nWAIT\r\n$1\r\n2\r\n$3\r\n250\r\n"
