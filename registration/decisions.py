"""Officers' decisions on identity proofs: approve (four-eyes where a profile asks for it)
and reject with a reason.

A proof becomes ``verified`` at its first approval, which makes it usable for the profiles
that need one officer; a profile with ``approvals_required = 2`` (seal-qcp-l-qscd) accepts it
only once a second, different officer has approved (checked again at issuance,
ca.issuance). An officer never approves a proof they submitted. Each decision is an audit
event and, when the platform registered a callback, a webhook delivery, in one transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import ErrorKind, SceauError
from core.store.db import Database
from core.store.models import Certificate, IdentityProof
from pki.profiles import ProfileSet, ProofMethod, SubjectKind
from registration.proofs import append_proof_event
from registration.webhooks import queue_decision

REASON_MAX = 500


def approvals_needed(profiles: ProfileSet, subject_kind: str, method: str) -> int:
    """The most approvals any profile accepting such a proof asks for (at least 1)."""
    try:
        kind, proof_method = SubjectKind(subject_kind), ProofMethod(method)
    except ValueError:
        return 1
    needs = [
        p.approvals_required
        for p in profiles.subscriber_profiles()
        if p.subject_kind is kind and proof_method in p.identity_methods
    ]
    return max(needs, default=1)


def awaits_officer(proof: IdentityProof, needed: int) -> bool:
    """Still in the officers' queue: pending, or verified with fewer approvals than needed."""
    if proof.method == ProofMethod.DELEGATED.value:
        return False
    if proof.status == "pending":
        return True
    return proof.status == "verified" and len({a["by"] for a in proof.approvals}) < needed


def _load(session: Session, proof_id: str) -> IdentityProof:
    """The proof an officer decides on, locked: neither decided against nor purged, and
    not delegated (the platform verified it; no officer decides)."""
    proof = session.get(IdentityProof, proof_id[:64], with_for_update=True)
    if proof is None:
        raise SceauError(ErrorKind.NOT_FOUND, f"no identity proof {proof_id[:64]!r}")
    if proof.status in {"rejected", "purged"}:
        raise SceauError(ErrorKind.CONFLICT, f"identity proof {proof.id} is {proof.status}")
    if proof.method == ProofMethod.DELEGATED.value:
        raise SceauError(
            ErrorKind.CONFLICT, f"identity proof {proof.id} is delegated: no officer decides"
        )
    return proof


def approve_proof(  # noqa: PLR0913 - the clock and the two RA settings it applies, keyword-only
    db: Database,
    proof_id: str,
    officer: str,
    *,
    now: datetime,
    max_age: timedelta,
    profiles: ProfileSet | None = None,
) -> IdentityProof:
    """Record ``officer``'s approval. Approvals accumulate, one per distinct officer, so that
    a four-eyes profile can require two; with ``profiles``, one beyond what any profile
    needs is refused as pointless."""
    actor = f"officer:{officer}"
    with db.write() as session:
        proof = _load(session, proof_id)
        if proof.submitted_by == actor:
            raise SceauError(
                ErrorKind.FORBIDDEN,
                f"{officer} submitted identity proof {proof.id} and may not approve it",
            )
        if any(a["by"] == actor for a in proof.approvals):
            raise SceauError(ErrorKind.CONFLICT, f"{officer} has approved {proof.id} already")
        needed = approvals_needed(profiles, proof.subject_kind, proof.method) if profiles else 0
        if profiles is not None and not awaits_officer(proof, needed):
            raise SceauError(
                ErrorKind.CONFLICT, f"identity proof {proof.id} has all the approvals it needs"
            )
        proof.approvals = [*proof.approvals, {"by": actor, "at": now.isoformat()}]
        first = proof.status == "pending"
        if first:
            expiry = proof.document_expires_at
            if expiry is None or expiry <= now:
                raise SceauError(ErrorKind.CONFLICT, "the identity document has expired")
            proof.status, proof.verified_at, proof.decided_at = "verified", now, now
            proof.usable_until = min(expiry, now + max_age)
        append_proof_event(
            session,
            "identity_proof.approved",
            proof.id,
            actor=actor,
            at=now,
            approvals=len(proof.approvals),
            **({"approvals_needed": needed} if needed else {}),
        )
        if first:
            # The platform learns the decision once; a second approval changes no status.
            queue_decision(session, proof, now=now)
        return proof


def reject_proof(
    db: Database, proof_id: str, officer: str, reason: str, *, now: datetime
) -> IdentityProof:
    """Reject a proof awaiting a decision: pending, or verified but not yet relied on by any
    certificate (the second officer of a four-eyes check disagrees)."""
    reason = " ".join(reason.split())
    if not reason:
        raise SceauError(ErrorKind.INVALID, "a rejection needs a reason")
    if len(reason) > REASON_MAX:
        raise SceauError(ErrorKind.INVALID, f"the reason is limited to {REASON_MAX} characters")
    actor = f"officer:{officer}"
    with db.write() as session:
        proof = _load(session, proof_id)
        if proof.status == "verified":
            relied_on = session.scalars(
                select(Certificate.id).where(
                    Certificate.proof_id == proof.id, Certificate.status != "failed"
                )
            ).first()
            if relied_on is not None:
                raise SceauError(
                    ErrorKind.CONFLICT,
                    f"certificates rest on identity proof {proof.id}: revoke them instead",
                )
        proof.status, proof.decided_at, proof.rejection_reason = "rejected", now, reason
        proof.usable_until = None
        append_proof_event(
            session, "identity_proof.rejected", proof.id, actor=actor, at=now, reason=reason
        )
        queue_decision(session, proof, now=now)
        return proof
