"""`sceau leftovers list|resolve`: what failures left behind, and its resolution.

Two kinds, each also resolved by a scheduled job: certificate reservations that never got
their signature recorded (ca/leftovers.py: abandoned after 10 minutes), and subscriber keys
in the token that no credential row names (signing/custodian.py: reported, then destroyed
a day later). ``resolve`` does both now, as the operator (every step audited)."""

from __future__ import annotations

import argparse
from datetime import timedelta

from ca.leftovers import abandon_stale_reservations, stale_reservations
from sceau.cli.common import now, opened, operator
from signing.custodian import orphan_keys, sweep_orphan_keys


def show(args: argparse.Namespace) -> int:
    at = now()
    with opened(args) as ctx:
        reservations = stale_reservations(ctx.db, now=at, limit=1000)
        keys = orphan_keys(ctx.db, ctx.keys, now=at)
    for reservation in reservations:
        print(
            f"reservation {reservation.issuer}/{reservation.serial} ({reservation.profile}),"
            f" reserved {reservation.reserved_at.isoformat()}, no signature recorded"
        )
    for key in keys:
        seen = "not reported yet" if key.first_seen == at else key.first_seen.isoformat()
        print(f"key {key.label} in the token, no credential names it (first seen: {seen})")
    print(f"{len(reservations)} stale reservations, {len(keys)} unrecorded keys")
    return 0


def resolve(args: argparse.Namespace) -> int:
    at = now()
    with opened(args) as ctx:
        abandoned = abandon_stale_reservations(ctx.db, now=at, actor=operator())
        destroyed = sweep_orphan_keys(ctx.db, ctx.keys, now=at, grace=timedelta(0))
    print(f"{abandoned} reservations abandoned, {len(destroyed)} unrecorded keys destroyed")
    return 0
