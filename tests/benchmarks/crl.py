"""Time and peak memory to build and sign one CRL of 100,000 and of 1,000,000 entries.

Run from the repository root:

    .venv/bin/python -m tests.benchmarks.crl [--sizes 100000 1000000] [--postgres]
        [--keep-home]

For each size it builds a throwaway home (`sceau init`, a SoftHSM2 token), inserts that many
revoked certificates of the "persons" issuing CA straight into the database (bulk insert,
not the API: the API would take hours), then, in a fresh process, publishes that CA's CRL
through crl.publisher.CrlPublisher exactly as the scheduled job does: stream the rows,
encode the entries, sign in the token, store the row and its audit event. It reports the
time of each phase and the peak memory the publication added to the process (peak RSS
minus RSS just before), next to the size of the CRL itself: the targets are under 5 s for
100,000 entries, under 60 s for 1,000,000, and memory growing no faster than the CRL.
With --postgres the same runs on a throwaway PostgreSQL cluster (tests/support/postgres.py).
The last line is machine-readable (RESULT ...).

Not a pytest test: the file name does not match test_*.py, so pytest never collects it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from cryptography import x509
from sqlalchemy import select

from core.config import load_config
from core.store.models import Crl
from crl.publisher import FULL, CrlPublisher
from pki.context import PkiContext
from tests.benchmarks.common import BASE_URL, BenchmarkError, arguments, run_main, run_sceau
from tests.support.postgres import PgCluster, start_cluster

REPO = Path(__file__).resolve().parents[2]
ISSUER = "persons"
PROFILE = "person-lcp"
INSERT_BATCH = 50_000
# COPY text format: \N is NULL, \\x an empty bytea.
COPY_NULL, COPY_EMPTY_BYTEA = "\\N", "\\\\x"
PG_NOT_BEFORE, PG_NOT_AFTER = "2026-01-01 00:00:00+00", "2029-01-01 00:00:00+00"
# Reasons as a CA sees them (superseded and cessation dominate); a key compromise carries an
# invalidity date. "unspecified" entries carry no reasonCode extension at all.
REASONS = [
    ("superseded", 0.40),
    ("cessationOfOperation", 0.25),
    ("unspecified", 0.15),
    ("affiliationChanged", 0.10),
    ("keyCompromise", 0.08),
    ("privilegeWithdrawn", 0.02),
]
TARGET_SECONDS = {100_000: 5.0, 1_000_000: 60.0}
PAGE = os.sysconf("SC_PAGE_SIZE")


def fake_rows(count: int, seed: int) -> Any:
    """(serial hex, revoked_at, reason, invalidity date or None) of ``count`` certificates."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not keys
    names = [name for name, _ in REASONS]
    weights = [weight for _, weight in REASONS]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for _ in range(count):
        serial = format(rng.getrandbits(159) | (1 << 100), "x")  # what issuance draws
        revoked = start + timedelta(seconds=rng.randrange(300 * 86400))
        reason = rng.choices(names, weights)[0]
        invalidity = revoked - timedelta(days=1) if reason == "keyCompromise" else None
        yield serial, revoked, reason, invalidity


def _sqlite_time(moment: datetime | None) -> str | None:
    # How SQLAlchemy's SQLite DateTime stores a value (core.store.models.UtcDateTime).
    return None if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def insert_sqlite(db_path: Path, count: int) -> None:
    conn = sqlite3.connect(db_path)
    not_before, not_after = "2026-01-01 00:00:00.000000", "2029-01-01 00:00:00.000000"
    batch: list[tuple[Any, ...]] = []
    with conn:
        for serial, revoked, reason, invalidity in fake_rows(count, seed=count):
            batch.append(
                (
                    ISSUER,
                    serial,
                    PROFILE,
                    "revoked",
                    "CN=bench",
                    b"",
                    not_before,
                    not_after,
                    not_before,
                    _sqlite_time(revoked),
                    reason,
                    _sqlite_time(invalidity),
                )
            )
            if len(batch) == INSERT_BATCH:
                _sqlite_batch(conn, batch)
                batch.clear()
        _sqlite_batch(conn, batch)
    conn.close()


