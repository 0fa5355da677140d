"""Audit log at scale: append 1,000,000 events (SQLite), checkpoint them, verify them all,
and page through them as the auditor UI does.

Run from the repository root:

    .venv/bin/python -m tests.benchmarks.audit [--events 1000000] [--keep-home]

It builds a throwaway home (`sceau init`: SoftHSM2 token, CAs, TSU, audit key), then:

1. appends the events with core.audit.append, 1,000 per write transaction (the batch shape of a
   busy CA: each transaction appends after taking the chain head's lock), and a sample of
   5,000 in one transaction each (what a single API call costs the log);
2. every 100,000 events, makes a checkpoint (Merkle root, audit-key signature in the token,
   RFC 3161 token from the in-process TSA), as the TSA service's job would;
3. runs `sceau audit verify` in a fresh process: every link, filter column, checkpoint
   signature, timestamp and Merkle root;
4. times the auditor UI's queries: a filtered first page (actor, serial, profile, action, a
   one-day time range), a page deep in the log (keyset cursor), and an event's inclusion
   proof (the Merkle tree of the newest checkpoint, built once per process).

The baseline, measured in the same run on the same events: SHA-256 of each event's
canonical JSON and previous hash, nothing else (the chain's arithmetic without a database).
The last line is machine-readable (RESULT ...).

Not a pytest test: the file name does not match test_*.py, so pytest never collects it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from audit.checkpoints import CheckpointMaker, load_tree
from audit.queries import EventFilter, page
from core import audit
from core.config import load_config
from core.store.db import Database
from core.store.models import AuditHead
from pki.context import PkiContext
from sceau.timestamping import LocalTimestamper
from tests.benchmarks.common import SCEAU, arguments, run_main, run_sceau
from tsa.authority import TimestampAuthority

BATCH = 1000
SINGLE_SAMPLE = 5000
CHECKPOINT_EVERY = 100_000  # events between checkpoints
START = datetime(2025, 1, 1, tzinfo=UTC)
ACTIONS = ("certificate.issued", "identity_proof.created", "signing.sign_hash", "officer.login")
PROFILES = ("person-lcp", "person-qcp-n-qscd", "seal-lcp", "seal-qcp-l-qscd")


def event(i: int) -> tuple[str, str, dict[str, object], datetime]:
    """The i-th synthetic event: 1,000 clients, four actions, serials unique, ~2 years."""
    details: dict[str, object] = {
        "profile": PROFILES[i % 4],
        "serial": format(0x10_0000_0000 + i * 7919, "x"),
        "proof": f"p{i // 3:09d}",
        "issuer": "persons",
        "n": i,
    }
    return (
        f"client:platform-{i % 1000:04d}",
        ACTIONS[i % 4],
        details,
        START + timedelta(seconds=i * 60),
    )


def baseline(n: int) -> float:
    """Seconds for the chain's hashes alone over the same n events."""
    prev = audit.GENESIS
    t0 = time.perf_counter()
    for i in range(n):
        actor, action, details, at = event(i)
        prev = audit.chain_hash(prev, i + 1, at, actor, action, details)
    return time.perf_counter() - t0


