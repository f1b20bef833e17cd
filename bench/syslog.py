"""Syslog over TCP into a file: logrelay against rsyslog (imtcp → omfile) on the same load, side by side.

    python -m bench.syslog [--senders 8] [--records 50000] [--msg-bytes 64] [--rounds 3]
                           [--output bench/results/syslog.json] [--json]

``--senders`` separate processes each open one TCP connection and send
``--records`` short RFC 5424 messages, LF-framed, pre-built into one buffer
before the clock starts and sent with one ``sendall``; each message carries
its sender and sequence number (``s3 q00000042 xxx...``, ``--msg-bytes`` of
MSG).  Each run is timed from the first byte sent until the receiver's file
holds every line (a thread counts the file's newlines).  Variants, each in
processes of its own, alternated round by round (a drift of the machine
weighs on all alike), the median of ``--rounds`` reported:

* ``rsyslog``: Debian's ``rsyslogd`` in the foreground with a config of its
  own in a temp dir (imtcp on 127.0.0.1 → omfile with ``%msg%\\n``; no
  imuxsock, no imklog, its own work directory; as ``nobody`` when run as
  root).  No broker, nothing synced: its lines are counted, not parsed.
* ``logrelay syslog``: ``logrelay catch --listen-syslog`` and ``logrelay
  consume file`` (JSON lines, synced) on a redis-server of its own, as the
  suite's end-to-end runs.  Every line is parsed: each message exactly once,
  and each sender's in its order.
* ``logrelay socket``: the same stack's SocketHandler input, the same number
  of records carrying the same message, pre-pickled with the real
  ``SocketHandler.makePickle`` and sent by :func:`bench.loadgen.send_frames`
  over as many connections from as many processes; each ``bench_seq`` exactly
  once.

Also timed in-process (best of 5), where a syslog record's time goes in the
catcher: ``SyslogStreamDecoder.feed`` per message in 64 KiB reads, of which
``syslog_record`` (parse + JSON; in C where ``relay.decode._syslog`` is built, beside its Python
reference ``syslog_record_python``), against ``FrameDecoder.feed`` per record of
the same message; and, from ``/proc``, the CPU each process spent per record
in the runs.  Targets (issue 25): logrelay syslog ≥ 0.25× rsyslog, and
faster than logrelay's own SocketHandler path.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import logging.handlers
import multiprocessing.queues
import multiprocessing.synchronize
import os
import platform
import pstats
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

from bench import suite
from bench.ingest import cpu_seconds
from bench.loadgen import _close, _connect, _run_workers, _wait_for_start, send_frames
from relay.decode.frames import DecodeLimits, FrameDecoder
from relay.decode.syslog_frames import SyslogStreamDecoder
from relay.decode.syslog_message import IMPLEMENTATION as SYSLOG_IMPLEMENTATION
from relay.decode.syslog_message import syslog_record, syslog_record_python
from relay.net.registry import READ_SIZE
from tests.support.polling import wait_until
from tests.support.realredis import free_port

VARIANTS = ("rsyslog", "logrelay syslog", "logrelay socket")
TIMEOUT = suite.TIMEOUT  # any one run
#: Messages of the in-process decode timings (the costs per message hardly depend on it).
DECODE_MESSAGES = 50_000
#: Targets of issue 25: logrelay syslog / rsyslog, and logrelay syslog / logrelay socket.
TARGET_VS_RSYSLOG = 0.25
TARGET_VS_SOCKET = 1.0


# --------------------------------------------------------------------------- the load


def msg_text(sender: int, seq: int, msg_bytes: int) -> bytes:
    """The MSG of message ``seq`` of ``sender``: its identity, padded with x to ``msg_bytes``."""
    head = b"s%d q%08d " % (sender, seq)
    return head + b"x" * max(0, msg_bytes - len(head))


def syslog_messages(sender: int, count: int, msg_bytes: int, *, now: float | None = None) -> bytes:
    """``count`` LF-framed RFC 5424 messages of ``sender``, one buffer; microseconds apart from ``now``."""
    start = int(time.time() if now is None else now)
    seconds: dict[int, bytes] = {}
    parts: list[bytes] = []
    for seq in range(count):
        second, micros = divmod(seq, 1_000_000)
        stamp = seconds.get(second)
        if stamp is None:
            stamp = seconds[second] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start + second)).encode()
        parts.append(
            b"<134>1 %s.%06dZ bench-host benchapp %d - - %s\n"
            % (stamp, micros, 1000 + sender, msg_text(sender, seq, msg_bytes))
        )
    return b"".join(parts)


def parse_msg(msg: str) -> tuple[int, int]:
    """(sender, seq) of a message :func:`msg_text` wrote."""
    sender, seq = msg.split(" ", 2)[:2]
    return int(sender[1:]), int(seq[1:])


def socket_frames(senders: int, count: int, msg_bytes: int) -> list[bytes]:
    """The SocketHandler variant's load: ``senders * count`` records of the same messages, in sender order.

    Sender ``n``'s records are ``n * count ...``: :func:`send_frames` gives
    each of ``senders`` processes a contiguous slice, so each sends its own.
    """
    handler = logging.handlers.SocketHandler("unused", 0)  # only for makePickle; never connects
    frames: list[bytes] = []
    for sender in range(senders):
        for seq in range(count):
            record = logging.LogRecord(
                "benchapp",
                logging.INFO,
                "/srv/app/handlers.py",
                42,
                msg_text(sender, seq, msg_bytes).decode(),
                None,
                None,
            )
            record.bench_seq = sender * count + seq
            frames.append(handler.makePickle(record))
    return frames


def _syslog_worker(
    index: int,
    results: multiprocessing.queues.Queue[Any],
    start_value: Synchronized[float],
    go: multiprocessing.synchronize.Event,
    port: int,
    count: int,
    msg_bytes: int,
    timeout: float,
) -> None:
    """One sender: its messages built before the clock starts, then one ``sendall`` on one connection."""
    data = syslog_messages(index, count, msg_bytes)
    (sock,) = _connect(port, 1)
    sock.settimeout(timeout)  # the whole sendall (Python 3.5+): a receiver that stops reading fails the run
    try:
        _wait_for_start(index, results, start_value, go)
        began = time.time()
        sock.sendall(data)
    finally:
        _close([sock])
    results.put(("done", index, began, time.time(), {"records": count}))


def send_syslog(port: int, senders: int, count: int, msg_bytes: int, *, timeout: float = TIMEOUT) -> dict[str, Any]:
    """``senders`` processes each send ``count`` messages over a connection of its own, started together."""
    args = [(port, count, msg_bytes, timeout) for _ in range(senders)]
    began, ended, _ = _run_workers(_syslog_worker, args, None, timeout)
    return {"send_start": began, "send_end": ended, "records": senders * count}


# --------------------------------------------------------------------------- rsyslog


def rsyslogd_binary() -> str | None:
    return shutil.which("rsyslogd") or next(
        (path for path in ("/usr/sbin/rsyslogd", "/sbin/rsyslogd") if os.access(path, os.X_OK)), None
    )


RSYSLOG_CONF = """\
# bench.syslog: imtcp on loopback into one file; nothing else (no imuxsock, no imklog).
global(workDirectory="{work}" net.enableDNS="off")
module(load="imtcp")
template(name="benchMsg" type="string" string="%msg%\\n")
ruleset(name="bench") {{
    action(type="omfile" file="{output}" template="benchMsg")
}}
input(type="imtcp" port="{port}" address="127.0.0.1" ruleset="bench")
# rsyslogd's own messages: into the temp dir, never the system's log.
*.* action(type="omfile" file="{internal}")
"""


class Rsyslog:
    """``rsyslogd -n`` with a config of its own in ``tmp``, on a free port; unprivileged (``nobody``) as root."""

    def __init__(self, tmp: Path) -> None:
        binary = rsyslogd_binary()
        if binary is None:
            raise RuntimeError("rsyslogd is not installed: apt-get install rsyslog")
        self.tmp = tmp
        self.port = free_port()
        self.output = tmp / "rsyslog.log"
        work = tmp / "work"
        work.mkdir()
        conf = tmp / "rsyslog.conf"
        conf.write_text(
            RSYSLOG_CONF.format(work=work, output=self.output, port=self.port, internal=tmp / "internal.log")
        )
        self.args = [binary, "-n", "-f", str(conf), "-i", str(tmp / "rsyslogd.pid")]
        self.user: int | None = None
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self.user, self.group = nobody.pw_uid, nobody.pw_gid
            for path in (tmp, work, conf):
                os.chown(path, self.user, self.group)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Rsyslog:
        with open(self.tmp / "rsyslogd.out", "wb") as log:
            if self.user is not None:
                self.process = subprocess.Popen(
                    self.args, stdout=log, stderr=subprocess.STDOUT, user=self.user, group=self.group, extra_groups=[]
                )
            else:
                self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._listening, timeout=15, max_delay=0.05, what=f"rsyslogd listening on {self.port}")
        return self

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            out = (self.tmp / "rsyslogd.out").read_text(errors="replace")
            raise RuntimeError(f"rsyslogd exited with {self.process.returncode}:\n{out}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def rsyslog() -> Iterator[Rsyslog]:
    with tempfile.TemporaryDirectory(prefix="bench-rsyslog-") as tmp:
        server = Rsyslog(Path(tmp))
        try:
            yield server.start()
        finally:
            server.stop()


# --------------------------------------------------------------------------- the runs


def syslog_setup(port: int) -> suite.Setup:
    return suite.Setup(catcher_args=("--listen-syslog", f"127.0.0.1:{port}"))


def check_syslog_lines(path: Path, senders: int, count: int) -> None:
    """Each sender's messages in the consumer's JSON lines exactly once, and in the order it sent them."""
    by_sender: dict[int, list[int]] = {n: [] for n in range(senders)}
    for line in path.read_bytes().splitlines():
        sender, seq = parse_msg(json.loads(line)["msg"])
        by_sender[sender].append(seq)
    for sender, seqs in by_sender.items():
        if seqs != list(range(count)):
            suite.assert_exactly_once(seqs, count, f"logrelay syslog, sender {sender}")
            raise AssertionError(f"logrelay syslog, sender {sender}: every message once, but out of order")


def timed(
    output: Path, pids: dict[str, int], send: Callable[[], dict[str, Any]], what: str
) -> tuple[dict[str, Any], float, dict[str, float]]:
    """Run ``send()``; (its report, seconds from the first byte sent to the last line, CPU µs per record by role)."""
    with suite.FileWatch(output, interval=0.002) as watch:
        before = {role: cpu_seconds(pid) for role, pid in pids.items()}
        sent = send()
        done = watch.wait_lines(sent["records"], what)
        cpu = {role: (cpu_seconds(pid) - before[role]) / sent["records"] * 1e6 for role, pid in pids.items()}
    return sent, done - sent["send_start"], cpu


def run_rsyslog(senders: int, count: int, msg_bytes: int) -> dict[str, Any]:
    with rsyslog() as server:
        assert server.process is not None
        sent, elapsed, cpu = timed(
            server.output,
            {"rsyslogd": server.process.pid},
            lambda: send_syslog(server.port, senders, count, msg_bytes),
            "rsyslog lines",
        )
        lines = server.output.read_bytes().count(b"\n")
    if lines != sent["records"]:
        raise AssertionError(f"rsyslog wrote {lines} lines for {sent['records']} messages")
    return {"system": "rsyslog", "records": sent["records"], "lines_per_s": sent["records"] / elapsed, "cpu_us": cpu}


def stack_pids(stack: suite.Stack) -> dict[str, int]:
    processes = {"catcher": stack.catcher.process, "redis": stack.server.process}
    if stack.consumer is not None:
        processes["consumer"] = stack.consumer.process
    return {role: process.pid for role, process in processes.items() if process is not None}


def run_logrelay_syslog(senders: int, count: int, msg_bytes: int) -> dict[str, Any]:
    port = free_port()
    with suite.logrelay(with_consumer=True, setup=syslog_setup(port)) as stack:
        wait_until(lambda: _accepts(port), timeout=15, max_delay=0.05, what=f"syslog listening on {port}")
        sent, elapsed, cpu = timed(
            stack.output, stack_pids(stack), lambda: send_syslog(port, senders, count, msg_bytes), "logrelay lines"
        )
        check_syslog_lines(stack.output, senders, count)
    return {
        "system": "logrelay syslog",
        "records": sent["records"],
        "lines_per_s": sent["records"] / elapsed,
        "cpu_us": cpu,
    }


def profile_catcher(senders: int, records: int, msg_bytes: int, path: Path, *, top: int = 30) -> str:
    """One logrelay syslog run with the catcher under cProfile (stopped by SIGTERM, so it writes ``path``).

    Returns the top ``top`` functions by own time.  cProfile slows the
    catcher several times over: read the shares, not the rate.
    """
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        stack = suite.Stack(Path(tmp), with_consumer=True, setup=syslog_setup(port))
        # python -m cProfile -o PATH -m relay catch ...
        stack.catcher.args[1:1] = ["-m", "cProfile", "-o", str(path)]
        try:
            stack.start()
            wait_until(lambda: _accepts(port), timeout=15, max_delay=0.05, what=f"syslog listening on {port}")
            with suite.FileWatch(stack.output, interval=0.01) as watch:
                sent = send_syslog(port, senders, records, msg_bytes)
                watch.wait_lines(sent["records"], "logrelay lines")
            stack.catcher.stop()
        finally:
            stack.close()
    out = io.StringIO()
    pstats.Stats(str(path), stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def run_logrelay_socket(frames: list[bytes], senders: int) -> dict[str, Any]:
    with suite.logrelay(with_consumer=True) as stack:
        sent, elapsed, cpu = timed(
            stack.output,
            stack_pids(stack),
            lambda: send_frames(stack.port, frames, senders, senders, timeout=TIMEOUT),
            "logrelay lines",
        )
        suite.assert_exactly_once(suite.json_seqs(stack.output), len(frames), "logrelay socket")
    return {
        "system": "logrelay socket",
        "records": sent["records"],
        "lines_per_s": sent["records"] / elapsed,
        "cpu_us": cpu,
    }


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def alternated(rounds: int) -> list[str]:
    """The variants in run order: as listed, then reversed, ... (a drift of the machine weighs on all alike)."""
    order: list[str] = []
    for n in range(rounds):
        order += VARIANTS if n % 2 == 0 else VARIANTS[::-1]
    return order


# --------------------------------------------------------------------------- in-process costs


def best_us_per_message(cases: dict[str, Callable[[], object]], count: int, repeat: int) -> dict[str, float]:
    """µs per message of each case, best of ``repeat``; the cases interleaved in each repeat."""
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(repeat):
        for name, case in cases.items():
            started = time.perf_counter()
            case()
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: seconds / count * 1e6 for name, seconds in best.items()}


def decode_costs(count: int, msg_bytes: int, *, repeat: int = 5) -> dict[str, float]:
    """µs per message of the catcher's decoding, syslog and SocketHandler, the same messages, best of ``repeat``.

    The streams are fed in the catcher's reads (64 KiB).  ``syslog_record_us``
    is the parse and JSON alone (the rest of ``feed`` is framing: finding
    the LFs, slicing the messages out).
    """
    limits = DecodeLimits()
    stream = syslog_messages(0, count, msg_bytes)
    messages = stream.splitlines(keepends=False)
    pickled = b"".join(socket_frames(1, count, msg_bytes))

    def feed_all(data: bytes, new_decoder: Callable[[], Any]) -> Callable[[], object]:
        chunks = [data[at : at + READ_SIZE] for at in range(0, len(data), READ_SIZE)]

        def run() -> None:
            decoder = new_decoder()
            for chunk in chunks:
                decoder.feed(chunk)

        return run

    received = time.time()

    def records() -> None:
        for message in messages:
            syslog_record(message, received)

    def records_python() -> None:
        for message in messages:
            syslog_record_python(message, received)

    events = SyslogStreamDecoder(limits).feed(stream)
    assert len(events) == count, "every message a record"
    assert all(type(e) is bytes for e in events), "no dead letter"
    costs = best_us_per_message(
        {
            "syslog_feed_us": feed_all(stream, lambda: SyslogStreamDecoder(limits)),
            "syslog_record_us": records,
            "syslog_record_python_us": records_python,
            "frame_feed_us": feed_all(pickled, lambda: FrameDecoder(limits)),
        },
        count,
        repeat,
    )
    return {
        "messages": count,
        **costs,
        "syslog_parse": SYSLOG_IMPLEMENTATION,
        "syslog_bytes": len(stream) / count,
        "frame_bytes": len(pickled) / count,
    }


# --------------------------------------------------------------------------- the whole


def run(senders: int, records: int, msg_bytes: int, *, rounds: int = 3) -> dict[str, Any]:
    """Every run's figures by variant, the in-process costs, and the medians and ratios in ``summary``."""
    frames = socket_frames(senders, records, msg_bytes)
    measure: dict[str, Callable[[], dict[str, Any]]] = {
        "rsyslog": lambda: run_rsyslog(senders, records, msg_bytes),
        "logrelay syslog": lambda: run_logrelay_syslog(senders, records, msg_bytes),
        "logrelay socket": lambda: run_logrelay_socket(frames, senders),
    }
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "senders": senders,
        "records_per_sender": records,
        "msg_bytes": msg_bytes,
        "rounds": rounds,
        "runs": {variant: [] for variant in VARIANTS},
    }
    for variant in alternated(rounds):
        print(f"... syslog bench: {variant}", file=sys.stderr, flush=True)
        result["runs"][variant].append(measure[variant]())
    print("... syslog bench: decoding in-process", file=sys.stderr, flush=True)
    result["decode"] = decode_costs(min(DECODE_MESSAGES, senders * records), msg_bytes)
    result["summary"] = summary(result)
    return result


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """Median lines/s of each variant, CPU µs per record by role (medians), and the target ratios."""
    rates = {v: statistics.median(r["lines_per_s"] for r in result["runs"][v]) for v in VARIANTS}
    cpu = {
        v: {
            role: statistics.median(r["cpu_us"][role] for r in result["runs"][v])
            for role in result["runs"][v][0]["cpu_us"]
        }
        for v in VARIANTS
    }
    return {
        "lines_per_s": rates,
        "cpu_us_per_record": cpu,
        "syslog_vs_rsyslog": rates["logrelay syslog"] / rates["rsyslog"],
        "syslog_vs_socket": rates["logrelay syslog"] / rates["logrelay socket"],
        "socket_vs_rsyslog": rates["logrelay socket"] / rates["rsyslog"],
    }


def rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(measurement, figure, ratio) rows of the table."""
    found = result["summary"]
    rates = found["lines_per_s"]
    count = len(result["runs"]["rsyslog"])
    each = f"{result['senders']} x {result['records_per_sender']:,}"
    table: list[tuple[str, str, str]] = []
    for variant, name in (
        ("rsyslog", "rsyslog imtcp -> omfile (no broker, not synced)"),
        ("logrelay syslog", "logrelay --listen-syslog -> Redis -> file (synced)"),
        ("logrelay socket", "logrelay SocketHandler -> Redis -> file (synced)"),
    ):
        runs = ", ".join(f"{r['lines_per_s'] / 1000:.0f}k" for r in result["runs"][variant])
        table.append(
            (
                f"{name}, {each}",
                f"{rates[variant]:,.0f} lines/s",
                f"{rates[variant] / rates['rsyslog']:.3f}x rsyslog (runs {runs})",
            )
        )
    table.append(
        ("logrelay syslog / rsyslog", f"{found['syslog_vs_rsyslog']:.3f}x", f"target >= {TARGET_VS_RSYSLOG}: "
         + ("met" if found["syslog_vs_rsyslog"] >= TARGET_VS_RSYSLOG else "NOT MET"))
    )  # fmt: skip
    table.append(
        ("logrelay syslog / logrelay socket", f"{found['syslog_vs_socket']:.3f}x", f"target > {TARGET_VS_SOCKET:g}: "
         + ("met" if found["syslog_vs_socket"] > TARGET_VS_SOCKET else "NOT MET"))
    )  # fmt: skip
    for variant, cpu in found["cpu_us_per_record"].items():
        split = " ".join(f"{role} {us:.2f}" for role, us in cpu.items())
        table.append((f"  CPU per record, {variant}", split, f"us (medians of {count} runs)"))
    decode = result["decode"]
    table.append(
        ("  catcher in-process: SyslogStreamDecoder.feed", f"{decode['syslog_feed_us']:.2f} us/msg",
         f"{decode['syslog_bytes']:.0f} bytes each; parse + JSON (syslog_record) {decode['syslog_record_us']:.2f} us")
    )  # fmt: skip
    table.append(
        ("  catcher in-process: the parse's Python reference", f"{decode['syslog_record_python_us']:.2f} us/msg",
         f"syslog_record_python; the catcher's parse is {decode['syslog_parse']} "
         f"({decode['syslog_record_python_us'] / decode['syslog_record_us']:.1f}x faster)")
    )  # fmt: skip
    table.append(
        ("  catcher in-process: FrameDecoder.feed", f"{decode['frame_feed_us']:.2f} us/record",
         f"{decode['frame_bytes']:.0f} bytes each; "
         f"syslog feed {decode['syslog_feed_us'] / decode['frame_feed_us']:.2f}x")
    )  # fmt: skip
    return table


def table(result: dict[str, Any]) -> str:
    found = rows(result)
    width = max(len(name) for name, _, _ in found)
    lines = [f"{'measurement':<{width}}  {'figure':>22}  ratio", "-" * (width + 60)]
    lines += [f"{name:<{width}}  {figure:>22}  {ratio}" for name, figure, ratio in found]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--senders", type=int, default=8, help="TCP senders, one process and connection each")
    parser.add_argument("--records", type=int, default=50_000, help="messages per sender")
    parser.add_argument("--msg-bytes", type=int, default=64, help="bytes of each message's MSG part")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant, alternated; medians reported")
    parser.add_argument("--output", type=Path, default=Path("bench/results/syslog.json"))
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line, not the table")
    parser.add_argument(
        "--profile-catcher", type=Path, metavar="PATH",
        help="only one logrelay syslog run, its catcher under cProfile (stats to PATH); print the top functions",
    )  # fmt: skip
    args = parser.parse_args()
    if args.profile_catcher:
        print(profile_catcher(args.senders, args.records, args.msg_bytes, args.profile_catcher))
        return
    if rsyslogd_binary() is None:
        parser.error("rsyslogd is not installed (apt-get install rsyslog)")
    result = run(args.senders, args.records, args.msg_bytes, rounds=args.rounds)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result))
        return
    print(table(result))
    print(f"\n(figures as JSON: {args.output})")


if __name__ == "__main__":
    main()
