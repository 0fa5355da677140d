"""OCSP throughput of a whole Sceau server: cached answers, and nonce requests (signed for
each request) set against the raw signature rate of the responder key.

Run from the repository root:

    .venv/bin/python tests/benchmarks/ocsp.py [--seconds 10] [--nonce-seconds 5]
        [--concurrency 32] [--workers 2] [--certificates 200] [--keep-home]

It builds a throwaway home (`sceau init` with a public-looking base URL, a SoftHSM2
token), creates an API client, starts `sceau serve --workers N` on a free loopback port and
issues `--certificates` person-lcp certificates through the API. Then a separate load
process (multiprocessing, spawn) keeps `--concurrency` keep-alive connections busy:

1. cached: GET (SHA-1 and SHA-256 CertIDs, base64 in the URL) and POST requests without
   nonce, round-robin over every certificate, after a warm-up that fills the database's
   pre-signed responses and both workers' memory; for `--seconds`;
2. nonce: POST requests each with a fresh 32-octet nonce, so every answer is signed in
   the token; for `--nonce-seconds` (at most as many requests as were prepared).

Every answer must be HTTP 200 with a successful OCSPResponse; a sample of each kind is
verified with `openssl ocsp -respin` afterwards. With the server stopped, it measures how
fast the responder key (P-256) signs through core.hsm.keystore.KeyStore alone, in one process and in
as many processes as the server had workers. The last line is machine-readable (RESULT).

The issue's target (issue 5): cached answers >= 4000/s with p99 < 20 ms at 32 connections.

Not a pytest test: the file name does not match test_*.py, so pytest never collects it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import multiprocessing
import os
import platform
import queue
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from core.config import load_config
from core.hsm.algorithms import HashAlgorithm, Padding, SignatureScheme
from core.store.db import Database
from pki.profiles import ProfileKind
from pki.signers import current_signer
from tests.benchmarks.common import (
    HOST,
    SCEAU,
    BenchmarkError,
    free_port,
    parallel_sign_rate,
    percentile,
    run_sceau,
    sign_loop,
)

# Every request goes to the server this script started, on loopback, and nowhere else.
BASE_URL = "http://pki.example.com"  # a public-looking base URL: no accepted lint findings
DOCUMENTS_URL = "https://pki.example.com"
PROFILE = "person-lcp"
ISSUER = "persons"  # the issuing CA of person-lcp, whose responder signs the answers
# How the responder key (EC, the ceremony's default) signs a response.
RESPONDER_SCHEME = SignatureScheme(HashAlgorithm.SHA256, Padding.ECDSA)
HEALTH_TIMEOUT = 60.0
IO_TIMEOUT = 30.0  # a connection silent this long fails the run
WARMUP_SECONDS = 3.0
MAX_REQUESTS = 1_000_000  # per phase, whatever --seconds says
TARGET_RPS = 4000.0
TARGET_P99_MS = 20.0
# The beginning of a successful OCSPResponse after its SEQUENCE header: responseStatus
# ENUMERATED 0 (the whole response is verified with OpenSSL on a sample).
SUCCESSFUL = b"\x0a\x01\x00"
LOG_ALARMS = re.compile(
    r"Traceback|\bERROR\b|\bCRITICAL\b|database is locked|WORKER TIMEOUT|was sent SIG",
    re.IGNORECASE,
)
BOOTING = "Booting worker"

# A copy of tests/helpers.py NATURAL, which this script, run as a file, cannot import.
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

    def __init__(self, home: Path, workers: int, log_path: Path) -> None:
        self.home = home
        self.port = free_port()
        self.workers = workers
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("wb") as log:
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
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchmarkError(f"the server exited:\n{self.log_tail()}")
            conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
            try:
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()
            time.sleep(0.2)
        raise BenchmarkError(f"/healthz did not answer:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue

    def cpu_seconds(self) -> dict[int, float]:
        """User + system CPU seconds of each live process of the server's group."""
        if self.proc is None:
            return {}
        tick = os.sysconf("SC_CLK_TCK")
        seconds = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                raw = stat.read_text()
            except OSError:
                continue
            rest = raw[raw.rindex(")") + 2 :].split()
            if int(rest[2]) == self.proc.pid:
                seconds[int(stat.parent.name)] = (int(rest[11]) + int(rest[12])) / tick
        return seconds

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no server log)"


