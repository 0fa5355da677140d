"""Reservations that never became certificates are resolved: marked abandoned with one
certificate.failed event each, the TBS kept, status services answering as for a serial
never issued."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from ca.leftovers import RESERVATION_GRACE, abandon_stale_reservations, stale_reservations
from core.store.models import AuditEvent, Certificate
from pki.status import CertState, DatabaseStatusSource
from tests.support.issuance import issue
from tests.support.pki import Pki


def _reserve(pki: Pki, serial: int, at: datetime) -> int:
    """A reservation as the pipeline leaves it when it dies before the signature."""
    with pki.ctx.db.read() as session:
        template = session.scalars(
            select(Certificate).where(Certificate.status == "issued")
        ).first()
    assert template is not None
    with pki.ctx.db.write() as session:
        row = Certificate(
            issuer_id=template.issuer_id,
            serial=format(serial, "x"),
            profile=template.profile,
            status="reserved",
            proof_id=template.proof_id,
            client_id=template.client_id,
            subject=template.subject,
            tbs=template.tbs,
            der=None,
            not_before=template.not_before,
            not_after=template.not_after,
            created_at=at,
            crl_shard=None,
        )
        session.add(row)
        session.flush()
        return row.id


def test_stale_reservations_are_abandoned_once(pki: Pki) -> None:
    issue(pki.client("person-lcp"))  # a template row
    now = datetime.now(UTC).replace(microsecond=0)
    old = _reserve(pki, 0x5CEA0001 + int(now.timestamp()), now - RESERVATION_GRACE * 2)
    fresh = _reserve(pki, 0x5CEA0002 + int(now.timestamp()), now - timedelta(seconds=5))
    assert old in {r.id for r in stale_reservations(pki.ctx.db, now=now)}
    assert fresh not in {r.id for r in stale_reservations(pki.ctx.db, now=now)}
    assert abandon_stale_reservations(pki.ctx.db, now=now) >= 1
    assert abandon_stale_reservations(pki.ctx.db, now=now) == 0  # nothing twice
    with pki.ctx.db.read() as session:
        abandoned = session.get(Certificate, old)
        kept = session.get(Certificate, fresh)
        events = [
            e
            for e in session.scalars(
                select(AuditEvent).where(AuditEvent.action == "certificate.failed")
            )
            if abandoned is not None and e.details.get("serial") == abandoned.serial
        ]
    assert abandoned is not None and kept is not None
    assert (abandoned.status, kept.status) == ("abandoned", "reserved")
    assert abandoned.tbs  # kept for the auditor
    assert len(events) == 1 and "abandoned" in events[0].details["reason"]
    status = DatabaseStatusSource(pki.ctx.db).status(abandoned.issuer_id, int(abandoned.serial, 16))
    assert status.state is CertState.NOT_ISSUED
