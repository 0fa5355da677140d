"""Timestamping throughput of a whole Sceau server, set against the raw HSM signature rate.

Run from the repository root:

    .venv/bin/python -m tests.benchmarks.tsa [--seconds 10] [--concurrency 16]
        [--workers 2] [--algorithms ec-p256,rsa-3072] [--keep-home]

For each TSU key algorithm it builds a throwaway home (`sceau init`, a SoftHSM2 token;
`[tsa] key_algorithm` chosen before the ceremony), starts `sceau serve` on a free loopback
port and, from this process, keeps `--concurrency` keep-alive connections busy posting
TimeStampReqs (SHA-256 imprints, nonces, half with certReq) to /tsa for `--seconds`
(and at most `--max-requests`). Every answer must be a granted TimeStampResp; a sample
of the tokens is verified with `openssl ts -verify` afterwards. Then, with the server
stopped so that it does not compete for the CPU, it measures how fast the TSU key signs
through core.hsm.keystore.KeyStore alone, in one process and in as many processes as the server had
workers: the token rate over that raw rate says how much the service costs beyond the
signature. The last line is machine-readable (RESULT ...).

The load generator is tests/benchmarks/load.py's: one thread driving non-blocking sockets.

Not a pytest test: the file name does not match test_*.py, so pytest never collects it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from asn1crypto import tsp
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from core.config import load_config
from core.store.db import Database
from core.store.models import Issuer
from pki.profiles import ProfileKind
from pki.signers import ActiveSigner, current_signer
from tests.benchmarks.common import (
    HOST,
    BenchmarkError,
    SigningKey,
    alarm_lines,
    arguments,
    bounded,
    init_home,
    machine_busy_seconds,
    parallel_sign_rate,
    percentile,
    run_main,
    run_sceau,
    sign_loop,
)
from tests.benchmarks.load import Load, Plan, drive
from tests.support.servers import SceauServer
from tsa.authority import token_scheme

WARMUP_SECONDS = 2.0
DISTINCT_QUERIES = 4096  # pre-encoded requests, sent round-robin
VERIFY_SAMPLE = 20  # tokens checked with openssl ts -verify after the run
HSM_ROUNDS = 3  # raw signature rate: best of this many measurements
CONNECT_SPACING = 0.01  # seconds between two connections' opening (before timing starts)
GRANTED = b"\x30\x03\x02\x01\x00"  # PKIStatusInfo { granted }, first in a TimeStampResp
# The targets (issue 4): P-256 >= 1500 tokens/s with p99 < 30 ms; RSA-3072 >= 70 %
# of the raw signature rate.
TARGETS = {"ec-p256": "tokens/s >= 1500 and p99 < 30 ms", "rsa-3072": "ratio >= 0.70"}


def make_home(home: Path, algorithm: str) -> None:
    """`sceau init` writes sceau.toml, we choose the TSU key, `sceau init` again makes it."""
    init_home(home)
    # Signer key labels have a one-second resolution (pki.signers): a second ceremony in the
    # same second would find the first key under the new label and reuse it.
    time.sleep(1.0 - time.time() % 1.0 + 0.05)
    config = home / "sceau.toml"
    text = config.read_text()
    config.write_text(
        re.sub(r'(?m)^key_algorithm = ".*"$', f'key_algorithm = "{algorithm}"', text, count=1)
    )
    run_sceau("init", "--home", home)


# -- the load -------------------------------------------------------------------------------


def queries(count: int) -> list[bytes]:
    """Whole HTTP requests, encoded before the timed phase so that it only sends."""
    out = []
    for i in range(count):
        body = tsp.TimeStampReq(
            {
                "version": 1,
                "message_imprint": {
                    "hash_algorithm": {"algorithm": "sha256"},
                    "hashed_message": hashlib.sha256(secrets.token_bytes(16)).digest(),
                },
                "nonce": secrets.randbits(64),
                "cert_req": i % 2 == 0,
            }
        ).dump()
        head = (
            f"POST /tsa HTTP/1.1\r\nHost: {HOST}\r\n"
            f"Content-Type: application/timestamp-query\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


def wait_quiet(max_wait: float, window: float = 2.0, cores: float = 0.15) -> float:
    """Wait (at most ``max_wait`` seconds) until the machine, our idle server included,
    uses under ``cores`` over ``window``: on a shared machine another job's burst would
    otherwise be measured as ours. Returns the seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < max_wait:
        busy = machine_busy_seconds()
        time.sleep(window)
        if (machine_busy_seconds() - busy) / window < cores:
            break
    return time.monotonic() - began


@dataclass
class Cpu:
    """Where the CPU went during a timed phase, in seconds."""

    server: float = 0.0
    # Each worker's share: gunicorn's gthread workers race to accept, and keep-alive
    # connections stay where they landed, so one worker may serve most of them.
    workers: list[float] = field(default_factory=list)
    # What processes other than the server and this one took meanwhile: on a shared
    # machine they, not the TSA, may explain a poor figure.
    others: float = 0.0