def _sqlite_batch(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    conn.executemany(
        "INSERT INTO certificates (issuer_id, serial, profile, status, subject, tbs,"
        " not_before, not_after, created_at, revoked_at, revocation_reason, invalidity_date)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def insert_postgres(url: str, count: int) -> None:
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    columns = (
        "issuer_id, serial, profile, status, subject, tbs, not_before, not_after,"
        " created_at, revoked_at, revocation_reason, invalidity_date"
    )
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY certificates ({columns}) FROM STDIN") as copy:
            buffer = io.StringIO()
            for n, (serial, revoked, reason, invalidity) in enumerate(
                fake_rows(count, seed=count), 1
            ):
                invalid = invalidity.isoformat() if invalidity else COPY_NULL
                buffer.write(
                    f"{ISSUER}\t{serial}\t{PROFILE}\trevoked\tCN=bench\t{COPY_EMPTY_BYTEA}\t"
                    f"{PG_NOT_BEFORE}\t{PG_NOT_AFTER}\t{PG_NOT_BEFORE}\t"
                    f"{revoked.isoformat()}\t{reason}\t{invalid}\n"
                )
                if n % INSERT_BATCH == 0:
                    copy.write(buffer.getvalue())
                    buffer = io.StringIO()
            copy.write(buffer.getvalue())
        conn.commit()
        cur.execute("ANALYZE certificates")
        conn.commit()


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def measure(home: Path) -> dict[str, Any]:
    """In this (fresh) process: publish the issuing CA's CRL once, phase by phase."""
    ctx = PkiContext.open(load_config(home))
    publisher = CrlPublisher(ctx, actor="benchmark")
    issuer = ctx.issuers.get(ISSUER)
    # Warm up outside the measurement: PKCS#11 login, key lookup, database connection.
    publisher.publish(ctx.issuers.get("root"), FULL, now=datetime.now(UTC))
    before = _rss()
    started = time.perf_counter()
    snapshot = publisher.read(issuer, FULL)
    read = time.perf_counter()
    published = publisher.store(issuer, FULL, snapshot, now=datetime.now(UTC))
    done = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if published is None:
        raise BenchmarkError("the CRL was not stored")
    check(ctx, issuer.certificate, published.number, size=published.entries)
    return {
        "entries": published.entries,
        "crl_bytes": published.size,
        "read_s": read - started,
        "sign_store_s": done - read,
        "total_s": done - started,
        "peak_added_bytes": max(0, peak - before),
    }


def check(ctx: Any, ca_der: bytes, number: int, *, size: int) -> None:
    """Outside the timing: the stored CRL parses, lists every entry, and its signature holds."""
    with ctx.db.read() as session:
        der = session.execute(
            select(Crl.der).where(Crl.issuer_id == ISSUER, Crl.number == number)
        ).scalar_one()
    crl = x509.load_der_x509_crl(der)
    public_key = x509.load_der_x509_certificate(ca_der).public_key()
    if len(crl) != size or not crl.is_signature_valid(public_key):  # type: ignore[arg-type]
        raise BenchmarkError(f"the stored CRL does not verify or lists {len(crl)} of {size}")


def bench_one(backend: str, size: int, work: Path, database_url: str | None) -> dict[str, Any]:
    home = work / f"home-{backend}-{size}"
    args: list[str | Path] = ["init", "--home", home, "--base-url", BASE_URL]
    if database_url:
        args += ["--database-url", database_url]
    run_sceau(*args)
    t = time.perf_counter()
    if database_url:
        insert_postgres(database_url, size)
    else:
        insert_sqlite(home / "sceau.db", size)
    print(
        f"  inserted {size:,} revoked certificates in {time.perf_counter() - t:.1f} s", flush=True
    )
    done = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.crl", "--measure", str(home)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    if done.returncode != 0:
        raise BenchmarkError(f"measurement failed:\n{done.stdout}{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def report(backend: str, size: int, r: dict[str, Any]) -> None:
    mb = 1024 * 1024
    target = TARGET_SECONDS.get(size)
    verdict = ""
    if target is not None:
        verdict = f" (target < {target:.0f} s: {'met' if r['total_s'] < target else 'MISSED'})"
    print(
        f"  {backend} {size:>9,} entries: {r['total_s']:.2f} s{verdict}"
        f" [read+encode {r['read_s']:.2f} s, sign+store {r['sign_store_s']:.2f} s];"
        f" CRL {r['crl_bytes'] / mb:.1f} MB, peak memory added {r['peak_added_bytes'] / mb:.1f} MB"
        f" ({r['peak_added_bytes'] / max(1, r['crl_bytes']):.1f}x the CRL)",
        flush=True,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = arguments(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process
    return parser.parse_args(argv)


def benchmark(args: argparse.Namespace, work: Path) -> int:
    results: dict[str, dict[int, dict[str, Any]]] = {}
    cluster: PgCluster | None = None
    try:
        backends = ["sqlite"] + (["postgresql"] if args.postgres else [])
        for backend in backends:
            url = None
            if backend == "postgresql":
                cluster = start_cluster(work)
            print(f"{backend}:", flush=True)
            for size in args.sizes:
                if cluster is not None:
                    url = cluster.create_database(f"crl_bench_{size}")
                results.setdefault(backend, {})[size] = r = bench_one(backend, size, work, url)
                report(backend, size, r)
    finally:
        if cluster is not None:
            cluster.stop()
    fields = []
    for backend, by_size in results.items():
        for size, r in by_size.items():
            tag = f"{backend}_{size // 1000}k"
            fields += [
                f"{tag}_s={r['total_s']:.2f}",
                f"{tag}_peak_mb={r['peak_added_bytes'] / 1048576:.1f}",
                f"{tag}_crl_mb={r['crl_bytes'] / 1048576:.1f}",
            ]
    print("RESULT " + " ".join(fields))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return 0
    return run_main(benchmark, args, "crl")


if __name__ == "__main__":
    sys.exit(main())
