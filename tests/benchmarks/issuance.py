"""Issuance throughput of a whole Sceau server, set against the raw HSM signature rate.

Run from the repository root:

    .venv/bin/python tests/benchmarks/issuance.py [--requests N] [--concurrency 16]
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
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.config import load_config
from core.hsm.algorithms import KeyAlgorithm, default_scheme
from sceau.ceremony import ca_key_label
from tests.benchmarks.common import (
    HOST,
    SCEAU,
    BenchmarkError,
    free_port,
    machine_busy_seconds,
    parallel_sign_rate,
    percentile,
    run_sceau,
    sign_loop,
)

# Every request goes to the server this script started, on loopback, and nowhere else.
# A base URL that looks public: with 127.0.0.1 pkilint flags the certificate URLs as
# internal and `sceau init` would write accepted findings, which this benchmark must not need.
BASE_URL = "http://pki.example.com"
DOCUMENTS_URL = "https://pki.example.com"
PROFILE = "person-lcp"
CA_KEY = ca_key_label("persons")  # the issuing CA of person-lcp
CA_KEY_ALGORITHM = KeyAlgorithm.EC_P384  # what the ceremony generates for it
CA_SCHEME = default_scheme(CA_KEY_ALGORITHM)  # as it signs certificates
ISSUE_PATH = "/ca/api/v1/certificates"
PROOF_PATH = "/ra/api/v1/identity-proofs"

HEALTH_TIMEOUT = 60.0
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

# The identity a platform vouches for (delegated method): verified at once, reusable for
# any number of certificates. A copy of tests/helpers.py NATURAL, which this script, run
# as a file, cannot import.
NATURAL: dict[str, Any] = {
    "subject_kind": "natural",
    "method": "delegated",
    "subject": {
        "given_name": "Jeanne",
        "surname": "Dupont",
        "email": "jeanne.dupont@example.com",
        "country": "FR",
    },
    "document": {
        "type": "id-card",
        "number": "X4RTBPFW4",
        "issuing_country": "FR",
        "expires_on": "2033-05-01",
    },
}


# -- the server ---------------------------------------------------------------------------


class Server:
    """`sceau serve` in its own process group, so that stopping it reaches every worker."""

    def __init__(self, home: Path, port: int, workers: int, log_path: Path) -> None:
        self.home = home
        self.port = port
        self.workers = workers
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            # The child keeps its own descriptor of the log; ours can close.
            self.proc = subprocess.Popen(
                [
                    str(SCEAU),
                    "--home",
                    str(self.home),
                    "serve",
                    "--host",
                    HOST,
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                    "--threads",
                    str(SERVER_THREADS),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_healthy(self, timeout: float = HEALTH_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise BenchmarkError(f"the server exited before answering:\n{self.log_tail()}")
            conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
            try:
                conn.request("GET", "/healthz")
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
            except (OSError, http.client.HTTPException) as exc:
                last = f"{type(exc).__name__}: {exc}"
            finally:
                conn.close()
            time.sleep(0.2)
        raise BenchmarkError(
            f"/healthz not 200 within {timeout:.0f} s ({last}):\n{self.log_tail()}"
        )

    @property
    def pgid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def stop(self) -> None:
        """SIGTERM the group (gunicorn stops its workers gracefully), SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
            # start_new_session made the server its own group leader: pgid == its pid.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        # Workers outliving their master would keep the CPU busy during the HSM baseline.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def log_tail(self, lines: int = LOG_EXCERPT_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])