def api(port: int, token: str, path: str, body: dict[str, Any]) -> Any:
    conn = http.client.HTTPConnection(HOST, port, timeout=IO_TIMEOUT)
    try:
        conn.request(
            "POST",
            path,
            body=json.dumps(body),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    if resp.status not in {200, 201}:
        raise BenchmarkError(f"POST {path}: HTTP {resp.status}: {data[:500]!r}")
    return json.loads(data)


def issue_certificates(port: int, token: str, count: int) -> list[x509.Certificate]:
    proof = api(port, token, "/ra/api/v1/identity-proofs", NATURAL)["id"]
    certs = []
    for _ in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Benchmark")]))
            .sign(key, hashes.SHA256())
        )
        body = {
            "profile": PROFILE,
            "identity_proof": proof,
            "csr": csr.public_bytes(serialization.Encoding.PEM).decode(),
        }
        issued = api(port, token, "/ca/api/v1/certificates", body)
        certs.append(x509.load_pem_x509_certificate(issued["certificate"].encode()))
    return certs


# -- requests -------------------------------------------------------------------------------


def ocsp_der(
    cert: x509.Certificate, issuer: x509.Certificate, algorithm: hashes.HashAlgorithm
) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm)
    return builder.build().public_bytes(serialization.Encoding.DER)


def http_get(der: bytes) -> bytes:
    return f"GET /ocsp/{base64.b64encode(der).decode()} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


def http_post(der: bytes) -> bytes:
    head = (
        f"POST /ocsp HTTP/1.1\r\nHost: {HOST}\r\n"
        f"Content-Type: application/ocsp-request\r\nContent-Length: {len(der)}\r\n\r\n"
    )
    return head.encode() + der


def cached_requests(certs: list[x509.Certificate], issuer: x509.Certificate) -> list[bytes]:
    """What RFC 5019/9919 clients send: GET with a SHA-1 or SHA-256 CertID, some POST."""
    out = []
    for cert in certs:
        out.append(http_get(ocsp_der(cert, issuer, hashes.SHA1())))  # noqa: S303 - CertID
        out.append(http_get(ocsp_der(cert, issuer, hashes.SHA256())))
        out.append(http_post(ocsp_der(cert, issuer, hashes.SHA1())))  # noqa: S303 - CertID
    return out


def nonce_requests(
    certs: list[x509.Certificate], issuer: x509.Certificate, count: int
) -> list[bytes]:
    out = []
    for i in range(count):
        builder = ocsp.OCSPRequestBuilder().add_certificate(
            certs[i % len(certs)], issuer, hashes.SHA256()
        )
        builder = builder.add_extension(x509.OCSPNonce(os.urandom(32)), critical=False)
        out.append(http_post(builder.build().public_bytes(serialization.Encoding.DER)))
    return out


# -- the load process -------------------------------------------------------------------------


@dataclass
class Load:
    answers: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, successes only
    wall: float = 0.0
    cpu: float = 0.0  # of the load process
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


def _reply(buffer: bytearray) -> tuple[int, bytes] | None:
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


def _successful(body: bytes) -> bool:
    if len(body) < 2:
        return False
    start = 2 if body[1] < 0x80 else 2 + (body[1] & 0x7F)
    return body[start : start + len(SUCCESSFUL)] == SUCCESSFUL