def median_ms(fn: Callable[[], object], runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


@dataclass
class Timings:
    """Seconds spent appending (batched, and one event per transaction), checkpointing,
    hashing the baseline and verifying."""

    batched: float = 0.0
    single: float = 0.0
    checkpoints: float = 0.0
    count: int = 0  # checkpoints made
    baseline: float = 0.0
    verify: float = 0.0

    def checkpoint(self, maker: CheckpointMaker) -> None:
        t0 = time.perf_counter()
        assert maker.make(datetime.now(UTC)) is not None
        self.checkpoints += time.perf_counter() - t0
        self.count += 1


def append_all(db: Database, maker: CheckpointMaker, n: int) -> Timings:
    """The n events: BATCH per transaction with a checkpoint every CHECKPOINT_EVERY, then
    the last SINGLE_SAMPLE one per transaction, then a last checkpoint."""
    times = Timings()
    bulk = n - SINGLE_SAMPLE
    done = 0
    while done < bulk:
        size = min(BATCH, bulk - done)
        t0 = time.perf_counter()
        with db.write() as session:
            for i in range(done, done + size):
                actor, action, details, at = event(i)
                audit.append(session, actor=actor, action=action, details=details, at=at)
        times.batched += time.perf_counter() - t0
        done += size
        if done % CHECKPOINT_EVERY == 0:
            times.checkpoint(maker)
            print(f"  {done} events appended, checkpoint {times.count}", flush=True)
    t0 = time.perf_counter()
    for i in range(bulk, n):
        actor, action, details, at = event(i)
        with db.write() as session:
            audit.append(session, actor=actor, action=action, details=details, at=at)
    times.single = time.perf_counter() - t0
    times.checkpoint(maker)
    return times


def verify(home: Path) -> float:
    """Seconds of `sceau audit verify` in a fresh process, which must pass."""
    t0 = time.perf_counter()
    done = subprocess.run(
        [str(SCEAU), "audit", "verify", "--home", str(home)],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - t0
    print(done.stdout.strip())
    assert done.returncode == 0, done.stdout + done.stderr
    return elapsed


def ui_timings(db: Database, n: int, offset: int) -> tuple[dict[str, float], float, float]:
    """Milliseconds of the auditor UI's pages (median of 7), seconds to build the Merkle
    tree of the newest checkpoint, milliseconds of one inclusion proof then."""
    middle = n // 2
    _, _, mid_details, mid_at = event(middle)
    queries = {
        "actor (1 in 1000), first page": EventFilter(actor="client:platform-0421"),
        "serial (unique)": EventFilter(serial=str(mid_details["serial"])),
        "profile (1 in 4)": EventFilter(profile="seal-lcp"),
        "action (1 in 4)": EventFilter(action="officer.login"),
        "one day in the middle": EventFilter(since=mid_at, until=mid_at + timedelta(days=1)),
        "actor + one month": EventFilter(
            actor="client:platform-0421", since=mid_at, until=mid_at + timedelta(days=30)
        ),
    }
    page_ms: dict[str, float] = {}
    with db.read() as session:
        for name, flt in queries.items():
            page_ms[name] = median_ms(lambda flt=flt: page(session, flt))
            rows, _ = page(session, flt)
            assert rows, name
        page_ms["no filter, keyset page at seq n/2"] = median_ms(
            lambda: page(session, EventFilter(), before=offset + middle)
        )
        page_ms["actor, keyset page at seq n/2"] = median_ms(
            lambda: page(session, EventFilter(actor="client:platform-0421"), before=offset + middle)
        )
        t0 = time.perf_counter()
        head = session.get(AuditHead, 1)
        assert head is not None
        tree = load_tree(session, head.seq)
        t_tree = time.perf_counter() - t0
        proof_ms = median_ms(lambda: tree.inclusion_proof(offset + middle, head.seq))
    return page_ms, t_tree, proof_ms


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = arguments(__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    return parser.parse_args(argv)


def benchmark(args: argparse.Namespace, workdir: Path) -> int:
    n = args.events
    home = workdir / "home"
    run_sceau("init", "--home", home)
    config = load_config(home)
    ctx = PkiContext.open(config)
    db = ctx.db
    authority = TimestampAuthority.from_config(config, db, ctx.keys, ctx.profiles)
    maker = CheckpointMaker(
        db, ctx.keys, LocalTimestamper(authority), key_label=config.audit.key_label
    )
    with db.read() as session:
        existing = session.get(AuditHead, 1)
        offset = existing.seq if existing else 0
    times = append_all(db, maker, n)
    authority.records.close()
    times.baseline = baseline(n)
    times.verify = verify(home)
    report(home, n, times, ui_timings(db, n, offset))
    ctx.db.dispose()
    return 0


UiTimings = tuple[dict[str, float], float, float]  # page ms, tree build s, one proof ms


def report(home: Path, n: int, times: Timings, ui: UiTimings) -> None:
    page_ms, t_tree, proof_ms = ui
    t_base, t_verify = times.baseline, times.verify
    per_batched_us = times.batched / (n - SINGLE_SAMPLE) * 1e6
    per_single_us = times.single / SINGLE_SAMPLE * 1e6
    per_base_us = t_base / n * 1e6
    result: dict[str, Any] = {
        "events": n,
        "append_batched_us_per_event": round(per_batched_us, 1),
        "append_single_tx_us_per_event": round(per_single_us, 1),
        "baseline_sha256_us_per_event": round(per_base_us, 2),
        "ratio_batched_to_baseline": round(per_batched_us / per_base_us, 1),
        "ratio_single_to_baseline": round(per_single_us / per_base_us, 1),
        "checkpoints": times.count,
        "checkpoint_s_mean": round(times.checkpoints / times.count, 2),
        "verify_s": round(t_verify, 1),
        "verify_us_per_event": round(t_verify / n * 1e6, 1),
        "verify_ratio_to_baseline": round(t_verify / t_base, 1),
        "page_ms": {k: round(v, 2) for k, v in page_ms.items()},
        "tree_build_s": round(t_tree, 2),
        "inclusion_proof_ms": round(proof_ms, 3),
        "db_mb": round((home / "sceau.db").stat().st_size / 1e6, 0)
        if (home / "sceau.db").exists()
        else None,
    }
    print(f"append, 1,000 events per transaction: {per_batched_us:.1f} µs/event")
    print(f"append, one event per transaction:    {per_single_us:.1f} µs/event")
    print(f"baseline (SHA-256 of canonical event): {per_base_us:.2f} µs/event")
    print(f"checkpoint (incremental root, sign, timestamp): {result['checkpoint_s_mean']} s")
    print(f"sceau audit verify over {n} events: {t_verify:.1f} s")
    for k, v in page_ms.items():
        print(f"UI page, {k}: {v:.2f} ms")
    print(
        f"Merkle tree of {n} events (event page's first proof): {t_tree:.2f} s;"
        f" then one proof {proof_ms:.3f} ms"
    )
    print("RESULT " + json.dumps(result))


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(benchmark, parse_args(argv), "audit")


if __name__ == "__main__":
    sys.exit(main())