def plan(requests: Sequence[bytes], args: argparse.Namespace, seconds: float) -> Plan:
    return Plan(
        requests,
        args.concurrency,
        seconds,
        success=GRANTED,
        max_answers=args.max_requests,
        samples=VERIFY_SAMPLE,
        spacing=CONNECT_SPACING,
    )


def verify_samples(load: Load, workdir: Path, signer: ActiveSigner, root: bytes) -> int:
    """openssl ts -verify on sampled tokens against the query that asked for each."""
    pem = workdir / "root.pem"
    pem.write_bytes(x509.load_der_x509_certificate(root).public_bytes(Encoding.PEM))
    tsu = workdir / "tsu.pem"
    tsu.write_bytes(x509.load_der_x509_certificate(signer.certificate).public_bytes(Encoding.PEM))
    for i, (query, reply) in enumerate(load.samples):
        (workdir / "q.tsq").write_bytes(query[query.index(b"\r\n\r\n") + 4 :])
        (workdir / "r.tsr").write_bytes(reply)
        done = subprocess.run(
            [
                *("openssl", "ts", "-verify", "-queryfile", str(workdir / "q.tsq")),
                *("-in", str(workdir / "r.tsr"), "-CAfile", str(pem), "-untrusted", str(tsu)),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if "Verification: OK" not in done.stdout:
            raise BenchmarkError(f"token {i} fails openssl ts -verify: {done.stdout}{done.stderr}")
    return len(load.samples)


# -- one algorithm ----------------------------------------------------------------------------


@dataclass
class Outcome:
    algorithm: str
    load: Load
    cpu: Cpu
    verified: int
    sign_1p: float
    sign_np: float
    alarms: list[str]
    clock_check: str

    def latency_ms(self, fraction: float) -> float:
        return percentile(sorted(self.load.latencies), fraction) * 1000

    @property
    def ratio(self) -> float:
        return self.load.rate / self.sign_np if self.sign_np else float("nan")


def current_tsu(db: Database, algorithm: str) -> tuple[ActiveSigner, bytes]:
    """The TSU signer `sceau init` made, and the root certificate (DER)."""
    signer = current_signer(db, ProfileKind.TSU, "root", datetime.now(UTC))
    with db.read() as session:
        root = session.get(Issuer, "root")
        root_der = root.certificate if root is not None else None
    if signer is None or signer.key_algorithm != algorithm or root_der is None:
        raise BenchmarkError(f"no {algorithm} TSU certificate after sceau init")
    return signer, root_der


def timed_phase(
    server: SceauServer, requests: list[bytes], args: argparse.Namespace
) -> tuple[Load, Cpu]:
    """The measured load, with the CPU the server, its workers and others took meanwhile."""
    cpu0, busy0 = server.cpu_seconds(), machine_busy_seconds()
    load = drive(server.port, plan(requests, args, args.seconds))
    cpu1 = server.cpu_seconds()
    cpu = Cpu(server=sum(cpu1.values()) - sum(cpu0.values()))
    cpu.workers = sorted(
        (cpu1[pid] - cpu0.get(pid, 0.0) for pid in cpu1 if pid != server.pgid), reverse=True
    )
    cpu.others = max(0.0, machine_busy_seconds() - busy0 - cpu.server - load.cpu)
    return load, cpu


def raw_signing(args: argparse.Namespace, home: Path, signer: ActiveSigner) -> tuple[float, float]:
    """Signatures per second of the TSU key in 1 and in --workers processes, as tokens are
    signed. The best of a few rounds: a shared (virtual) machine loses CPU to its neighbours
    now and then, and a low baseline would flatter the ratio."""
    key = SigningKey(load_config(home).hsm, signer.key_label, token_scheme(signer.scheme))
    sign_1p = sign_np = 0.0
    for _ in range(HSM_ROUNDS):
        count, elapsed = sign_loop(key, args.hsm_seconds)
        sign_1p = max(sign_1p, count / elapsed)
        sign_np = max(sign_np, parallel_sign_rate(key, args.workers, args.hsm_seconds))
    return sign_1p, sign_np


def bench_algorithm(args: argparse.Namespace, workdir: Path, algorithm: str) -> Outcome:
    home = workdir / f"home-{algorithm}"
    log = workdir / f"server-{algorithm}.log"
    print(f"[{algorithm}] sceau init ({home})", flush=True)
    make_home(home, algorithm)
    config = load_config(home)
    db = Database(config.database.url)
    try:
        signer, root_der = current_tsu(db, algorithm)
    finally:
        db.dispose()
    requests = queries(DISTINCT_QUERIES)
    server = SceauServer(home, log, workers=args.workers, threads=args.threads)
    try:
        server.start()
        server.wait_healthy()
        print(f"[{algorithm}] server on {HOST}:{server.port}; warming up", flush=True)
        warm = drive(server.port, plan(requests, args, WARMUP_SECONDS))
        if warm.failures:
            raise BenchmarkError(f"warm-up failed {warm.failures}: {warm.first_failure}")
        if args.wait_quiet:
            waited = wait_quiet(args.wait_quiet)
            print(f"[{algorithm}] waited {waited:.0f} s for a quiet machine", flush=True)
        print(f"[{algorithm}] timed phase: {args.seconds:.0f} s", flush=True)
        load, cpu = timed_phase(server, requests, args)
        log_size = log.stat().st_size
    finally:
        server.stop()
    alarms = alarm_lines(log, log_size)
    verified = verify_samples(load, workdir, signer, root_der)
    if args.wait_quiet:
        wait_quiet(args.wait_quiet)
    print(f"[{algorithm}] raw HSM signing, 1 and {args.workers} processes", flush=True)
    sign_1p, sign_np = raw_signing(args, home, signer)
    return Outcome(algorithm, load, cpu, verified, sign_1p, sign_np, alarms, config.tsa.clock_check)


def report(args: argparse.Namespace, outcomes: list[Outcome]) -> None:
    print()
    print("== Sceau TSA benchmark ==")
    print(
        f"machine          {len(os.sched_getaffinity(0))} cores; {args.workers} gunicorn workers"
        f" x {args.threads} threads; {args.concurrency} keep-alive connections; SQLite;"
        " record=batch"
    )
    results = []
    for o in outcomes:
        load = o.load
        print()
        print(f"-- TSU key {o.algorithm} (clock_check = {o.clock_check})")
        print(
            f"tokens           {len(load.latencies)} in {load.wall:.2f} s;"
            f" failures {load.failures or 'none'}"
        )
        print(f"token rate       {load.rate:.0f} tokens/s")
        print(
            f"latency (ms)     p50 {o.latency_ms(0.5):.1f}  p90 {o.latency_ms(0.9):.1f}"
            f"  p99 {o.latency_ms(0.99):.1f}  max {o.latency_ms(1.0):.1f}"
        )
        print(
            f"cpu              server {o.cpu.server / load.wall:.2f} cores (workers "
            + ", ".join(f"{cpu / load.wall:.2f}" for cpu in o.cpu.workers)
            + "),"
            f" load generator {load.cpu / load.wall:.2f} cores,"
            f" other processes {o.cpu.others / load.wall:.2f} cores"
            + ("  << NOT QUIET: figures unreliable" if o.cpu.others / load.wall > 0.2 else "")
        )
        print(
            f"raw HSM signing  1 process {o.sign_1p:.0f}/s, {args.workers} processes"
            f" {o.sign_np:.0f}/s (best of {HSM_ROUNDS}, the tokens' scheme)"
        )
        print(f"ratio            tokens / raw {args.workers}-process signing = {o.ratio:.3f}")
        print(f"verified         {o.verified} sampled tokens: openssl ts -verify OK")
        print(f"target           {TARGETS.get(o.algorithm, '-')}")
        if load.first_failure:
            print(f"first failure    {load.first_failure}")
        for line in o.alarms[:10]:
            print(f"server log       {line}")
        tag = o.algorithm.replace("-", "_")
        results.append(
            f"{tag}_tps={load.rate:.0f} {tag}_p50_ms={o.latency_ms(0.5):.1f}"
            f" {tag}_p99_ms={o.latency_ms(0.99):.1f} {tag}_sign_1p={o.sign_1p:.0f}"
            f" {tag}_sign_{args.workers}p={o.sign_np:.0f} {tag}_ratio={o.ratio:.3f}"
        )
    print()
    print("RESULT " + " ".join(results))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = arguments(__doc__)
    parser.add_argument(
        "--seconds", type=bounded(float, 0.1, 600), default=10.0, help="timed phase per algorithm"
    )
    parser.add_argument("--max-requests", type=int, default=200_000, help="bound per phase")
    parser.add_argument("--concurrency", type=bounded(int, 1, 256), default=16)
    parser.add_argument("--workers", type=bounded(int, 1, 16), default=2)
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument("--hsm-seconds", type=float, default=3.0)
    parser.add_argument("--algorithms", default="ec-p256,rsa-3072")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before each timed phase, wait up to this many seconds for other jobs to stop",
    )
    return parser.parse_args(argv)


def benchmark(args: argparse.Namespace, workdir: Path) -> int:
    outcomes = [bench_algorithm(args, workdir, a) for a in args.algorithms.split(",")]
    report(args, outcomes)
    return 1 if any(o.load.failures for o in outcomes) else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(benchmark, parse_args(argv), "tsa")


if __name__ == "__main__":
    sys.exit(main())
