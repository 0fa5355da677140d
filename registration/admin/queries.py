"""What the officer UI reads: the work queue, searches, a subject's proofs and certificates.
Only clear columns are read here; opening a sealed record is the views' business (audited)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from core.hsm.envelope import Sealer
from core.store.models import Certificate, EvidenceFile, IdentityProof, ProofTerm
from pki.profiles import ProfileSet, ProofMethod, SubjectKind
from registration.decisions import approvals_needed, awaits_officer

QUEUE_LIMIT = 200  # a page; the oldest first, so nothing waiting is ever hidden behind newer
AGES = {"": None, "1h": timedelta(hours=1), "1d": timedelta(days=1), "7d": timedelta(days=7)}
SEARCH_FIELDS = {
    # form value -> the blind-term fields (registration.proofs.search_terms) it looks in
    "name": ("name", "surname", "organization_name"),
    "email": ("email",),
    "organisation": ("organization_identifier", "organization_name"),
}


@dataclass(frozen=True)
class QueueItem:
    proof: IdentityProof
    approvals: int
    needed: int
    files: int


@dataclass(frozen=True)
class QueueFilter:
    kind: str = ""
    method: str = ""
    age: str = ""

    @classmethod
    def from_args(cls, args: Any) -> QueueFilter:
        """Unknown values fall back to "any": a filter never errs."""
        kind = args.get("kind", "")
        method = args.get("method", "")
        age = args.get("age", "")
        return cls(
            kind if kind in {k.value for k in SubjectKind} else "",
            method if method in {m.value for m in ProofMethod} else "",
            age if age in AGES else "",
        )


def _multi_approval_methods(profiles: ProfileSet) -> list[tuple[str, str]]:
    """(subject kind, method) pairs some profile needs several officers for."""
    pairs = {
        (str(p.subject_kind), m.value)
        for p in profiles.subscriber_profiles()
        if p.approvals_required > 1
        for m in p.identity_methods
    }
    return sorted(pairs)


def work_queue(
    session: Session, profiles: ProfileSet, flt: QueueFilter, *, now: datetime
) -> list[QueueItem]:
    """Proofs waiting for an officer, oldest first: pending ones, and verified ones that a
    four-eyes profile still needs a further approval on (and that are still usable)."""
    waiting = [IdentityProof.status == "pending"]
    for kind, method in _multi_approval_methods(profiles):
        waiting.append(
            and_(
                IdentityProof.status == "verified",
                IdentityProof.subject_kind == kind,
                IdentityProof.method == method,
                IdentityProof.usable_until > now,
            )
        )
    query = select(IdentityProof).where(
        or_(*waiting), IdentityProof.method != ProofMethod.DELEGATED.value
    )
    if flt.kind:
        query = query.where(IdentityProof.subject_kind == flt.kind)
    if flt.method:
        query = query.where(IdentityProof.method == flt.method)
    older = AGES[flt.age]
    if older is not None:
        query = query.where(IdentityProof.created_at <= now - older)
    rows = session.scalars(query.order_by(IdentityProof.created_at).limit(QUEUE_LIMIT)).all()
    counts = _file_counts(session, [p.id for p in rows])
    items = []
    for proof in rows:
        needed = approvals_needed(profiles, proof.subject_kind, proof.method)
        if awaits_officer(proof, needed):
            approvals = len({a["by"] for a in proof.approvals})
            items.append(QueueItem(proof, approvals, needed, counts.get(proof.id, 0)))
    return items


def _file_counts(session: Session, proof_ids: list[str]) -> dict[str, int]:
    if not proof_ids:
        return {}
    rows = session.execute(
        select(EvidenceFile.proof_id, func.count())
        .where(EvidenceFile.proof_id.in_(proof_ids))
        .group_by(EvidenceFile.proof_id)
    ).all()
    return {proof_id: count for proof_id, count in rows}


def proofs_with_terms(session: Session, terms: set[str], limit: int = 100) -> list[IdentityProof]:
    if not terms:
        return []
    ids = select(ProofTerm.proof_id).where(ProofTerm.term.in_(sorted(terms))).distinct()
    return list(
        session.scalars(
            select(IdentityProof)
            .where(IdentityProof.id.in_(ids))
            .order_by(IdentityProof.created_at.desc())
            .limit(limit)
        )
    )


def search_proofs(session: Session, sealer: Sealer, field: str, query: str) -> list[IdentityProof]:
    """Proofs whose blind term for ``field`` matches ``query`` (normalised: case, accents
    and spacing do not matter; the whole value must match)."""
    terms = {sealer.term(name, query) for name in SEARCH_FIELDS.get(field, ())}
    return proofs_with_terms(session, terms)


def normalise_serial(value: str) -> str | None:
    cleaned = value.strip().lower().replace(":", "").replace(" ", "")
    if not cleaned or len(cleaned) > 40 or any(c not in "0123456789abcdef" for c in cleaned):
        return None
    return cleaned.lstrip("0") or "0"


def certificates_by_serial(session: Session, serial: str) -> list[Certificate]:
    wanted = normalise_serial(serial)
    if wanted is None:
        return []
    return list(
        session.scalars(
            select(Certificate).where(
                Certificate.serial == wanted, Certificate.status.in_(["issued", "revoked"])
            )
        )
    )


def certificates_of(session: Session, proof_ids: list[str]) -> list[Certificate]:
    if not proof_ids:
        return []
    return list(
        session.scalars(
            select(Certificate)
            .where(
                Certificate.proof_id.in_(proof_ids),
                Certificate.status.in_(["issued", "revoked"]),
            )
            .order_by(Certificate.created_at.desc())
        )
    )


def subject_terms(sealer: Sealer, record: dict[str, Any]) -> set[str]:
    """The terms that identify a subject (not a shared surname): e-mail, full name of a
    person, identifier of an organisation."""
    subject = record.get("subject") or {}
    if subject.get("organization_identifier"):
        return {sealer.term("organization_identifier", subject["organization_identifier"])}
    terms = set()
    if subject.get("email"):
        terms.add(sealer.term("email", subject["email"]))
    full = " ".join(filter(None, (subject.get("given_name"), subject.get("surname"))))
    if full:
        terms.add(sealer.term("name", full))
    return terms
