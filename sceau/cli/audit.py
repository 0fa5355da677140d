"""`sceau audit verify`: the audit log's hash chain and signed checkpoints, checked.

`sceau audit checkpoint` is in sceau/cli/checkpoint.py: it needs the TSA engine, which this
command, reading a million events, is better off without (fewer objects for the garbage
collector to walk)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audit.checkpoints import VerifyReport, verify_database
from audit.export import ExportReport, ExportUnreadable, verify_export
from sceau.cli.common import opened


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
