"""Issuance throughput of a whole Sceau server, set against the raw HSM signature rate.

Run from the repository root:

    .venv/bin/python -m tests.benchmarks.issuance [--requests N] [--concurrency 16]
        [--workers 2] [--keep-home]

It builds a throwaway home (`sceau init`, a SoftHSM2 token), starts `sceau serve` on a free
loopback port, and posts N person-lcp issuance requests from concurrent keep-alive clients.
Then, with the server stopped so that it does not compete for the CPU, it measures how fast
the issuing CA key signs through core.hsm.keystore.KeyStore alone, in one process and in as many
processes as the server had workers. The ratio of the two rates is the share of the HSM's
signing capacity that issuance at full load uses. The last line is machine-readable (RESULT ...).

Not a pytest test: the file name does not match test_*.py, so pytest never collects it.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import re
import resource
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.config import load_config
from core.hsm.algorithms import KeyAlgorithm, default_scheme
from sceau.ceremony import ca_key_label
from tests.benchmarks.common import (
    HOST,
    BenchmarkError,
    SigningKey,
    add_client,
    arguments,
    bounded,
    init_home,
    log_lines,
    machine_busy_seconds,
    machine_info,
    parallel_sign_rate,
    percentile,
    run_main,
    sign_loop,
)
from tests.support.builders import NATURAL, csr_pem
from tests.support.servers import SceauServer

PROFILE = "person-lcp"
CA_KEY = ca_key_label("persons")  # the issuing CA of person-lcp
CA_KEY_ALGORITHM = KeyAlgorithm.EC_P384  # what the ceremony generates for it
CA_SCHEME = default_scheme(CA_KEY_ALGORITHM)  # as it signs certificates
ISSUE_PATH = "/ca/api/v1/certificates"
PROOF_PATH = "/ra/api/v1/identity-proofs"

# Above gunicorn's 60 s worker timeout: a stuck request shows up as the server's 5xx or
# a reset, not as our own timeout.
REQUEST_TIMEOUT = 90.0
WARMUP_REQUESTS = 50
SERVER_THREADS = 4  # per worker; `sceau serve`'s default, passed explicitly for the report
# CPU use by other processes (cores, averaged over a phase) above which the report
# warns; the kernel's own work on the database and loopback stays well below it.
NOISY_CORES = 0.2
PROOFS = 16
FAILURE_BODY_CHARS = 2000
LOG_EXCERPT_LINES = 20
# Lines of the server log worth reporting: tracebacks, errors, SQLite lock waits that gave
# up, and gunicorn killing workers. Read only up to our own SIGTERM, after which gunicorn
# logs "Worker exiting" as a matter of course.
LOG_ALARMS = re.compile(
    r"Traceback|\bERROR\b|\bCRITICAL\b|database is locked|WORKER TIMEOUT|Worker exiting"
    r"|was sent SIG",
    re.IGNORECASE,
)
# Each worker boots once at start; one more boot means gunicorn replaced a dead worker.
BOOTING = "Booting worker"
# Where a log record begins: Python logging's "2026-01-02 03:04:05,678 LEVEL" or
# gunicorn's "[2026-01-02 03:04:05 +0000] [pid] [LEVEL]"; other lines continue a record.
LOG_RECORD_START = re.compile(r"^\[?\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d")
# The last line of a traceback: "package.module.SomeError: message".
LOG_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Timeout)\b")
# What differs between two occurrences of the same alarm: times, pids, request ids.
LOG_VARYING = re.compile(r"\d+")

# -- CPU use ------------------------------------------------------------------------------


def own_cpu_seconds(server: SceauServer | None) -> float:
    """CPU seconds of this process, its reaped children and the live server group."""
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        own += usage.ru_utime + usage.ru_stime
    if server is not None:
        own += sum(server.cpu_seconds().values())
    return own


@dataclass
class Quietness:
    """How much CPU other processes (other users' jobs, not ours) took during a phase:
    on a shared machine they, not Sceau, may explain a poor figure."""

    wall: float = 0.0
    others: float = 0.0  # CPU seconds

    @property
    def cores(self) -> float:
        return self.others / self.wall if self.wall > 0 else 0.0


@contextlib.contextmanager
def watching(server: SceauServer | None = None) -> Iterator[Quietness]:
    quiet = Quietness()
    busy, own, began = machine_busy_seconds(), own_cpu_seconds(server), time.perf_counter()
    try:
        yield quiet
    finally:
        quiet.wall = time.perf_counter() - began
        # Clamped: the clocks of /proc/stat and getrusage tick differently, and a negative
        # figure would only mean "nothing else ran".
        quiet.others = max(
            0.0,
            (machine_busy_seconds() - busy) - (own_cpu_seconds(server) - own),
        )


# -- the API client -----------------------------------------------------------------------


def post_json(
    conn: http.client.HTTPConnection, path: str, token: str, body: bytes
) -> tuple[int, bytes]:
    conn.request(
        "POST",
        path,
        body=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    resp = conn.getresponse()
    # Reading the whole body is what lets the connection serve the next request.
    return resp.status, resp.read()


def create_proofs(port: int, token: str, count: int) -> list[str]:
    body = json.dumps(NATURAL).encode()
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
    try:
        proofs = []
        for _ in range(count):
            status, payload = post_json(conn, PROOF_PATH, token, body)
            answer = json.loads(payload) if payload else {}
            if status != 201 or answer.get("status") != "verified":
                raise BenchmarkError(f"identity proof: HTTP {status}: {payload[:2000]!r}")
            proofs.append(str(answer["id"]))
        return proofs
    finally:
        conn.close()


def issuance_bodies(count: int, proofs: Sequence[str]) -> list[bytes]:
    """Request bodies with fresh P-256 CSRs, encoded now so the timed phase only sends."""
    bodies = []
    for i in range(count):
        request = {
            "profile": PROFILE,
            "identity_proof": proofs[i % len(proofs)],
            "csr": csr_pem(cn="Benchmark"),  # ignored: the subject comes from the proof
        }
        bodies.append(json.dumps(request).encode())
    return bodies


@dataclass
class LoadResult:
    requested: int
    latencies: list[float] = field(default_factory=list)  # seconds, successes only
    # When each success completed, in seconds since the phase began: shows whether the
    # rate holds while the database grows.
    completions: list[float] = field(default_factory=list)
    began: float = 0.0  # time.perf_counter() at the start of the phase
    failures: int = 0
    statuses: dict[str, int] = field(default_factory=dict)  # "201", "500", "ConnectionReset..."
    first_failure: str | None = None
    unsent: int = 0  # left when the deadline passed
    wall: float = 0.0
    client_cpu: float = 0.0
    # CPU seconds each server process (gunicorn master, workers) spent in the phase:
    # shows whether the load reached every worker.
    server_cpu: dict[int, float] = field(default_factory=dict)
    server_master: int | None = None  # the group leader; the others are workers

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall if self.wall > 0 else 0.0

    def fail(self, kind: str, detail: str) -> None:
        """Count one failed request (under the caller's lock)."""
        self.failures += 1
        self.statuses[kind] = self.statuses.get(kind, 0) + 1
        if self.first_failure is None:
            self.first_failure = detail[:FAILURE_BODY_CHARS]

    def count_unsent(self) -> None:
        """The requests left when the deadline passed count as failures."""
        self.unsent = self.requested - len(self.latencies) - self.failures
        if self.unsent:
            self.failures += self.unsent
            self.statuses["not sent (deadline)"] = self.unsent
            if self.first_failure is None:
                self.first_failure = f"{self.unsent} requests not sent: the deadline passed"

    def rates_by_slice(self, slices: int = 4) -> list[float]:
        """Issuance rate over consecutive equal shares of the successes."""
        done = sorted(self.completions)
        rates, previous = [], 0.0
        for i in range(1, slices + 1):
            chunk = done[(i - 1) * len(done) // slices : i * len(done) // slices]
            if chunk:
                rates.append(len(chunk) / max(chunk[-1] - previous, 1e-9))
                previous = chunk[-1]
        return rates


def run_load(
    server: SceauServer,
    token: str,
    bodies: Sequence[bytes],
    args: argparse.Namespace,
    *,
    measure_server: bool = False,
) -> LoadResult:
    """Post every body once from --concurrency threads, each with its own keep-alive
    connection; stop taking new requests after --timeout seconds. With ``measure_server``,
    also the CPU each server process spent."""
    port, concurrency, deadline = server.port, args.concurrency, time.monotonic() + args.timeout
    result = LoadResult(requested=len(bodies))
    lock = threading.Lock()
    pending: Iterator[bytes] = iter(bodies)

    def fail(kind: str, detail: str) -> None:
        with lock:
            result.fail(kind, detail)

    def client() -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
        try:
            while time.monotonic() < deadline:
                with lock:
                    body = next(pending, None)
                if body is None:
                    return
                started = time.perf_counter()
                try:
                    status, payload = post_json(conn, ISSUE_PATH, token, body)
                except (OSError, http.client.HTTPException) as exc:
                    # A broken connection is a failed request; the next one reconnects.
                    conn.close()
                    fail(type(exc).__name__, f"{type(exc).__name__}: {exc}")
                    continue
                finished = time.perf_counter()
                if status != 201:
                    fail(str(status), f"HTTP {status}: {payload.decode(errors='replace')}")
                    continue
                with lock:
                    result.latencies.append(finished - started)
                    result.completions.append(finished - result.began)
                    result.statuses["201"] = result.statuses.get("201", 0) + 1
        finally:
            conn.close()

    # Daemon threads: an interrupted run must not wait for them to exit; stopping the
    # server breaks their connections anyway.
    threads = [
        threading.Thread(target=client, name=f"client-{i}", daemon=True) for i in range(concurrency)
    ]
    server_cpu = server.cpu_seconds() if measure_server else {}
    client_cpu = time.process_time()
    result.began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        # Bounded by the deadline plus one request's timeout.
        thread.join(timeout=max(0.0, deadline - time.monotonic()) + REQUEST_TIMEOUT + 5)
    result.wall = time.perf_counter() - result.began
    result.client_cpu = time.process_time() - client_cpu
    if measure_server:
        result.server_master = server.pgid
        after = server.cpu_seconds()
        result.server_cpu = {pid: after[pid] - server_cpu.get(pid, 0.0) for pid in after}
    with lock:
        result.count_unsent()
    return result


# -- the report ---------------------------------------------------------------------------


@dataclass
class Alarm:
    """One kind of alarming log record: its first line and, for a traceback, the exception."""

    first: str  # the first occurrence's opening line, as logged
    exception: str  # the traceback's last line, or ""
    count: int = 1


def print_alarms(alarms: list[Alarm]) -> None:
    """The server log's alarming records, each kind once, or the line saying there were
    none (the issuance and mixed-load benchmarks print this alike)."""
    if not alarms:
        print("server log: no error, traceback, lock or worker-restart line")
        return
    total = sum(alarm.count for alarm in alarms)
    print(f"server log: {total} alarming record(s) of {len(alarms)} kind(s):")
    for alarm in alarms[:LOG_EXCERPT_LINES]:
        print(f"  {alarm.count} x, first: {alarm.first}")
        if alarm.exception:
            print(f"      -> {alarm.exception}")


def server_alarms(log_path: Path, until: int, workers: int) -> list[Alarm]:
    """Alarming records of the first `until` bytes of the log, worker restarts included,
    one entry per kind (the same message from another worker or at another time counts
    as the same kind), in order of first appearance."""
    lines = log_lines(log_path, until)
    # A record is a timestamped line and the traceback lines that follow it.
    records: list[list[str]] = []
    for line in lines:
        if LOG_RECORD_START.match(line) or not records:
            records.append([line])
        else:
            records[-1].append(line)
    alarms: dict[str, Alarm] = {}
    boots = 0
    for record in records:
        head = record[0]
        if BOOTING in head:
            boots += 1
            if boots <= workers:
                continue
        elif not any(LOG_ALARMS.search(line) for line in record):
            continue
        # The exception line, not SQLAlchemy's "[SQL: ...]" and "(Background ...)" after it.
        raised = [line for line in record[1:] if LOG_EXCEPTION.match(line)]
        exception = (raised[-1] if raised else record[-1] if len(record) > 1 else "").strip()
        key = LOG_VARYING.sub("#", head) + "|" + exception
        if key in alarms:
            alarms[key].count += 1
        else:
            alarms[key] = Alarm(head, exception)
    return list(alarms.values())


@dataclass
class Measurements:
    load: LoadResult
    sign_1p: float  # signatures/s, one process
    sign_np: float  # signatures/s, as many processes as server workers
    alarms: list[Alarm]  # from the server log
    quiet: dict[str, Quietness]  # by phase: "issuance", "HSM 1p", ...


def report(args: argparse.Namespace, m: Measurements) -> None:
    load, sign_1p, sign_np = m.load, m.sign_1p, m.sign_np
    latencies = sorted(load.latencies)
    ms = [percentile(latencies, q) * 1000 for q in (0.50, 0.90, 0.99)] + [
        (latencies[-1] if latencies else float("nan")) * 1000
    ]
    mean_ms = statistics.fmean(latencies) * 1000 if latencies else float("nan")
    ratio = load.rate / sign_np if sign_np else float("nan")
    print()
    print("== Sceau issuance benchmark ==")
    for line in machine_info(detailed=True):
        print(line)
    print(
        f"setup            {args.workers} gunicorn workers x {SERVER_THREADS} threads, SQLite, "
        f"{args.concurrency} keep-alive clients, profile {PROFILE}, P-256 CSRs, "
        f"CA key {CA_KEY} ({CA_KEY_ALGORITHM})"
    )
    print()
    print(f"requests         {load.requested} ({len(latencies)} issued, {load.failures} failed)")
    print(f"statuses         {dict(sorted(load.statuses.items()))}")
    print(f"wall time        {load.wall:.2f} s")
    print(f"issuance rate    {load.rate:.1f} certificates/s")
    print(f"rate by quarter  {', '.join(f'{r:.1f}' for r in load.rates_by_slice())} /s")
    print(
        f"latency (ms)     p50 {ms[0]:.1f}  p90 {ms[1]:.1f}  p99 {ms[2]:.1f}  "
        f"max {ms[3]:.1f}  mean {mean_ms:.1f}"
    )
    if load.wall > 0:
        total = sum(load.server_cpu.values())
        workers = sorted(
            (cpu for pid, cpu in load.server_cpu.items() if pid != load.server_master),
            reverse=True,
        )
        print(
            f"cpu              server {total:.1f} s ({total / load.wall:.2f} cores; per worker "
            f"{', '.join(f'{cpu:.1f}' for cpu in workers) or 'unknown'} s), this client "
            f"{load.client_cpu:.1f} s ({load.client_cpu / load.wall:.2f} cores)"
        )
        if latencies:
            # Set against the signature's own cost below, it says what else an issuance costs.
            print(f"server cpu/cert  {total / len(latencies) * 1000:.1f} ms")
    noisy = [phase for phase, quiet in m.quiet.items() if quiet.cores > NOISY_CORES]
    print(
        "other processes  "
        + ", ".join(f"{phase} {quiet.cores:.2f} cores" for phase, quiet in m.quiet.items())
        + (f"  << NOT QUIET during {', '.join(noisy)}: figures unreliable" if noisy else "")
    )
    print(
        f"raw HSM signing  1 process: {sign_1p:.0f}/s ({1000 / sign_1p:.2f} ms each), "
        f"{args.workers} processes: {sign_np:.0f}/s  (sign_digest, {args.hsm_seconds:g} s each)"
    )
    print(f"ratio            issuance / raw {args.workers}-process signing = {ratio:.3f}")
    if load.first_failure is not None:
        print()
        print(f"first failure:   {load.first_failure}")
    print()
    print_alarms(m.alarms)
    print()
    print(
        f"RESULT issuance_cps={load.rate:.1f} p50_ms={ms[0]:.1f} p99_ms={ms[2]:.1f} "
        f"hsm_sign_1p={sign_1p:.0f} hsm_sign_{args.workers}p={sign_np:.0f} ratio={ratio:.3f}"
    )


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = arguments(__doc__)
    for flag, kind, low, high, default, text in (
        ("--requests", int, 1, 100_000, 2000, "timed issuance requests (default 2000)"),
        ("--concurrency", int, 1, 256, 16, "concurrent clients, one connection each (default 16)"),
        ("--workers", int, 1, 16, 2, "gunicorn workers, and HSM baseline processes (default 2)"),
        ("--timeout", float, 1e-3, 3600, 600.0, "stop sending after this many seconds (timed)"),
        ("--hsm-seconds", float, 1e-3, 3600, 3.0, "seconds of each raw HSM signing run"),
    ):
        parser.add_argument(flag, type=bounded(kind, low, high), default=default, help=text)
    return parser.parse_args(argv)


def issuance_phases(
    args: argparse.Namespace, server: SceauServer, token: str, quiet: dict[str, Quietness]
) -> LoadResult:
    """Identity proofs and CSRs, a warm-up, then the timed requests."""
    proofs = create_proofs(server.port, token, PROOFS)
    bodies = issuance_bodies(WARMUP_REQUESTS + args.requests, proofs)
    print(f"{len(proofs)} identity proofs, {len(bodies)} CSRs ready; warming up", flush=True)
    warm = run_load(server, token, bodies[:WARMUP_REQUESTS], args)
    if warm.failures:
        raise BenchmarkError(f"warm-up failed ({warm.statuses}): {warm.first_failure}")
    print(f"timed phase: {args.requests} requests", flush=True)
    with watching(server) as quiet["issuance"]:
        return run_load(server, token, bodies[WARMUP_REQUESTS:], args, measure_server=True)


def benchmark(args: argparse.Namespace, workdir: Path) -> int:
    home = workdir / "home"
    log_path = workdir / "server.log"
    print(f"home {home}; server log {log_path}", flush=True)
    init_home(home)
    token = add_client(home, PROFILE)

    quiet: dict[str, Quietness] = {}
    server = SceauServer(home, log_path, workers=args.workers, threads=SERVER_THREADS)
    try:
        server.start()
        server.wait_healthy()
        print(f"server up on {HOST}:{server.port} ({args.workers} workers)", flush=True)
        load = issuance_phases(args, server, token, quiet)
    finally:
        # Where the run ends and our shutdown begins, in the log.
        log_size = log_path.stat().st_size if log_path.exists() else 0
        server.stop()
    alarms = server_alarms(log_path, log_size, args.workers)

    # The server is gone: the signing baseline has the CPU to itself.
    key = SigningKey(load_config(home).hsm, CA_KEY, CA_SCHEME)
    print("raw HSM signing rate, 1 process", flush=True)
    with watching() as quiet["HSM 1p"]:
        count, elapsed = sign_loop(key, args.hsm_seconds)
    print(f"raw HSM signing rate, {args.workers} processes", flush=True)
    with watching() as quiet[f"HSM {args.workers}p parallel"]:
        sign_np = parallel_sign_rate(key, args.workers, args.hsm_seconds)

    report(args, Measurements(load, count / elapsed, sign_np, alarms, quiet))
    return 1 if load.failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(benchmark, parse_args(argv), "issuance")


if __name__ == "__main__":
    sys.exit(main())
