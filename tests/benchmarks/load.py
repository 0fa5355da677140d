"""The load loop of the protocol benchmarks (tsa.py, ocsp.py): one thread driving
non-blocking keep-alive sockets (selectors) that send pre-encoded HTTP requests and time
each answer. On a 2-core machine it shares the cores with the server, and 16 Python
threads would cost more CPU than the requests they send.

Not a pytest module (its name does not match test_*.py)."""

from __future__ import annotations

import multiprocessing
import queue
import selectors
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.queues import Queue

from tests.benchmarks.common import HOST, BenchmarkError

IO_TIMEOUT = 30.0  # a connection silent this long fails the run


@dataclass(frozen=True)
class Plan:
    """What to send and when to stop. An answer succeeds when it is HTTP 200 and its DER
    body starts, after the outer SEQUENCE header, with ``success`` (PKIStatusInfo granted,
    responseStatus successful...): the full check is OpenSSL's, on the samples."""

    requests: Sequence[bytes]  # whole HTTP requests, sent round-robin
    concurrency: int
    seconds: float
    success: bytes
    max_answers: int = 1_000_000
    once: bool = False  # send each request at most once (nonces)
    samples: int = 3  # (request, body) pairs kept for OpenSSL
    # Connections opened in one burst tend to be all accepted by the same gunicorn worker
    # (its accept loop drains the backlog while the other is still waking up), and
    # keep-alive keeps them there: one worker would serve the whole run. Either open them
    # ``spacing`` seconds apart, as independent clients arrive, or ``prime`` each with one
    # untimed exchange before the next opens (the busy worker leaves the next to the other).
    spacing: float = 0.0
    prime: bool = False


@dataclass
class Load:
    answers: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, successes only
    wall: float = 0.0
    cpu: float = 0.0  # of the load generator's process
    failures: dict[str, int] = field(default_factory=dict)
    first_failure: str = ""
    samples: list[tuple[bytes, bytes]] = field(default_factory=list)  # (request, body)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    def fail(self, kind: str, detail: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1
        self.first_failure = self.first_failure or detail[:500]


@dataclass
class _Conn:
    sock: socket.socket
    sent_at: float = 0.0
    request: bytes = b""
    buffer: bytearray = field(default_factory=bytearray)


def reply(buffer: bytearray) -> tuple[int, bytes] | None:
    """(status, body) of the first whole HTTP response in ``buffer``, consumed; else None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).decode("latin-1")
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if len(buffer) < end + 4 + length:
        return None
    body = bytes(buffer[end + 4 : end + 4 + length])
    del buffer[: end + 4 + length]
    return int(head.split(" ", 2)[1]), body


def starts_with(body: bytes, prefix: bytes) -> bool:
    """Whether the contents of the DER SEQUENCE ``body`` start with ``prefix``."""
    if len(body) < 2:
        return False
    start = 2 if body[1] < 0x80 else 2 + (body[1] & 0x7F)
    return body[start : start + len(prefix)] == prefix


def _open(port: int, plan: Plan) -> list[_Conn]:
    conns = []
    for i in range(plan.concurrency):
        time.sleep(plan.spacing)
        sock = socket.create_connection((HOST, port), timeout=IO_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(sock)
        if plan.prime:
            sock.sendall(plan.requests[i % len(plan.requests)])
            while reply(conn.buffer) is None:
                data = sock.recv(65536)
                if not data:
                    raise BenchmarkError("the server closed a connection")
                conn.buffer += data
        sock.setblocking(False)
        conns.append(conn)
    return conns


def _record(load: Load, plan: Plan, conn: _Conn, answer: tuple[int, bytes], now: float) -> None:
    status, body = answer
    load.answers += 1
    if status != 200 or not starts_with(body, plan.success):
        load.fail(str(status), f"HTTP {status}: {body[:200]!r}")
    else:
        load.latencies.append(now - conn.sent_at)
        if len(load.samples) < plan.samples:
            load.samples.append((conn.request, body))


def drive(port: int, plan: Plan) -> Load:
    """Keep ``plan.concurrency`` connections busy for ``plan.seconds``, or until
    ``plan.max_answers`` answers (or, ``once``, every request sent)."""
    load = Load()
    sel = selectors.DefaultSelector()
    conns = _open(port, plan)
    requests = plan.requests
    sent = 0

    def send(conn: _Conn) -> None:
        nonlocal sent
        conn.request = requests[sent % len(requests)]
        sent += 1
        conn.sent_at = time.perf_counter()
        conn.sock.sendall(conn.request)  # a few hundred bytes: fits the socket buffer

    cpu0, began = time.process_time(), time.perf_counter()
    deadline = began + plan.seconds
    for conn in conns:
        send(conn)
        sel.register(conn.sock, selectors.EVENT_READ, conn)
    busy = len(conns)
    try:
        while busy:
            events = sel.select(IO_TIMEOUT)
            if not events:
                raise BenchmarkError(f"no answer for {IO_TIMEOUT:.0f} s")
            now = time.perf_counter()
            for key, _ in events:
                conn = key.data
                data = conn.sock.recv(65536)
                if not data:
                    raise BenchmarkError("the server closed a connection")
                conn.buffer += data
                answer = reply(conn.buffer)
                if answer is None:
                    continue
                _record(load, plan, conn, answer, now)
                more = load.answers < plan.max_answers and (not plan.once or sent < len(requests))
                if now < deadline and more:
                    send(conn)
                else:
                    sel.unregister(conn.sock)
                    busy -= 1
    finally:
        load.wall = time.perf_counter() - began
        load.cpu = time.process_time() - cpu0
        for conn in conns:
            conn.sock.close()
        sel.close()
    return load


def _child(port: int, plan: Plan, results: Queue[Load | str]) -> None:
    try:
        results.put(drive(port, plan))
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")


def drive_in_child(port: int, plan: Plan) -> Load:
    """:func:`drive` in a separate process (spawn): its CPU is its own, not the
    benchmark's, as for a real client."""
    ctx = multiprocessing.get_context("spawn")
    results: Queue[Load | str] = ctx.Queue()
    child = ctx.Process(target=_child, args=(port, plan, results))
    child.start()
    try:
        outcome = results.get(timeout=plan.seconds + IO_TIMEOUT + 60)
    except queue.Empty:
        raise BenchmarkError("the load process gave no result") from None
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    if isinstance(outcome, str):
        raise BenchmarkError(f"load process: {outcome}")
    return outcome
