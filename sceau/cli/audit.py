"""`sceau audit verify | checkpoint`: the audit log's hash chain and signed checkpoints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audit.checkpoint_job import checkpoint_maker
from audit.checkpoints import VerifyReport, verify_database
from audit.export import ExportReport, ExportUnreadable, verify_export
from sceau.cli.common import now, opened
from sceau.services import LocalTimestamper
from tsa.authority import TimestampAuthority


def verify(args: argparse.Namespace) -> int:
    if args.export:
        try:
            text = Path(args.export).read_text(encoding="utf-8")
            return _print_report(verify_export(text), f"export {args.export}")
        except (OSError, UnicodeDecodeError, ExportUnreadable) as exc:
            print(f"sceau: cannot verify {args.export}: {exc}", file=sys.stderr)
            return 2
    with opened(args) as ctx:
        report = verify_database(ctx.db)
    return _print_report(report, "log")


def _print_report(report: VerifyReport, source: str) -> int:
    for label, fp in sorted(report.keys.items()):
        print(f"audit key {label}: SHA-256 {fp}")
    for fp in report.roots if isinstance(report, ExportReport) else []:
        print(f"trusted root (from the export; compare with the published one): SHA-256 {fp}")
    if report.failure is not None:
        print(
            f"audit {source} BROKEN at {report.failure}"
            f" ({report.events} events and {report.checkpoints} checkpoints verified before it)"
        )
        return 1
    print(
        f"audit {source} intact: {report.events} events, {report.checkpoints} checkpoints"
        " (signatures and timestamps verified)"
    )
    if report.uncovered:
        print(f"note: {report.uncovered} newest event(s) not yet covered by a checkpoint")
    return 0


def checkpoint(args: argparse.Namespace) -> int:
    with opened(args) as ctx:
        # Timestamped by this process's own TSA engine, without HTTP.
        authority = TimestampAuthority.from_config(ctx.config, ctx.db, ctx.keys, ctx.profiles)
        try:
            made = checkpoint_maker(ctx, LocalTimestamper(authority)).make(now())
        finally:
            authority.records.close()
    if made is None:
        print("audit log already checkpointed at its head: nothing to do")
        return 0
    print(
        f"audit checkpoint: {made.tree_size} events, Merkle root {made.root_hash},"
        f" signed with {made.key_label}, timestamped {made.at.isoformat()}"
    )
    return 0
