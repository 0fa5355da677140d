"""Remote signing throughput (CSC signHash) of a whole Sceau server, set against the raw
PKCS#11 signature rate of the same key.

Run from the repository root:

    .venv/bin/python -m tests.benchmarks.remote_signing [--seconds 10] [--concurrency 16]
        [--workers 2]

It builds a throwaway home (`sceau init`), a platform client, an approved legal-person
proof and a `seal-lcp` credential whose P-256 key is generated in the token (SCAL1: the
platform's token authorises signing), starts `sceau serve` with `--workers` gunicorn
workers and, from a separate load process, keeps `--concurrency` keep-alive clients
calling /csc/v2/signatures/signHash with batches of 1 and of 100 SHA-256 hashes for
`--seconds` each. Every answer must hold one signature per hash; a sample is verified
against the certificate's public key. Then, with the server stopped, it measures how fast
the same key signs through core.hsm.keystore.KeyStore in 1 process and in as many processes as the
server has workers, started together (best of --raw-rounds each): the ratios use the
latter, a fair baseline for workers that each have their own session. It prints the cores
the server and the whole machine used meanwhile: on a shared machine, other processes may
explain a poor figure. The last line is machine-readable (RESULT ...). Target (issue 6):
batches of 100 reach 70 % of the raw rate.

Not a pytest test: the file name does not match test_*.py, so pytest never collects it.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, utils

from core.config import load_config
from core.hsm.algorithms import HashAlgorithm, Padding, SignatureScheme
from signing.custodian import credential_key_label
from tests.benchmarks.common import (
    HOST,
    BenchmarkError,
    SigningKey,
    add_client,
    arguments,
    parallel_sign_rate,
    percentile,
    run_main,
    run_sceau,
)
from tests.support.builders import LEGAL
from tests.support.clients import http_request
from tests.support.servers import SceauServer

ECDSA_SHA256 = "1.2.840.10045.4.3.2"
# How signHash signs for that signAlgo: the raw baseline signs the same way.
RAW_SCHEME = SignatureScheme(HashAlgorithm.SHA256, Padding.ECDSA)


def call(port: int, token: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    status, _, data = http_request(
        port, "POST", path, json.dumps(body).encode(), headers, timeout=60
    )
    return status, json.loads(data)


def setup(home: Path, port: int) -> tuple[str, str]:
    """A client, an approved proof, a seal-lcp credential: (token, credential id)."""
    token = add_client(home, "seal-lcp")
    status, proof = call(port, token, "/ra/api/v1/identity-proofs", LEGAL)
    if status != 201:
        raise BenchmarkError(f"identity proof: {status} {proof}")
    run_sceau("proof", "approve", proof["id"], "--officer", "alice", "--home", home)
    status, issued = call(
        port,
        token,
        "/ca/api/v1/certificates",
        {"profile": "seal-lcp", "identity_proof": proof["id"]},
    )
    if status != 201:
        raise BenchmarkError(f"issuance: {status} {issued}")
    return token, str(issued["credential_id"])


@dataclass(frozen=True)
class Job:
    """One timed run: ``clients`` keep-alive clients calling signHash with ``batch``
    hashes each time for ``seconds``."""

    port: int
    token: str
    credential_id: str
    batch: int
    seconds: float
    clients: int


def _client(job: Job, body: bytes, end: float, out: list[float], errors: list[str]) -> None:
    conn = http.client.HTTPConnection(HOST, job.port, timeout=60)
    headers = {"Authorization": f"Bearer {job.token}", "Content-Type": "application/json"}
    while time.monotonic() < end:
        began = time.perf_counter()
        conn.request("POST", "/csc/v2/signatures/signHash", body, headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200 or len(json.loads(data)["signatures"]) != job.batch:
            errors.append(f"{resp.status} {data[:200]!r}")
            return
        out.append(time.perf_counter() - began)


def _load(job: Job, queue: Any) -> None:
    """The load process: ``clients`` threads, each with its own keep-alive connection."""
    hashes = [base64.b64encode(os.urandom(32)).decode() for _ in range(job.batch)]
    body = json.dumps(
        {"credentialID": job.credential_id, "hashes": hashes, "signAlgo": ECDSA_SHA256}
    ).encode()
    end = time.monotonic() + job.seconds
    latencies: list[float] = []
    errors: list[str] = []
    threads = [
        threading.Thread(target=_client, args=(job, body, end, latencies, errors))
        for _ in range(job.clients)
    ]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put((latencies, time.perf_counter() - began, errors))


def run_load(job: Job) -> tuple[list[float], float]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_load, args=(job, queue))
    proc.start()
    latencies, elapsed, errors = queue.get(timeout=job.seconds + 120)
    proc.join(timeout=30)
    if errors:
        raise BenchmarkError(f"signHash failed: {errors[0]}")
    return latencies, elapsed


def verify_sample(port: int, token: str, cid: str, certificate: x509.Certificate) -> None:
    digest = os.urandom(32)
    status, body = call(
        port,
        token,
        "/csc/v2/signatures/signHash",
        {
            "credentialID": cid,
            "hashes": [base64.b64encode(digest).decode()],
            "signAlgo": ECDSA_SHA256,
        },
    )
    public_key = certificate.public_key()
    if status != 200 or not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise BenchmarkError(f"sample signHash: {status} {body}")
    signature = base64.b64decode(body["signatures"][0])
    public_key.verify(
        signature, digest, ec.ECDSA(utils.Prehashed(HashAlgorithm.SHA256.cryptography_hash()))
    )


def best_raw_rate(home: Path, label: str, seconds: float, processes: int, rounds: int) -> float:
    """The best of ``rounds``: a baseline lowered by a neighbour's burst would flatter the
    ratio."""
    key = SigningKey(load_config(home).hsm, label, RAW_SCHEME)
    return max(parallel_sign_rate(key, processes, seconds) for _ in range(rounds))


def busy_cores(before: list[int], after: list[int], wall: float) -> float:
    """Cores the whole machine kept busy between two /proc/stat readings."""
    delta = [a - b for a, b in zip(after, before, strict=True)]
    idle = delta[3] + delta[4]  # idle + iowait
    return (sum(delta) - idle) / os.sysconf("SC_CLK_TCK") / wall


def cpu_ticks() -> list[int]:
    with open("/proc/stat") as stat:
        return [int(v) for v in stat.readline().split()[1:8]]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = arguments(__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--raw-seconds", type=float, default=5.0)
    parser.add_argument("--raw-rounds", type=int, default=2)
    return parser.parse_args(argv)


Machine = tuple[float, float]  # busy cores of the whole machine, cores the server used


def measure(
    args: argparse.Namespace, home: Path, workdir: Path
) -> tuple[str, dict[int, tuple[list[float], float]], dict[int, Machine]]:
    """With the server up: the credential, a verified sample, then batches of 1 and of 100
    (latencies and elapsed time, and the cores used, per batch size)."""
    results: dict[int, tuple[list[float], float]] = {}
    machine: dict[int, Machine] = {}
    server = SceauServer(home, workdir / "server.log", workers=args.workers, threads=args.threads)
    with server:
        port = server.port
        token, cid = setup(home, port)
        _, info = call(port, token, "/csc/v2/credentials/info", {"credentialID": cid})
        leaf = x509.load_der_x509_certificate(base64.b64decode(info["cert"]["certificates"][0]))
        verify_sample(port, token, cid, leaf)
        for batch in (1, 100):
            ticks, server_cpu = cpu_ticks(), sum(server.cpu_seconds().values())
            began = time.perf_counter()
            results[batch] = run_load(Job(port, token, cid, batch, args.seconds, args.concurrency))
            wall = time.perf_counter() - began  # spawning the load process included
            machine[batch] = (
                busy_cores(ticks, cpu_ticks(), wall),
                (sum(server.cpu_seconds().values()) - server_cpu) / wall,
            )
    return cid, results, machine


def benchmark(args: argparse.Namespace, workdir: Path) -> int:
    load_before = os.getloadavg()
    home = workdir / "home"
    run_sceau("init", "--home", home)
    cid, results, machine = measure(args, home, workdir)
    label = credential_key_label(cid)
    raw1 = best_raw_rate(home, label, args.raw_seconds, 1, args.raw_rounds)
    raw = best_raw_rate(home, label, args.raw_seconds, args.workers, args.raw_rounds)
    print(
        f"raw PKCS#11 ECDSA P-256 rate of the key (best of {args.raw_rounds}): "
        f"{raw1:,.0f} signatures/s in 1 process, {raw:,.0f}/s in {args.workers} processes"
        f" (as many as the server's workers: the baseline the ratios use)"
    )
    summary: dict[str, Any] = {
        "raw_1_per_s": round(raw1),
        f"raw_{args.workers}_per_s": round(raw),
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
    }
    for batch, (latencies, elapsed) in results.items():
        rate = len(latencies) * batch / elapsed
        p50 = percentile(sorted(latencies), 0.50) * 1000
        p99 = percentile(sorted(latencies), 0.99) * 1000
        busy, server_cores = machine[batch]
        print(
            f"batch {batch:>3}: {rate:,.0f} signatures/s ({len(latencies) / elapsed:,.0f} calls/s),"
            f" p50 {p50:.1f} ms, p99 {p99:.1f} ms per call, {rate / raw:.0%} of the"
            f" {args.workers}-process raw rate ({rate / raw1:.0%} of 1 process);"
            f" server {server_cores:.2f} cores, machine busy {busy:.2f} cores"
        )
        summary[f"batch{batch}"] = {
            "per_s": round(rate),
            "p50_ms": round(p50, 1),
            "p99_ms": round(p99, 1),
            "of_raw": round(rate / raw, 2),
            "of_raw_1": round(rate / raw1, 2),
            "server_cores": round(server_cores, 2),
            "machine_busy_cores": round(busy, 2),
        }
    print("RESULT " + json.dumps(summary))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(benchmark, parse_args(argv), "csc")


if __name__ == "__main__":
    raise SystemExit(main())
