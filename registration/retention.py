"""The end of an identity-proof record: legal hold, and the retention purge.

EN 319 411-1 OVR-6.4.6-01 and TS 119 461 ISS-8.5.2-04/-08: a record is kept
``retention_years`` after the expiry of the last certificate issued on it (after its
creation when none was), then its personal data and files are erased. ``retain_until`` is
set at creation and raised by every issuance (``RetentionFollowsIssuance``, which
``sceau/`` hands to the CA as an issuance listener); the purge re-checks the
certificates itself, so a missed update cannot erase a record still relied upon.

The purge is the only code that erases a record; it leaves an anonymised stub (id, kind of
subject, method, status, dates, approvers) and one audit event per record. A legal hold
suspends it for as long as it is set.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import delete, func, select, true, update
from sqlalchemy.orm import Session

from core.config import RegistrationConfig
from core.errors import ErrorKind, SceauError
from core.store.db import Database
from core.store.models import (
    Certificate,
    EvidenceFile,
    IdentityProof,
    ProofTerm,
    WebhookDelivery,
)
from pki.proofs import retention_end
from registration.proofs import append_proof_event

log = logging.getLogger(__name__)

ACTOR = "system:retention"
REASON_MAX = 500
BATCH = 100


class RetentionFollowsIssuance:
    """EN 319 411-1 OVR-6.4.6-01: keep the registration record ``years`` past the expiry of
    the last certificate that relies on it. Called by the CA inside the issuance
    transaction (``pki.custody.IssuanceListener``), so a record never lags its newest
    certificate."""

    def __init__(self, years: int) -> None:
        self.years = years

    def __call__(self, session: Session, proof_id: str, not_after: datetime) -> None:
        keep_until = retention_end(not_after, self.years)
        session.execute(
            update(IdentityProof)
            .where(IdentityProof.id == proof_id, IdentityProof.retain_until < keep_until)
            .values(retain_until=keep_until)
        )


def set_legal_hold(
    db: Database, proof_id: str, reason: str, *, actor: str, now: datetime
) -> IdentityProof:
    """Suspend the purge of a record (litigation, an authority's request...)."""
    reason = reason.strip()
    if not reason or len(reason) > REASON_MAX or any(ord(c) < 32 for c in reason):
        raise SceauError(
            ErrorKind.INVALID, f"a legal hold needs a reason of 1-{REASON_MAX} printable characters"
        )
    with db.write() as session:
        proof = session.get(IdentityProof, proof_id)
        if proof is None:
            raise SceauError(ErrorKind.NOT_FOUND, f"no identity proof {proof_id!r}")
        if proof.status == "purged":
            raise SceauError(ErrorKind.CONFLICT, f"identity proof {proof_id} is already purged")
        proof.legal_hold = reason
        append_proof_event(
            session, "identity_proof.legal_hold", proof_id, actor=actor, at=now, reason=reason
        )
        return proof


def release_legal_hold(db: Database, proof_id: str, *, actor: str, now: datetime) -> IdentityProof:
    """Lift a legal hold: the record is purged at the next run if its retention is over."""
    with db.write() as session:
        proof = session.get(IdentityProof, proof_id)
        if proof is None:
            raise SceauError(ErrorKind.NOT_FOUND, f"no identity proof {proof_id!r}")
        if proof.legal_hold is None:
            raise SceauError(ErrorKind.CONFLICT, f"identity proof {proof_id} is not on hold")
        proof.legal_hold = None
        append_proof_event(session, "identity_proof.hold_released", proof_id, actor=actor, at=now)
        return proof


def _last_certificate_expiry(db: Database, proof_id: str) -> datetime | None:
    with db.read() as session:
        expiry: datetime | None = session.scalar(
            select(func.max(Certificate.not_after)).where(
                Certificate.proof_id == proof_id, Certificate.status != "failed"
            )
        )
    return expiry


def purge_one(
    db: Database, proof_id: str, *, years: int, now: datetime, actor: str = ACTOR
) -> bool:
    """Erase one record if its retention is over and it is not on hold; False otherwise."""
    expiry = _last_certificate_expiry(db, proof_id)
    with db.write() as session:
        proof = session.get(IdentityProof, proof_id)
        if proof is None or proof.status == "purged" or proof.legal_hold is not None:
            return False
        if expiry is not None and retention_end(expiry, years) > now:
            # A certificate still needs the record (its retain_until was not raised).
            proof.retain_until = max(proof.retain_until, retention_end(expiry, years))
            return False
        if proof.retain_until > now:
            return False
        files = session.execute(
            update(EvidenceFile)
            .where(EvidenceFile.proof_id == proof_id)
            .values(sealed=None, wrapped_key=None)
        )
        session.execute(delete(ProofTerm).where(ProofTerm.proof_id == proof_id))
        # Callback bodies may carry a rejection reason about the person.
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.proof_id == proof_id))
        proof.sealed = proof.wrapped_key = None
        proof.rejection_reason = None
        proof.webhook_url = None
        proof.document_expires_at = None
        proof.status, proof.purged_at = "purged", now
        append_proof_event(
            session,
            "identity_proof.purged",
            proof_id,
            actor=actor,
            at=now,
            subject_kind=proof.subject_kind,
            method=proof.method,
            retain_until=proof.retain_until.isoformat(),
            last_certificate_expiry=expiry.isoformat() if expiry else None,
            files=int(getattr(files, "rowcount", 0) or 0),
        )
    return True


def purge_expired(
    db: Database,
    *,
    years: int,
    now: datetime,
    actor: str = ACTOR,
    proof_ids: Collection[str] | None = None,
) -> list[str]:
    """Purge every record past retention and not on hold (or only those of ``proof_ids``);
    returns the purged ids. Each record is its own transaction, so one failure leaves the
    others done."""
    purged: list[str] = []
    after = ""
    while True:
        with db.read() as session:
            batch = list(
                session.scalars(
                    select(IdentityProof.id)
                    .where(
                        IdentityProof.retain_until <= now,
                        IdentityProof.status != "purged",
                        IdentityProof.legal_hold.is_(None),
                        IdentityProof.id > after,
                        IdentityProof.id.in_(proof_ids) if proof_ids is not None else true(),
                    )
                    .order_by(IdentityProof.id)
                    .limit(BATCH)
                )
            )
        if not batch:
            return purged
        for proof_id in batch:
            if purge_one(db, proof_id, years=years, now=now, actor=actor):
                purged.append(proof_id)
        after = batch[-1]


def run_purge(db: Database, settings: RegistrationConfig, *, now: datetime) -> None:
    """The scheduled job (registration/app.py)."""
    purged = purge_expired(db, years=settings.retention_years, now=now)
    if purged:
        log.info("retention: purged %d identity-proof record(s)", len(purged))
