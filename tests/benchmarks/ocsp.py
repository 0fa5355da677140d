"""OCSP throughput of a whole Sceau server: cached answers, and nonce requests (signed for
each request) set against the raw signature rate of the responder key.

Run from the repository root:

    .venv/bin/python -m tests.benchmarks.ocsp [--seconds 10] [--nonce-seconds 5]
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
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from core.config import load_config
from core.hsm.algorithms import HashAlgorithm, Padding, SignatureScheme
from core.store.db import Database
from pki.profiles import ProfileKind
from pki.signers import current_signer
from tests.benchmarks.common import (
    HOST,
    BenchmarkError,
    SigningKey,
    add_client,
    alarm_lines,
    arguments,
    bounded,
    init_home,
    machine_info,
    parallel_sign_rate,
    percentile,
    run_main,
    sign_loop,
)
from tests.benchmarks.load import IO_TIMEOUT, Load, Plan, drive_in_child
from tests.support.builders import NATURAL, csr_pem
from tests.support.clients import http_request
from tests.support.servers import SceauServer

PROFILE = "person-lcp"
ISSUER = "persons"  # the issuing CA of person-lcp, whose responder signs the answers
# How the responder key (EC, the ceremony's default) signs a response.
RESPONDER_SCHEME = SignatureScheme(HashAlgorithm.SHA256, Padding.ECDSA)
WARMUP_SECONDS = 3.0
MAX_REQUESTS = 1_000_000  # per phase, whatever --seconds says
TARGET_RPS = 4000.0
TARGET_P99_MS = 20.0
# The beginning of a successful OCSPResponse after its SEQUENCE header: responseStatus
# ENUMERATED 0 (the whole response is verified with OpenSSL on a sample).
SUCCESSFUL = b"\x0a\x01\x00"


def api(port: int, token: str, path: str, body: dict[str, Any]) -> Any:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    status, _, data = http_request(
        port, "POST", path, json.dumps(body).encode(), headers, timeout=IO_TIMEOUT
    )
    if status not in {200, 201}:
        raise BenchmarkError(f"POST {path}: HTTP {status}: {data[:500]!r}")
    return json.loads(data)


def issue_certificates(port: int, token: str, count: int) -> list[x509.Certificate]:
    proof = api(port, token, "/ra/api/v1/identity-proofs", NATURAL)["id"]
    certs = []
    for _ in range(count):
        body = {"profile": PROFILE, "identity_proof": proof, "csr": csr_pem(cn="Benchmark")}
        issued = api(port, token, "/ca/api/v1/certificates", body)
        certs.append(x509.load_pem_x509_certificate(issued["certificate"].encode()))
    return certs


def fetch(port: int, path: str) -> bytes:
    status, _, body = http_request(port, "GET", path, timeout=IO_TIMEOUT)
    if status != 200:
        raise BenchmarkError(f"GET {path}: HTTP {status}")
    return body


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


def plan(
    requests: Sequence[bytes], concurrency: int, seconds: float, *, once: bool = False
) -> Plan:
    """Round-robin over ``requests``, or each at most ``once`` (nonces). One untimed exchange
    on each connection before the next opens: gunicorn's workers race to accept each
    connection, and 32 opened in a burst mostly land on the one worker that woke first,
    which no real crowd of clients does."""
    return Plan(
        requests,
        concurrency,
        seconds,
        success=SUCCESSFUL,
        max_answers=MAX_REQUESTS,
        once=once,
        prime=True,
    )


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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = arguments(__doc__)
    parser.add_argument("--seconds", type=bounded(float, 1, 600), default=10.0)
    parser.add_argument("--nonce-seconds", type=bounded(float, 1, 600), default=5.0)
    parser.add_argument("--concurrency", type=bounded(int, 1, 256), default=32)
    parser.add_argument("--workers", type=bounded(int, 1, 16), default=2)
    parser.add_argument("--certificates", type=bounded(int, 1, 10_000), default=200)
    parser.add_argument("--nonce-requests", type=bounded(int, 100, 200_000), default=30_000)
    parser.add_argument("--hsm-seconds", type=bounded(float, 1, 60), default=3.0)
    return parser.parse_args(argv)


def responder_label(home: Path) -> str:
    """The key label of the issuing CA's OCSP responder that `sceau init` certified."""
    db = Database(load_config(home).database.url)
    try:
        responder = current_signer(db, ProfileKind.OCSP_RESPONDER, ISSUER, datetime.now(UTC))
    finally:
        db.dispose()
    if responder is None:
        raise BenchmarkError(f"no OCSP responder for {ISSUER}")
    return responder.key_label


