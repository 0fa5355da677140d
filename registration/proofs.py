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
"""

from __future__ import annotations

import logging
import re
import secrets
import unicodedata
from base64 import b32encode
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.accounts.clients import Client
from core.errors import ErrorKind, HsmError, SceauError
from core.hsm.envelope import Sealer
from core.store.db import Database
from core.store.models import ApiClient, EvidenceFile, IdentityProof, ProofTerm
from pki.profiles import DOCUMENT_TYPES, ProfileSet, ProofMethod, SubjectKind
from pki.proofs import add_years, open_record, proof_aad
from registration.identifiers import check_organization_identifier

log = logging.getLogger(__name__)

NAME_MAX = 128  # the CPS caps names here (EN 319 411-1 OVR-5.2-11)
ADDRESS_MAX = 256
EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
COUNTRY = re.compile(r"^[A-Z]{2}$")
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
MOBILE = re.compile(r"^\+[1-9][0-9]{6,14}$")  # E.164, as SMS gateways want it
# Attributes of natural persons, wherever one appears (subject, representative).
PERSON_FIELDS = {"given_name", "surname", "birth_date", "birth_place", "email", "mobile"}
SUBJECT_FIELDS = {
    SubjectKind.NATURAL: PERSON_FIELDS | {"country", "nationality"},
    SubjectKind.LEGAL: {
        "organization_name",
        "organization_identifier",
        "common_name",
        "email",
        "country",
        "registered_address",
    },
}
DOCUMENT_FIELDS = {"type", "number", "issuing_country", "issuing_authority", "expires_on"}
REPRESENTATIVE_FIELDS = PERSON_FIELDS | {"nationality", "role", "document", "mandate"}
# How the representative's authority was shown (TS 119 461 §9.4, BIN-8.4.5).
MANDATE_TYPES = ("registry-listing", "power-of-attorney", "board-resolution")
EID_LEVELS = ("substantial", "high")  # eIDAS art. 8 levels a QC may rest on
TOP_FIELDS = {
    "subject_kind",
    "method",
    "subject",
    "document",
    "representative",
    "eid",
    "webhook_url",
}


def new_proof_id() -> str:
    """20 random base32 characters (100 bits): PrintableString-safe for the DN serialNumber."""
    return "P" + b32encode(secrets.token_bytes(15)).decode()[:20]


def _invalid(detail: str) -> SceauError:
    return SceauError(ErrorKind.INVALID, detail)


def _unprintable(char: str) -> bool:
    """Control characters, and the bidirectional overrides that would make a name display
    differently from what it is (an officer reads these)."""
    return unicodedata.category(char) in {"Cc", "Cs", "Co"} or char in BIDI_CONTROLS


def _text(
    data: dict[str, Any], key: str, where: str, *, required: bool = True, limit: int = NAME_MAX
) -> str | None:
    """A trimmed, printable string. HTML or script is kept as data: every reader escapes."""
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _invalid(f"{where}.{key} is required and must be a non-empty string")
    value = value.strip()
    if len(value) > limit or any(_unprintable(c) for c in value):
        raise _invalid(f"{where}.{key}: at most {limit} printable characters")
    return value


def _object(data: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise _invalid(f"{where}{key} must be an object")
    return value


def _no_unknown(raw: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(raw) - allowed
    if unknown:
        raise _invalid(f"unknown {where} field(s): {', '.join(sorted(unknown))}")


def _country(raw: dict[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    value = _text(raw, key, where, required=required)
    if value is not None and not COUNTRY.fullmatch(value):
        raise _invalid(f"{where}.{key} must be an ISO 3166-1 alpha-2 code in capitals")
    return value


def _date(raw: dict[str, Any], key: str, where: str, *, required: bool) -> date | None:
    value = _text(raw, key, where, required=required)
    if value is None:
        return None
    try:
        if not ISO_DATE.fullmatch(value):
            raise ValueError(value)  # fromisoformat also takes 20330501 and week dates
        return date.fromisoformat(value)
    except ValueError:
        raise _invalid(f"{where}.{key} must be a date, YYYY-MM-DD") from None


def parse_person(raw: dict[str, Any], where: str, today: date) -> dict[str, str]:
    """Names, birth date and place, e-mail and mobile of a natural person (the subject, or
    the representative of a legal person)."""
    out = {
        "given_name": str(_text(raw, "given_name", where)),
        "surname": str(_text(raw, "surname", where)),
    }
    born = _date(raw, "birth_date", where, required=False)
    if born is not None:
        if not date(1900, 1, 1) <= born < today:
            raise _invalid(f"{where}.birth_date must be in the past (and after 1900)")
        out["birth_date"] = born.isoformat()
    for key in ("birth_place", "nationality"):
        value = (
            _country(raw, key, where, required=False)
            if key == "nationality"
            else _text(raw, key, where, required=False)
        )
        if value is not None:
            out[key] = value
    email = _text(raw, "email", where, required=False)
    if email is not None:
        if not EMAIL.fullmatch(email):
            raise _invalid(f"{where}.email is not an e-mail address")
        out["email"] = email
    mobile = _text(raw, "mobile", where, required=False)
    if mobile is not None:
        mobile = mobile.replace(" ", "")
        if not MOBILE.fullmatch(mobile):
            raise _invalid(f"{where}.mobile must be an international number, +33612345678")
        out["mobile"] = mobile
    return out


def parse_subject(kind: SubjectKind, raw: dict[str, Any], today: date) -> dict[str, str]:
    """The subject's attributes; issuance builds the certificate's DN from some of them
    (pki.subject), the rest is kept for the record."""
    _no_unknown(raw, SUBJECT_FIELDS[kind], f"subject ({kind} person)")
    out = {"country": str(_country(raw, "country", "subject"))}
    if kind is SubjectKind.NATURAL:
        out.update(parse_person(raw, "subject", today))
        return out
    email = _text(raw, "email", "subject", required=False)
    if email is not None:
        if not EMAIL.fullmatch(email):
            raise _invalid("subject.email is not an e-mail address")
        out["email"] = email
    out["organization_name"] = str(_text(raw, "organization_name", "subject"))
    out["organization_identifier"] = check_organization_identifier(
        str(_text(raw, "organization_identifier", "subject")), out["country"]
    )
    common = _text(raw, "common_name", "subject", required=False)
    if common:
        out["common_name"] = common
    address = _text(raw, "registered_address", "subject", required=False, limit=ADDRESS_MAX)
    if address:
        out["registered_address"] = address
    return out


def parse_document(raw: dict[str, Any], today: date, where: str = "document") -> dict[str, str]:
    _no_unknown(raw, DOCUMENT_FIELDS, where)
    doc_type = _text(raw, "type", where)
    if doc_type not in DOCUMENT_TYPES:
        raise _invalid(f"{where}.type must be one of {', '.join(sorted(DOCUMENT_TYPES))}")
    out = {
        "type": str(doc_type),
        "number": str(_text(raw, "number", where)),
        "issuing_country": str(_country(raw, "issuing_country", where)),
    }
    authority = _text(raw, "issuing_authority", where, required=False)
    if authority:
        out["issuing_authority"] = authority
    expires = _date(raw, "expires_on", where, required=True)
    assert expires is not None
    if expires <= today:
        raise _invalid(f"the identity document ({where}) has expired")
    out["expires_on"] = expires.isoformat()
    return out


def parse_representative(raw: dict[str, Any], today: date) -> dict[str, Any]:
    """The natural person acting for a legal person, and how their authority was shown."""
    where = "representative"
    _no_unknown(raw, REPRESENTATIVE_FIELDS, where)
    out: dict[str, Any] = parse_person(raw, where, today)
    role = _text(raw, "role", where, required=False)
    if role:
        out["role"] = role
    if "document" in raw:
        out["document"] = parse_document(
            _object(raw, "document", "representative."), today, "representative.document"
        )
    mandate = _object(raw, "mandate", "representative.")
    _no_unknown(mandate, {"type", "reference"}, "representative.mandate")
    mandate_type = _text(mandate, "type", "representative.mandate")
    if mandate_type not in MANDATE_TYPES:
        raise _invalid(f"representative.mandate.type must be one of {', '.join(MANDATE_TYPES)}")
    out["mandate"] = {"type": str(mandate_type)}
    reference = _text(mandate, "reference", "representative.mandate", required=False)
    if reference:
        out["mandate"]["reference"] = reference
    return out


def parse_eid(method: ProofMethod, raw: Any) -> dict[str, str] | None:
    """The eID means and its eIDAS level: required for ``eid``, meaningless otherwise."""
    if method is not ProofMethod.EID:
        if raw is not None:
            raise _invalid("eid is only for method 'eid'")
        return None
    if not isinstance(raw, dict):
        raise _invalid("method 'eid' needs eid: {scheme, level}")
    _no_unknown(raw, {"scheme", "level"}, "eid")
    level = _text(raw, "level", "eid")
    if level not in EID_LEVELS:
        raise _invalid(f"eid.level must be one of {', '.join(EID_LEVELS)}")
    return {"scheme": str(_text(raw, "scheme", "eid")), "level": str(level)}


def parse_webhook_url(raw: Any) -> str | None:
    """Where the decision is POSTed: https, or http on the loopback for development. No
    credentials in the URL: the callback is authenticated by its signature."""
    if raw is None:
        return None
    if not isinstance(raw, str) or len(raw) > 512:
        raise _invalid("webhook_url must be a URL of at most 512 characters")
    try:
        parts = urlsplit(raw)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise _invalid("webhook_url is not a valid URL") from None
    loopback = host in {"localhost", "127.0.0.1", "::1"}
    if (
        not host
        or parts.username is not None
        or parts.fragment
        or any(ord(c) <= 32 for c in raw)
        or not (parts.scheme == "https" or (parts.scheme == "http" and loopback))
    ):
        raise _invalid("webhook_url must be an https URL without credentials or fragment")
    return raw


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


def parse_proof(
    data: dict[str, Any], today: date
) -> tuple[SubjectKind, ProofMethod, dict[str, Any]]:
    """Check a submitted proof; returns kind, method and the record to seal."""
    _no_unknown(data, TOP_FIELDS, "top-level")
    try:
        kind = SubjectKind(str(data.get("subject_kind")))
    except ValueError:
        raise _invalid("subject_kind must be 'natural' or 'legal'") from None
    try:
        method = ProofMethod(str(data.get("method")))
    except ValueError:
        raise _invalid(f"method must be one of {', '.join(m.value for m in ProofMethod)}") from None
    record: dict[str, Any] = {
        "subject": parse_subject(kind, _object(data, "subject"), today),
        "document": parse_document(_object(data, "document"), today),
    }
    if data.get("representative") is not None:
        if kind is not SubjectKind.LEGAL:
            raise _invalid("representative is only for legal persons")
        record["representative"] = parse_representative(_object(data, "representative"), today)
    eid = parse_eid(method, data.get("eid"))
    if eid is not None:
        record["eid"] = eid
    return kind, method, record


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
    kind, method, record = parse_proof(data, now.date())
    webhook_url = parse_webhook_url(data.get("webhook_url"))
    if webhook_url and not _has_webhook_secret(db, client):
        raise SceauError(
            ErrorKind.CONFLICT,
            f"client {client.name!r} has no webhook secret: the operator creates one with "
            f"`sceau client webhook-secret {client.name}` before webhook_url can be used",
        )
    document = record["document"]
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
    sealed = sealer.seal_json(proof_aad(proof_id), record)
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
        webhook_url=webhook_url,
    )
    terms = search_terms(sealer, record)
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


def open_proof(sealer: Sealer, proof: IdentityProof) -> dict[str, Any]:
    """``open_record`` for the RA's readers: a record that no longer opens (a byte changed
    in the database, or a ciphertext copied from another row) is a clear conflict naming
    the proof, logged for the operator, never an internal error."""
    try:
        return open_record(sealer, proof)
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
