"""Reservations that never became certificates.

The pipeline commits a ``reserved`` row with the TBS before the HSM signs, then turns it
into ``issued`` (or ``failed``) in a second transaction. A process that dies, or a database
that goes away, between the two leaves the row ``reserved``: the certificate may or may
not have been signed, and no one will ever be told. After ``RESERVATION_GRACE`` such a
row is marked ``abandoned`` with a ``certificate.failed`` audit event: the TBS stays, so an
auditor can still match a signed certificate to it; status services keep answering for it
as for a serial we never issued (OCSP's extended revoked, never "good").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, select, update

from core.store.db import Database
from core.store.models import Certificate
from pki.revocation import append_certificate_event

RESERVATION_GRACE = timedelta(minutes=10)  # an issuance takes milliseconds; a HSM retry seconds
BATCH = 100
ACTOR = "system:leftovers"


@dataclass(frozen=True)
class Reservation:
    id: int
    serial: str
    issuer: str
    profile: str
    reserved_at: datetime


def stale_reservations(db: Database, *, now: datetime, limit: int = BATCH) -> list[Reservation]:
    """Rows still ``reserved`` past the grace period, oldest first."""
    with db.read() as session:
        rows = session.execute(
            select(
                Certificate.id,
                Certificate.serial,
                Certificate.issuer_id,
                Certificate.profile,
                Certificate.created_at,
            )
            .where(
                Certificate.status == "reserved",
                Certificate.created_at <= now - RESERVATION_GRACE,
            )
            .order_by(Certificate.id)
            .limit(limit)
        ).all()
    return [Reservation(*row) for row in rows]


def abandon_stale_reservations(db: Database, *, now: datetime, actor: str = ACTOR) -> int:
    """Mark every stale reservation ``abandoned``, one audit event each; returns how many.
    A conditional UPDATE per row: an issuance that completes meanwhile keeps its row."""
    abandoned = 0
    while batch := stale_reservations(db, now=now):
        for reservation in batch:
            with db.write() as session:
                result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                    update(Certificate)
                    .where(Certificate.id == reservation.id, Certificate.status == "reserved")
                    .values(status="abandoned")
                )
                if not result.rowcount:
                    continue
                append_certificate_event(
                    session,
                    "certificate.failed",
                    reservation.serial,
                    reservation.issuer,
                    actor=actor,
                    at=now,
                    profile=reservation.profile,
                    reason="reservation abandoned: no signature recorded within "
                    f"{int(RESERVATION_GRACE.total_seconds() // 60)} minutes",
                    reserved_at=reservation.reserved_at.isoformat(),
                )
            abandoned += 1
    return abandoned