def group_cpu_seconds(pgid: int) -> dict[int, float]:
    """User + system CPU seconds of each live process of a process group (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_text()
        except OSError:
            continue  # exited meanwhile
        # Fields after "(comm)": state ppid pgrp ... utime (14th field) stime (15th).
        rest = raw[raw.rindex(")") + 2 :].split()
        if int(rest[2]) == pgid:
            seconds[int(stat.parent.name)] = (int(rest[11]) + int(rest[12])) / tick
    return seconds


def own_cpu_seconds(server_pgid: int | None) -> float:
    """CPU seconds of this process, its reaped children and the live server group."""
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        own += usage.ru_utime + usage.ru_stime
    if server_pgid is not None:
        own += sum(group_cpu_seconds(server_pgid).values())
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
def watching(server_pgid: int | None = None) -> Iterator[Quietness]:
    quiet = Quietness()
    busy, own, began = machine_busy_seconds(), own_cpu_seconds(server_pgid), time.perf_counter()
    try:
        yield quiet
    finally:
        quiet.wall = time.perf_counter() - began
        # Clamped: the clocks of /proc/stat and getrusage tick differently, and a negative
        # figure would only mean "nothing else ran".
        quiet.others = max(
            0.0,
            (machine_busy_seconds() - busy) - (own_cpu_seconds(server_pgid) - own),
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
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            # Ignored: the subject comes from the identity proof.
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Benchmark")]))
            .sign(key, hashes.SHA256())
        )
        request = {
            "profile": PROFILE,
            "identity_proof": proofs[i % len(proofs)],
            "csr": csr.public_bytes(serialization.Encoding.PEM).decode(),
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
    port: int,
    token: str,
    bodies: Sequence[bytes],
    concurrency: int,
    deadline: float,
    server_pgid: int | None = None,
) -> LoadResult:
    """Post every body once from `concurrency` threads, each with its own keep-alive
    connection; stop taking new requests at `deadline` (time.monotonic())."""
    result = LoadResult(requested=len(bodies))
    lock = threading.Lock()
    pending: Iterator[bytes] = iter(bodies)

    def fail(kind: str, detail: str) -> None:
        with lock:
            result.failures += 1
            result.statuses[kind] = result.statuses.get(kind, 0) + 1
            if result.first_failure is None:
                result.first_failure = detail[:FAILURE_BODY_CHARS]

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
    server_cpu = group_cpu_seconds(server_pgid) if server_pgid is not None else {}
    client_cpu = time.process_time()
    result.began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        # Bounded by the deadline plus one request's timeout.
        thread.join(timeout=max(0.0, deadline - time.monotonic()) + REQUEST_TIMEOUT + 5)
    result.wall = time.perf_counter() - result.began
    result.client_cpu = time.process_time() - client_cpu
    if server_pgid is not None:
        result.server_master = server_pgid
        after = group_cpu_seconds(server_pgid)
        result.server_cpu = {pid: after[pid] - server_cpu.get(pid, 0.0) for pid in after}
    with lock:
        done = len(result.latencies) + result.failures
        result.unsent = len(bodies) - done
        if result.unsent:
            result.failures += result.unsent
            result.statuses["not sent (deadline)"] = result.unsent
            if result.first_failure is None:
                result.first_failure = f"{result.unsent} requests not sent: the deadline passed"
    return result


# -- the HSM baseline ---------------------------------------------------------------------


# A child's (signatures, seconds), or why it failed.


# -- the report ---------------------------------------------------------------------------


def machine_info() -> list[str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    softhsm = subprocess.run(
        ["softhsm2-util", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return [
        f"nproc            {len(os.sched_getaffinity(0))} (os.cpu_count {os.cpu_count()})",
        f"cpu              {model or platform.processor() or 'unknown'}",
        f"python           {platform.python_version()} ({platform.python_implementation()})",
        f"platform         {platform.platform()}",
        f"softhsm2         {softhsm or 'unknown'}",
    ]


@dataclass
class Alarm:
    """One kind of alarming log record: its first line and, for a traceback, the exception."""

    first: str  # the first occurrence's opening line, as logged
    exception: str  # the traceback's last line, or ""
    count: int = 1


def server_alarms(log_path: Path, until: int, workers: int) -> list[Alarm]:
    """Alarming records of the first `until` bytes of the log, worker restarts included,
    one entry per kind (the same message from another worker or at another time counts
    as the same kind), in order of first appearance."""
    try:
        with log_path.open("rb") as log:
            lines = log.read(until).decode(errors="replace").splitlines()
    except OSError:
        return []
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
    for line in machine_info():
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
    if m.alarms:
        total = sum(alarm.count for alarm in m.alarms)
        print(f"server log: {total} alarming record(s) of {len(m.alarms)} kind(s):")
        for alarm in m.alarms[:LOG_EXCERPT_LINES]:
            print(f"  {alarm.count} x, first: {alarm.first}")
            if alarm.exception:
                print(f"      -> {alarm.exception}")
    else:
        print("server log: no error, traceback, lock or worker-restart line")
    print()
    print(
        f"RESULT issuance_cps={load.rate:.1f} p50_ms={ms[0]:.1f} p99_ms={ms[2]:.1f} "
        f"hsm_sign_1p={sign_1p:.0f} hsm_sign_{args.workers}p={sign_np:.0f} ratio={ratio:.3f}"
    )


# -- main -----------------------------------------------------------------------------------


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value

    return parse


def positive_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("must be above 0 and at most 3600 seconds")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--requests",
        type=bounded_int(1, 100_000),
        default=2000,
        help="timed issuance requests (default 2000)",
    )
    parser.add_argument(
        "--concurrency",
        type=bounded_int(1, 256),
        default=16,
        help="concurrent clients, one connection each (default 16)",
    )
    parser.add_argument(
        "--workers",
        type=bounded_int(1, 16),
        default=2,
        help="gunicorn workers, and processes of the HSM baseline (default 2)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=600.0,
        help="give up sending after this many seconds of the timed phase",
    )
    parser.add_argument(
        "--hsm-seconds",
        type=positive_seconds,
        default=3.0,
        help="duration of each raw HSM signing measurement (default 3)",
    )
    parser.add_argument(
        "--keep-home",
        action="store_true",
        help="keep the temporary home and server log, and print where",
    )
    return parser.parse_args(argv)


def benchmark(args: argparse.Namespace, workdir: Path) -> int:
    home = workdir / "home"
    log_path = workdir / "server.log"
    print(f"home {home}; server log {log_path}", flush=True)
    run_sceau("init", "--home", home, "--base-url", BASE_URL, "--documents-url", DOCUMENTS_URL)
    # `client add` prints the token alone on its last line.
    token = run_sceau("--home", home, "client", "add", "bench", "--profile", PROFILE)
    token = token.strip().splitlines()[-1].strip()

    quiet: dict[str, Quietness] = {}
    server = Server(home, free_port(), args.workers, log_path)
    try:
        server.start()
        server.wait_healthy()
        print(f"server up on {HOST}:{server.port} ({args.workers} workers)", flush=True)
        proofs = create_proofs(server.port, token, PROOFS)
        bodies = issuance_bodies(WARMUP_REQUESTS + args.requests, proofs)
        print(f"{len(proofs)} identity proofs, {len(bodies)} CSRs ready; warming up", flush=True)
        warm = run_load(
            server.port,
            token,
            bodies[:WARMUP_REQUESTS],
            args.concurrency,
            time.monotonic() + args.timeout,
        )
        if warm.failures:
            raise BenchmarkError(f"warm-up failed ({warm.statuses}): {warm.first_failure}")
        print(f"timed phase: {args.requests} requests", flush=True)
        with watching(server.pgid) as quiet["issuance"]:
            load = run_load(
                server.port,
                token,
                bodies[WARMUP_REQUESTS:],
                args.concurrency,
                time.monotonic() + args.timeout,
                server_pgid=server.pgid,
            )
    finally:
        # Where the run ends and our shutdown begins, in the log.
        log_size = log_path.stat().st_size if log_path.exists() else 0
        server.stop()
    alarms = server_alarms(log_path, log_size, args.workers)

    # The server is gone: the signing baseline has the CPU to itself.
    hsm = load_config(home).hsm
    print("raw HSM signing rate, 1 process", flush=True)
    with watching() as quiet["HSM 1p"]:
        count, elapsed = sign_loop(hsm, CA_KEY, CA_SCHEME, args.hsm_seconds)
    print(f"raw HSM signing rate, {args.workers} processes", flush=True)
    with watching() as quiet[f"HSM {args.workers}p parallel"]:
        sign_np = parallel_sign_rate(hsm, CA_KEY, CA_SCHEME, args.workers, args.hsm_seconds)

    report(args, Measurements(load, count / elapsed, sign_np, alarms, quiet))
    return 1 if load.failures else 0


def _terminated(signum: int, _frame: object) -> None:
    # As Ctrl-C does: unwind through the finally blocks that stop the server.
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    workdir = Path(tempfile.mkdtemp(prefix="sceau-bench-"))
    try:
        return benchmark(args, workdir)
    except BenchmarkError as exc:
        print(f"benchmark error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if args.keep_home:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
