"""Identity-proof records submitted by platforms (``POST /ra/api/v1/identity-proofs``).

A record holds what EN 319 411-1 REG-6.2.2-18 / REG-6.4.5-04 and TS 119 461 ISS-8.5 ask to
keep: the subject's attributes (natural person: names, birth date and place, e-mail, mobile,
nationality; legal person: registered name, identifier, registered address and the natural
person who represents it, with the proof of that mandate), the identity document (type,
number, issuing state, expiry) and the method (with the eID scheme and level for ``eid``).
All of it is sealed (core.hsm.envelope) in one record; only blind terms and dates stay in clear.

A ``delegated`` proof is the platform vouching for the identity as a delegated RA: it is
verified at once when one of the client's profiles accepts delegated proofs for that kind
of subject. Any other method waits, ``pending``, for an officer's decision.

The request arrives parsed and typed (registration/requests.py); what is checked here
needs the clock (dates), the profiles or the database.
"""

from __future__ import annotations

import logging
import secrets
from base64 import b32encode
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.accounts.clients import Client
from core.errors import ErrorKind, HsmError, SceauError
from core.hsm.envelope import Sealer
from core.hsm.keystore import HsmUnavailableError
from core.store.db import Database
from core.store.models import ApiClient, EvidenceFile, IdentityProof, ProofTerm
from pki.context import PkiContext
from pki.profiles import ProofMethod, SubjectKind
from pki.proofs import add_years, open_record, proof_aad
from registration.requests import NaturalPersonProof, Person, ProofRequest

log = logging.getLogger(__name__)


def new_proof_id() -> str:
    """20 random base32 characters (100 bits): PrintableString-safe for the DN serialNumber."""
    return "P" + b32encode(secrets.token_bytes(15)).decode()[:20]


def check_dates(request: ProofRequest, today: date) -> None:
    """The request's rules that need the calendar: people born in the past (after 1900),
    identity documents not yet expired."""
    people: list[tuple[str, Person]] = []
    documents = [("document", request.document)]
    if isinstance(request, NaturalPersonProof):
        people.append(("subject", request.subject))
    elif request.representative is not None:
        people.append(("representative", request.representative))
        if request.representative.document is not None:
            documents.append(("representative.document", request.representative.document))
    for where, person in people:
        born = person.birth_date
        if born is not None and not date(1900, 1, 1) <= born < today:
            raise SceauError(
                ErrorKind.INVALID, f"{where}.birth_date must be in the past (and after 1900)"
            )
    for where, document in documents:
        if document.expires_on <= today:
            raise SceauError(ErrorKind.INVALID, f"the identity document ({where}) has expired")


def search_terms(sealer: Sealer, record: dict[str, Any]) -> set[str]:
    """The blind terms an officer's search matches: full name, surname, e-mail,
    organisation name and identifier (of the subject, and of a legal person's
    representative)."""
    terms: set[str] = set()
    people = [record["subject"], record.get("representative") or {}]
    for person in people:
        fields = {
            "email": person.get("email"),
            "surname": person.get("surname"),
            "name": " ".join(filter(None, (person.get("given_name"), person.get("surname")))),
            "organization_name": person.get("organization_name"),
            "organization_identifier": person.get("organization_identifier"),
        }
        terms |= {sealer.term(field, value) for field, value in fields.items() if value}
    return terms


def _has_webhook_secret(db: Database, client: Client) -> bool:
    with db.read() as session:
        row = session.get(ApiClient, client.id)
    return row is not None and row.webhook_secret_sealed is not None


