"""Identity-proof records submitted by platforms (``POST /ra/api/v1/identity-proofs``).

A ``delegated`` proof is the platform vouching for the identity as a delegated RA: it is
verified at once when one of the client's profiles accepts delegated proofs for that kind
of subject. Any other method waits, ``pending``, for an officer's approval.
"""

from __future__ import annotations

import re
import secrets
from base64 import b32encode
from datetime import date, datetime, time, timedelta
from typing import Any

from ca import audit
from ca.clients import Client
from ca.errors import ErrorKind, SceauError
from ca.profiles import DOCUMENT_TYPES, ProfileSet, ProofMethod, SubjectKind
from ca.proofs import add_years, open_record, proof_aad
from ca.sealing import Sealer
from ca.store.db import Database
from ca.store.models import IdentityProof, ProofTerm
from registration.identifiers import check_organization_identifier

NAME_MAX = 128  # the CPS caps names here (EN 319 411-1 OVR-5.2-11)
EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
COUNTRY = re.compile(r"^[A-Z]{2}$")
SUBJECT_FIELDS = {
    SubjectKind.NATURAL: {"given_name", "surname", "email", "country"},
    SubjectKind.LEGAL: {
        "organization_name",
        "organization_identifier",
        "common_name",
        "email",
        "country",
    },
}


def new_proof_id() -> str:
    """20 random base32 characters (100 bits): PrintableString-safe for the DN serialNumber."""
    return "P" + b32encode(secrets.token_bytes(15)).decode()[:20]


def _invalid(detail: str) -> SceauError:
    return SceauError(ErrorKind.INVALID, detail)