def drive(
    port: int, requests: Sequence[bytes], concurrency: int, seconds: float, once: bool
) -> Load:
    """Keep ``concurrency`` keep-alive connections busy for ``seconds``, one thread
    driving non-blocking sockets; round-robin over ``requests``, or each at most ``once``
    (nonces), and never more than MAX_REQUESTS."""
    load = Load()
    sel = selectors.DefaultSelector()
    conns = []
    for i in range(concurrency):
        sock = socket.create_connection((HOST, port), timeout=IO_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # One untimed exchange before the next connection opens. gunicorn's workers race
        # to accept each connection; 32 opened in a burst mostly land on the one worker
        # that woke first, which no real crowd of clients does. While a worker is busy
        # with this request, the other takes the next connection.
        conn = _Conn(sock)
        sock.sendall(requests[i % len(requests)])
        while _reply(conn.buffer) is None:
            data = sock.recv(65536)
            if not data:
                raise BenchmarkError("the server closed a connection")
            conn.buffer += data
        sock.setblocking(False)
        conns.append(conn)
    sent = 0

    def send(conn: _Conn) -> None:
        nonlocal sent
        conn.request = requests[sent % len(requests)]
        sent += 1
        conn.sent_at = time.perf_counter()
        conn.sock.sendall(conn.request)  # a few hundred bytes: fits the socket buffer

    usage = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    deadline = began + seconds
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
                answer = _reply(conn.buffer)
                if answer is None:
                    continue
                status, body = answer
                load.answers += 1
                if status != 200 or not _successful(body):
                    load.fail(str(status), f"HTTP {status}: {body[:200]!r}")
                else:
                    load.latencies.append(now - conn.sent_at)
                    if len(load.samples) < 3:
                        load.samples.append((conn.request, body))
                more = sent < len(requests) if once else load.answers < MAX_REQUESTS
                if now < deadline and more:
                    send(conn)
                else:
                    sel.unregister(conn.sock)
                    busy -= 1
    finally:
        load.wall = time.perf_counter() - began
        after = resource.getrusage(resource.RUSAGE_SELF)
        load.cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
        for conn in conns:
            conn.sock.close()
        sel.close()
    return load


def _load_child(
    port: int,
    requests: list[bytes],
    concurrency: int,
    seconds: float,
    once: bool,
    results: Queue[Load | str],
) -> None:
    try:
        results.put(drive(port, requests, concurrency, seconds, once))
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")


def load_process(
    port: int, requests: list[bytes], concurrency: int, seconds: float, *, once: bool = False
) -> Load:
    """Run :func:`drive` in a separate process (spawn): its CPU is its own, not the
    benchmark's, as for a real client."""
    ctx = multiprocessing.get_context("spawn")
    results: Queue[Load | str] = ctx.Queue()
    child = ctx.Process(
        target=_load_child, args=(port, requests, concurrency, seconds, once, results)
    )
    child.start()
    try:
        outcome = results.get(timeout=seconds + IO_TIMEOUT + 60)
    except queue.Empty:
        raise BenchmarkError("the load process gave no result") from None
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    if isinstance(outcome, str):
        raise BenchmarkError(f"load process: {outcome}")
    return outcome


# -- checks and the HSM baseline --------------------------------------------------------------


def verify_sample(workdir: Path, body: bytes, issuer: Path, root: Path, *, nonce: bool) -> str:
    """`openssl ocsp -respin` on one answer; its output, which must say verify OK."""
    response = workdir / "sample.der"
    response.write_bytes(body)
    done = subprocess.run(
        [
            "openssl",
            "ocsp",
            "-respin",
            str(response),
            "-issuer",
            str(issuer),
            "-CAfile",
            str(root),
            "-resp_text",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    out = done.stdout + done.stderr
    if "Response verify OK" not in out:
        raise BenchmarkError(f"a sampled answer does not verify:\n{out}")
    if nonce and "OCSP Nonce" not in out:
        raise BenchmarkError(f"a nonce answer carries no nonce:\n{out}")
    return out


# -- the report -----------------------------------------------------------------------------


def latency_ms(load: Load) -> dict[str, float]:
    values = sorted(load.latencies)
    return {
        "p50": percentile(values, 0.50) * 1000,
        "p90": percentile(values, 0.90) * 1000,
        "p99": percentile(values, 0.99) * 1000,
        "max": (values[-1] if values else float("nan")) * 1000,
    }


def machine_info() -> list[str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return [
        f"nproc            {len(os.sched_getaffinity(0))}",
        f"cpu              {model or platform.processor() or 'unknown'}",
        f"python           {platform.python_version()}",
        f"platform         {platform.platform()}",
    ]


def server_alarms(log_path: Path, until: int, workers: int) -> list[str]:
    try:
        with log_path.open("rb") as log:
            lines = log.read(until).decode(errors="replace").splitlines()
    except OSError:
        return []
    alarms = [line for line in lines if LOG_ALARMS.search(line)]
    restarts = [line for line in lines if BOOTING in line][workers:]
    return alarms + [f"(worker restart) {line}" for line in restarts]


@dataclass
class Phase:
    name: str
    load: Load
    server_cpu: dict[int, float]


def describe(phase: Phase) -> list[str]:
    load, ms = phase.load, latency_ms(phase.load)
    server = sum(phase.server_cpu.values())
    wall = load.wall or float("nan")
    return [
        f"{phase.name:<16} {len(load.latencies)} answers in {load.wall:.2f} s = "
        f"{load.rate:.0f}/s, {sum(load.failures.values())} failed {load.failures or ''}",
        f"{'':<16} latency ms p50 {ms['p50']:.2f}  p90 {ms['p90']:.2f}  p99 {ms['p99']:.2f}  "
        f"max {ms['max']:.2f}",
        f"{'':<16} cpu: server {server:.1f} s ({server / wall:.2f} cores; per process "
        f"{', '.join(f'{c:.1f}' for c in sorted(phase.server_cpu.values(), reverse=True))}), "
        f"load process {load.cpu:.1f} s ({load.cpu / wall:.2f} cores)",
    ]


def report(
    args: argparse.Namespace,
    phases: list[Phase],
    sign_1p: float,
    sign_np: float,
    alarms: list[str],
) -> bool:
    cached, nonce = phases
    cached_ms, nonce_ms = latency_ms(cached.load), latency_ms(nonce.load)
    met = cached.load.rate >= TARGET_RPS and cached_ms["p99"] < TARGET_P99_MS
    print()
    print("== Sceau OCSP benchmark ==")
    for line in machine_info():
        print(line)
    print(
        f"setup            {args.workers} gunicorn workers x 4 threads, SQLite, "
        f"{args.concurrency} keep-alive connections from a separate load process, "
        f"{args.certificates} certificates of {ISSUER}; responder key P-256 in SoftHSM2"
    )
    print()
    for phase in phases:
        for line in describe(phase):
            print(line)
        if phase.load.first_failure:
            print(f"{'':<16} first failure: {phase.load.first_failure}")
    print(
        f"raw HSM signing  1 process: {sign_1p:.0f}/s, {args.workers} processes: "
        f"{sign_np:.0f}/s (responder key, sign_digest, {args.hsm_seconds:.0f} s each)"
    )
    ratio = nonce.load.rate / sign_np if sign_np else float("nan")
    print(f"nonce / raw      {ratio:.3f} of the {args.workers}-process signing rate")
    print(
        f"target           cached >= {TARGET_RPS:.0f}/s and p99 < {TARGET_P99_MS:.0f} ms: "
        + ("MET" if met else "NOT MET")
    )
    print()
    if alarms:
        print(f"server log: {len(alarms)} alarming line(s):")
        for line in alarms[:20]:
            print(f"  {line}")
    else:
        print("server log: no error, traceback or worker-restart line")
    print()
    print(
        f"RESULT ocsp_cached_rps={cached.load.rate:.0f} cached_p50_ms={cached_ms['p50']:.2f} "
        f"cached_p99_ms={cached_ms['p99']:.2f} nonce_rps={nonce.load.rate:.0f} "
        f"nonce_p99_ms={nonce_ms['p99']:.2f} hsm_sign_1p={sign_1p:.0f} "
        f"hsm_sign_{args.workers}p={sign_np:.0f} nonce_ratio={ratio:.3f} "
        f"target={'met' if met else 'not-met'}"
    )
    return met


# -- main -----------------------------------------------------------------------------------


def bounded(kind: Callable[[str], Any], low: float, high: float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=bounded(float, 1, 600), default=10.0)
    parser.add_argument("--nonce-seconds", type=bounded(float, 1, 600), default=5.0)
    parser.add_argument("--concurrency", type=bounded(int, 1, 256), default=32)
    parser.add_argument("--workers", type=bounded(int, 1, 16), default=2)
    parser.add_argument("--certificates", type=bounded(int, 1, 10_000), default=200)
    parser.add_argument("--nonce-requests", type=bounded(int, 100, 200_000), default=30_000)
    parser.add_argument("--hsm-seconds", type=bounded(float, 1, 60), default=3.0)
    parser.add_argument("--keep-home", action="store_true")
    return parser.parse_args(argv)


def benchmark(args: argparse.Namespace, workdir: Path) -> int:
    home = workdir / "home"
    print(f"home {home}", flush=True)
    run_sceau("init", "--home", home, "--base-url", BASE_URL, "--documents-url", DOCUMENTS_URL)
    token = run_sceau("--home", home, "client", "add", "bench", "--profile", PROFILE)
    token = token.strip().splitlines()[-1].strip()
    config = load_config(home)
    db = Database(config.database.url)
    try:
        responder = current_signer(db, ProfileKind.OCSP_RESPONDER, ISSUER, datetime.now(UTC))
    finally:
        db.dispose()
    if responder is None:
        raise BenchmarkError(f"no OCSP responder for {ISSUER}")

    server = Server(home, args.workers, workdir / "server.log")
    phases = []
    try:
        server.start()
        print(f"server up on {HOST}:{server.port}", flush=True)
        certs = issue_certificates(server.port, token, args.certificates)
        issuer_der = fetch(server.port, f"/certs/{ISSUER}.crt")
        root_der = fetch(server.port, "/certs/root.crt")
        issuer = x509.load_der_x509_certificate(issuer_der)
        pems = {}
        for name, der in (("issuer", issuer_der), ("root", root_der)):
            pems[name] = workdir / f"{name}.pem"
            pems[name].write_bytes(
                x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
            )
        cached = cached_requests(certs, issuer)
        nonced = nonce_requests(certs, issuer, args.nonce_requests)
        print(
            f"{len(certs)} certificates, {len(cached)} cached and {len(nonced)} nonce requests"
            f" ready; warming up {WARMUP_SECONDS:.0f} s",
            flush=True,
        )
        warm = load_process(server.port, cached, args.concurrency, WARMUP_SECONDS)
        if warm.failures:
            raise BenchmarkError(f"warm-up failed {warm.failures}: {warm.first_failure}")
        for name, requests, seconds, once in (
            ("cached", cached, args.seconds, False),
            ("nonce (signed)", nonced, args.nonce_seconds, True),
        ):
            print(f"timed phase: {name}, {seconds:.0f} s", flush=True)
            before = server.cpu_seconds()
            load = load_process(server.port, requests, args.concurrency, seconds, once=once)
            after = server.cpu_seconds()
            used = {pid: cpu - before.get(pid, 0.0) for pid, cpu in after.items()}
            phases.append(Phase(name, load, used))
            for _, body in load.samples:
                verify_sample(workdir, body, pems["issuer"], pems["root"], nonce=once)
    finally:
        log_size = server.log_path.stat().st_size if server.log_path.exists() else 0
        server.stop()
    alarms = server_alarms(server.log_path, log_size, args.workers)

    # The server is gone: the signing baseline has the CPU to itself.
    print("raw HSM signing rate of the responder key", flush=True)
    label, seconds = responder.key_label, args.hsm_seconds
    count, elapsed = sign_loop(config.hsm, label, RESPONDER_SCHEME, seconds)
    sign_np = parallel_sign_rate(config.hsm, label, RESPONDER_SCHEME, args.workers, seconds)
    met = report(args, phases, count / elapsed, sign_np, alarms)
    failed = any(phase.load.failures for phase in phases)
    return 1 if failed or not met else 0


def fetch(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection(HOST, port, timeout=IO_TIMEOUT)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise BenchmarkError(f"GET {path}: HTTP {resp.status}")
    return body


def _terminated(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    workdir = Path(tempfile.mkdtemp(prefix="sceau-bench-ocsp-"))
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