def pem_files(port: int, workdir: Path) -> tuple[x509.Certificate, dict[str, Path]]:
    """The issuing CA's certificate, and it and the root's as PEM files for OpenSSL."""
    issuer_der = fetch(port, f"/certs/{ISSUER}.crt")
    pems = {}
    for name, der in (("issuer", issuer_der), ("root", fetch(port, "/certs/root.crt"))):
        pems[name] = workdir / f"{name}.pem"
        pems[name].write_bytes(
            x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
        )
    return x509.load_der_x509_certificate(issuer_der), pems


def run_phases(
    args: argparse.Namespace, server: SceauServer, token: str, workdir: Path
) -> list[Phase]:
    """Certificates, the warm-up, then the cached and the nonce phases, each sample verified."""
    certs = issue_certificates(server.port, token, args.certificates)
    issuer, pems = pem_files(server.port, workdir)
    cached = cached_requests(certs, issuer)
    nonced = nonce_requests(certs, issuer, args.nonce_requests)
    print(
        f"{len(certs)} certificates, {len(cached)} cached and {len(nonced)} nonce requests"
        f" ready; warming up {WARMUP_SECONDS:.0f} s",
        flush=True,
    )
    warm = drive_in_child(server.port, plan(cached, args.concurrency, WARMUP_SECONDS))
    if warm.failures:
        raise BenchmarkError(f"warm-up failed {warm.failures}: {warm.first_failure}")
    phases = []
    for name, requests, seconds, once in (
        ("cached", cached, args.seconds, False),
        ("nonce (signed)", nonced, args.nonce_seconds, True),
    ):
        print(f"timed phase: {name}, {seconds:.0f} s", flush=True)
        before = server.cpu_seconds()
        load = drive_in_child(server.port, plan(requests, args.concurrency, seconds, once=once))
        after = server.cpu_seconds()
        used = {pid: cpu - before.get(pid, 0.0) for pid, cpu in after.items()}
        phases.append(Phase(name, load, used))
        for _, body in load.samples:
            verify_sample(workdir, body, pems["issuer"], pems["root"], nonce=once)
    return phases


def benchmark(args: argparse.Namespace, workdir: Path) -> int:
    home = workdir / "home"
    print(f"home {home}", flush=True)
    init_home(home)
    token = add_client(home, PROFILE)
    label = responder_label(home)

    server = SceauServer(home, workdir / "server.log", workers=args.workers)
    try:
        server.start()
        server.wait_healthy()
        print(f"server up on {HOST}:{server.port}", flush=True)
        phases = run_phases(args, server, token, workdir)
    finally:
        log_size = server.log.stat().st_size if server.log.exists() else 0
        server.stop()
    alarms = alarm_lines(server.log, log_size, args.workers)

    # The server is gone: the signing baseline has the CPU to itself.
    print("raw HSM signing rate of the responder key", flush=True)
    key = SigningKey(load_config(home).hsm, label, RESPONDER_SCHEME)
    count, elapsed = sign_loop(key, args.hsm_seconds)
    sign_np = parallel_sign_rate(key, args.workers, args.hsm_seconds)
    met = report(args, phases, count / elapsed, sign_np, alarms)
    failed = any(phase.load.failures for phase in phases)
    return 1 if failed or not met else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(benchmark, parse_args(argv), "ocsp")


if __name__ == "__main__":
    sys.exit(main())