def create_proof(
    ctx: PkiContext, client: Client, request: ProofRequest, *, now: datetime
) -> IdentityProof:
    """Record the proof ``request`` of ``client``, sealed: verified at once when it is
    delegated and one of the client's profiles accepts that, else pending an officer."""
    settings = ctx.config.registration
    check_dates(request, now.date())
    kind = SubjectKind(request.subject_kind)
    method = request.method
    if request.webhook_url and not _has_webhook_secret(ctx.db, client):
        raise SceauError(
            ErrorKind.CONFLICT,
            f"client {client.name!r} has no webhook secret: the operator creates one with "
            f"`sceau client webhook-secret {client.name}` before webhook_url can be used",
        )
    # What is sealed: the attributes as submitted and normalised, absent ones left out.
    record = request.model_dump(
        mode="json", exclude_none=True, include={"subject", "document", "representative", "eid"}
    )
    status, verified_at, approvals = "pending", None, []
    if method is ProofMethod.DELEGATED:
        accepting = [
            p.id
            for p in ctx.profiles.subscriber_profiles()
            if p.id in client.profiles
            and p.subject_kind is kind
            and ProofMethod.DELEGATED in p.identity_methods
        ]
        if not accepting:
            raise SceauError(
                ErrorKind.FORBIDDEN,
                f"none of this client's profiles accepts delegated proofs for "
                f"{kind} persons; use an officer-verified method",
            )
        status, verified_at = "verified", now
        approvals = [{"by": client.actor, "at": now.isoformat()}]
    expiry = datetime.combine(request.document.expires_on, time(0), now.tzinfo)
    max_age = timedelta(days=settings.proof_max_age_days)
    proof_id = new_proof_id()
    sealed = ctx.sealer.seal_json(proof_aad(proof_id), record)
    proof = IdentityProof(
        id=proof_id,
        client_id=client.id,
        submitted_by=client.actor,
        subject_kind=kind.value,
        method=method.value,
        status=status,
        sealed=sealed.ciphertext,
        wrapped_key=sealed.wrapped_key,
        document_expires_at=expiry,
        created_at=now,
        verified_at=verified_at,
        decided_at=verified_at,
        approvals=approvals,
        usable_until=min(expiry, now + max_age) if verified_at else None,
        retain_until=add_years(now, settings.retention_years),
        webhook_url=request.webhook_url,
    )
    terms = search_terms(ctx.sealer, record)
    with ctx.db.write() as session:
        session.add(proof)
        session.flush()
        session.add_all(ProofTerm(proof_id=proof_id, term=t) for t in terms)
        append_proof_event(
            session,
            "identity_proof.created",
            proof.id,
            actor=client.actor,
            at=now,
            subject_kind=kind.value,
            method=method.value,
            status=status,
            document_type=request.document.type,
        )
    return proof


def open_proof(sealer: Sealer, proof: IdentityProof) -> dict[str, Any]:
    """``open_record`` for the RA's readers: a record that no longer opens (a byte changed
    in the database, or a ciphertext copied from another row) is a clear conflict naming
    the proof, logged for the operator, never an internal error."""
    try:
        return open_record(sealer, proof)
    except HsmUnavailableError:
        raise  # the token is away, the record may be fine: 503, not a conflict
    except HsmError as exc:
        log.error("identity proof %s: sealed record does not open: %s", proof.id, exc.detail)
        raise SceauError(
            ErrorKind.CONFLICT,
            f"the sealed record of identity proof {proof.id} does not open: it was altered "
            "or moved in the database (or the token refused); the operator has been told",
        ) from exc


def _without_numbers(record: dict[str, Any]) -> dict[str, Any]:
    """The record as the platform sees it again: document numbers stay with the RA."""
    out = dict(record)
    out["document"] = {k: v for k, v in record["document"].items() if k != "number"}
    rep = record.get("representative")
    if rep and "document" in rep:
        out["representative"] = {
            **rep,
            "document": {k: v for k, v in rep["document"].items() if k != "number"},
        }
    return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def file_body(file: EvidenceFile) -> dict[str, Any]:
    return {
        "id": file.id,
        "kind": file.kind,
        "media_type": file.media_type,
        "size": file.size,
        "created_at": file.created_at.isoformat(),
    }


def append_proof_event(
    session: Session, action: str, proof_id: str, *, actor: str, at: datetime, **details: object
) -> None:
    """Append an ``identity_proof.*`` event: its details open with the proof's id, under the
    "proof" key by which the auditor's proof filter finds it (core.audit.index_fields)."""
    audit.append(session, actor=actor, action=action, at=at, details={"proof": proof_id, **details})


def proof_files(session: Session, proof_id: str) -> list[EvidenceFile]:
    return list(
        session.scalars(
            select(EvidenceFile).where(EvidenceFile.proof_id == proof_id).order_by(EvidenceFile.id)
        )
    )


def proof_body(
    sealer: Sealer, proof: IdentityProof, files: list[EvidenceFile] | None = None
) -> dict[str, Any]:
    """The platform's view of its proof (also the poll for the decision)."""
    body: dict[str, Any] = {
        "id": proof.id,
        "status": proof.status,
        "subject_kind": proof.subject_kind,
        "method": proof.method,
    }
    if proof.status != "purged":
        body.update(_without_numbers(open_proof(sealer, proof)))
    body.update(
        {
            "created_at": proof.created_at.isoformat(),
            "verified_at": _iso(proof.verified_at),
            "decided_at": _iso(proof.decided_at),
            "rejection_reason": proof.rejection_reason,
            "usable_until": _iso(proof.usable_until),
            "webhook_url": proof.webhook_url,
            "files": [file_body(f) for f in files or []],
        }
    )
    if proof.purged_at:
        body["purged_at"] = proof.purged_at.isoformat()
    return body