def _text(data: dict[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _invalid(f"{where}.{key} is required and must be a non-empty string")
    value = value.strip()
    if len(value) > NAME_MAX or any(ord(c) < 32 for c in value):
        raise _invalid(f"{where}.{key}: at most {NAME_MAX} printable characters")
    return value


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise _invalid(f"{key} must be an object")
    return value


def parse_subject(kind: SubjectKind, raw: dict[str, Any]) -> dict[str, str]:
    unknown = set(raw) - SUBJECT_FIELDS[kind]
    if unknown:
        raise _invalid(
            f"unknown subject field(s) for a {kind} person: {', '.join(sorted(unknown))}"
        )
    country = _text(raw, "country", "subject")
    if country is None or not COUNTRY.fullmatch(country):
        raise _invalid("subject.country must be an ISO 3166-1 alpha-2 code in capitals")
    out = {"country": country}
    email = _text(raw, "email", "subject", required=False)
    if email is not None:
        if not EMAIL.fullmatch(email):
            raise _invalid("subject.email is not an e-mail address")
        out["email"] = email
    if kind is SubjectKind.NATURAL:
        out["given_name"] = str(_text(raw, "given_name", "subject"))
        out["surname"] = str(_text(raw, "surname", "subject"))
    else:
        out["organization_name"] = str(_text(raw, "organization_name", "subject"))
        out["organization_identifier"] = check_organization_identifier(
            str(_text(raw, "organization_identifier", "subject")), country
        )
        common = _text(raw, "common_name", "subject", required=False)
        if common:
            out["common_name"] = common
    return out


def parse_document(raw: dict[str, Any], today: date) -> dict[str, str]:
    unknown = set(raw) - {"type", "number", "issuing_country", "expires_on"}
    if unknown:
        raise _invalid(f"unknown document field(s): {', '.join(sorted(unknown))}")
    doc_type = _text(raw, "type", "document")
    if doc_type not in DOCUMENT_TYPES:
        raise _invalid(f"document.type must be one of {', '.join(sorted(DOCUMENT_TYPES))}")
    number = str(_text(raw, "number", "document"))
    issuing = _text(raw, "issuing_country", "document")
    if issuing is None or not COUNTRY.fullmatch(issuing):
        raise _invalid("document.issuing_country must be an ISO 3166-1 alpha-2 code")
    expires_raw = _text(raw, "expires_on", "document")
    try:
        expires = date.fromisoformat(str(expires_raw))
    except ValueError as exc:
        raise _invalid("document.expires_on must be a date, YYYY-MM-DD") from exc
    if expires <= today:
        raise _invalid("the identity document has expired")
    return {
        "type": str(doc_type),
        "number": number,
        "issuing_country": issuing,
        "expires_on": expires.isoformat(),
    }


def search_terms(sealer: Sealer, kind: SubjectKind, subject: dict[str, str]) -> set[str]:
    """The blind terms an officer's search matches: full name, surname, e-mail,
    organisation name and identifier."""
    fields = {
        "email": subject.get("email"),
        "surname": subject.get("surname"),
        "name": " ".join(filter(None, (subject.get("given_name"), subject.get("surname")))),
        "organization_name": subject.get("organization_name"),
        "organization_identifier": subject.get("organization_identifier"),
    }
    return {sealer.term(field, value) for field, value in fields.items() if value}


def create_proof(
    db: Database,
    sealer: Sealer,
    profiles: ProfileSet,
    client: Client,
    data: dict[str, Any],
    *,
    now: datetime,
    max_age: timedelta,
    retention_years: int,
) -> IdentityProof:
    unknown = set(data) - {"subject_kind", "method", "subject", "document"}
    if unknown:
        raise _invalid(f"unknown field(s): {', '.join(sorted(unknown))}")
    try:
        kind = SubjectKind(str(data.get("subject_kind")))
    except ValueError:
        raise _invalid("subject_kind must be 'natural' or 'legal'") from None
    try:
        method = ProofMethod(str(data.get("method")))
    except ValueError:
        raise _invalid(f"method must be one of {', '.join(m.value for m in ProofMethod)}") from None
    subject = parse_subject(kind, _object(data, "subject"))
    document = parse_document(_object(data, "document"), now.date())
    status, verified_at, approvals = "pending", None, []
    if method is ProofMethod.DELEGATED:
        accepting = [
            p.id
            for p in profiles.subscriber_profiles()
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
    expiry = datetime.combine(date.fromisoformat(document["expires_on"]), time(0), now.tzinfo)
    proof_id = new_proof_id()
    sealed = sealer.seal_json(proof_aad(proof_id), {"subject": subject, "document": document})
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
        retain_until=add_years(now, retention_years),
    )
    terms = search_terms(sealer, kind, subject)
    with db.write() as session:
        session.add(proof)
        session.flush()
        session.add_all(ProofTerm(proof_id=proof_id, term=t) for t in terms)
        audit.append(
            session,
            actor=client.actor,
            action="identity_proof.created",
            at=now,
            details={
                "proof": proof.id,
                "subject_kind": kind.value,
                "method": method.value,
                "status": status,
                "document_type": document["type"],
            },
        )
    return proof


def proof_body(sealer: Sealer, proof: IdentityProof) -> dict[str, Any]:
    record = open_record(sealer, proof)
    return {
        "id": proof.id,
        "status": proof.status,
        "subject_kind": proof.subject_kind,
        "method": proof.method,
        "subject": record["subject"],
        "document": {k: v for k, v in record["document"].items() if k != "number"},
        "created_at": proof.created_at.isoformat(),
        "verified_at": proof.verified_at.isoformat() if proof.verified_at else None,
        "usable_until": proof.usable_until.isoformat() if proof.usable_until else None,
    }


def approve_proof(
    db: Database, proof_id: str, officer: str, *, now: datetime, max_age: timedelta
) -> IdentityProof:
    """An officer approves a pending proof (until the officer UI lands, from the command line).

    Approvals accumulate, one per distinct officer, so that a four-eyes profile can require two.
    """
    with db.write() as session:
        proof = session.get(IdentityProof, proof_id)
        if proof is None:
            raise SceauError(ErrorKind.NOT_FOUND, f"no identity proof {proof_id!r}")
        if proof.status == "rejected":
            raise SceauError(ErrorKind.CONFLICT, f"identity proof {proof_id} was rejected")
        actor = f"officer:{officer}"
        if any(a["by"] == actor for a in proof.approvals):
            raise SceauError(ErrorKind.CONFLICT, f"{officer} has approved {proof_id} already")
        proof.approvals = [*proof.approvals, {"by": actor, "at": now.isoformat()}]
        if proof.status == "pending":
            expiry = proof.document_expires_at
            if expiry is None or expiry <= now:
                raise SceauError(ErrorKind.CONFLICT, "the identity document has expired")
            proof.status, proof.verified_at = "verified", now
            proof.usable_until = min(expiry, now + max_age)
        audit.append(
            session,
            actor=actor,
            action="identity_proof.approved",
            at=now,
            details={"proof": proof.id, "approvals": len(proof.approvals)},
        )
        return proof
