"""`sceau proof approve | hold | release | export` and `sceau retention purge`: the
registration authority's identity-proof records."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

from registration.decisions import approve_proof
from registration.export import SubjectExport, build_export, to_zip, write_directory
from registration.retention import purge_expired, release_legal_hold, set_legal_hold
from sceau.cli.common import now, opened, operator


def approve(args: argparse.Namespace) -> int:
    with opened(args) as ctx:
        max_age = timedelta(days=ctx.config.registration.proof_max_age_days)
        proof = approve_proof(ctx.db, args.proof_id, args.officer, now=now(), max_age=max_age)
    print(f"identity proof {proof.id}: {proof.status}, {len(proof.approvals)} approval(s)")
    return 0


def hold(args: argparse.Namespace) -> int:
    with opened(args) as ctx:
        set_legal_hold(ctx.db, args.proof_id, args.reason, actor=operator(), now=now())
    print(f"identity proof {args.proof_id}: on legal hold, the retention purge skips it")
    return 0


def release(args: argparse.Namespace) -> int:
    with opened(args) as ctx:
        proof = release_legal_hold(ctx.db, args.proof_id, actor=operator(), now=now())
    print(f"identity proof {args.proof_id}: hold released (retained until {proof.retain_until})")
    return 0


def export(args: argparse.Namespace) -> int:
    with opened(args) as ctx:
        made = build_export(ctx.db, ctx.sealer, args.proof_id, actor=operator(), now=now())
    out = Path(args.out)
    if args.zip:
        target = _write_zip(made, out)
        if target is None:
            return 2
    else:
        target = write_directory(made, out)
    print(f"subject-access export of {made.proof_id}: {target} ({len(made.files)} file(s))")
    return 0


def _write_zip(made: SubjectExport, out: Path) -> Path | None:
    """``<out>/<proof id>.zip`` (0600), never over an existing file (None then)."""
    target = out / f"{made.proof_id}.zip"
    out.mkdir(parents=True, exist_ok=True)
    try:
        with open(target, "xb") as handle:
            handle.write(to_zip(made))
    except FileExistsError:
        print(f"sceau: {target} exists already", file=sys.stderr)
        return None
    target.chmod(0o600)
    return target


def purge(args: argparse.Namespace) -> int:
    with opened(args) as ctx:
        years = ctx.config.registration.retention_years
        purged = purge_expired(ctx.db, years=years, now=now())
    print(f"retention purge: {len(purged)} record(s) purged")
    for proof_id in purged:
        print(f"  - {proof_id}")
    return 0
