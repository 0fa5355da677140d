"""Revocation: the accepted reasons, serial numbers as our tables spell them, and the one
``revoke()`` that the CA API and the officer UI both call.

Lock order (every transaction that touches the audit head takes its locks in this order,
so that two of them never wait on each other): the certificate row, then the issuer's
status row, then the audit head (``core.audit.append``, always last).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core import audit, metrics
from core.errors import ErrorKind, SceauError
from core.store.db import Database
from core.store.models import Certificate, IssuerStatus

# RFC 5280 section 5.3.1 CRLReason, by the names the API accepts. removeFromCRL (8) is only
# for delta CRLs and certificateHold (6) would allow reinstatement, which EN 319 411-1
# REV-6.3.9-02 forbids; neither is accepted.
REVOCATION_REASONS = {
    "unspecified": 0,
    "keyCompromise": 1,
    "cACompromise": 2,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
    "privilegeWithdrawn": 9,
    "aACompromise": 10,
}


@dataclass(frozen=True)
class CertificateRecord:
    serial: str
    issuer: str
    profile: str
    status: str
    subject: str
    certificate: bytes | None
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    revocation_reason: str | None
    invalidity_date: datetime | None
    proof_id: str | None


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def append_certificate_event(  # noqa: PLR0913 - the certificate, then who and when (keywords)
    session: Session,
    action: str,
    serial: str,
    issuer: str,
    *,
    actor: str,
    at: datetime,
    **details: object,
) -> None:
    """Append a ``certificate.*`` event about one certificate: its details open with the
    serial, under the key by which the auditor's serial filter finds the event
    (core.audit.index_fields), and the issuer."""
    details = {"serial": serial, "issuer": issuer, **details}
    audit.append(session, actor=actor, action=action, at=at, details=details)


def normalise_serial(serial: str) -> str:
    """A serial as a caller may write it (colons, capitals, leading zeros) as we store it."""
    cleaned = serial.strip().lower().replace(":", "")
    if not cleaned or len(cleaned) > 40 or any(c not in "0123456789abcdef" for c in cleaned):
        raise SceauError(ErrorKind.NOT_FOUND, "serial must be hexadecimal, at most 20 octets")
    return cleaned.lstrip("0") or "0"


def certificate_record(row: Certificate) -> CertificateRecord:
    return CertificateRecord(
        serial=row.serial,
        issuer=row.issuer_id,
        profile=row.profile,
        status=row.status,
        subject=row.subject,
        certificate=row.der,
        not_before=row.not_before,
        not_after=row.not_after,
        revoked_at=row.revoked_at,
        revocation_reason=row.revocation_reason,
        invalidity_date=row.invalidity_date,
        proof_id=row.proof_id,
    )


def check_reason(reason: str) -> None:
    if reason not in REVOCATION_REASONS:
        raise SceauError(
            ErrorKind.INVALID, f"reason must be one of {', '.join(REVOCATION_REASONS)}"
        )


def revoke(  # noqa: PLR0913 - what a revocation states, keyword-only
    db: Database,
    certificate_id: int,
    *,
    actor: str,
    reason: str,
    invalidity_date: datetime | None,
    now: datetime,
) -> CertificateRecord:
    """Revoke an issued, unexpired certificate: at most once, whoever asks at the same time.

    One conditional UPDATE decides (status still ``issued``, not expired): of concurrent
    calls exactly one changes the row and writes the audit event, the others find it
    revoked and get 409, and the first reason stays. The issuer's status epoch moves in
    the same transaction, which the CRL publisher and the OCSP caches watch; the OCSP
    side re-signs its stored answer itself (its engine never serves one that disagrees
    with the status).
    """
    check_reason(reason)
    if invalidity_date is not None and invalidity_date > now:
        raise SceauError(ErrorKind.INVALID, "invalidity_date may not be in the future")

    def transaction(session: Session) -> CertificateRecord:
        changed: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(Certificate)
            .where(
                Certificate.id == certificate_id,
                Certificate.status == "issued",
                Certificate.not_after > now,
            )
            .values(
                status="revoked",
                revoked_at=now,
                revocation_reason=reason,
                invalidity_date=invalidity_date,
            )
        )
        row = session.get(Certificate, certificate_id, populate_existing=True)
        if row is None or row.status not in {"issued", "revoked"}:
            raise SceauError(ErrorKind.NOT_FOUND, "no such certificate")
        if not changed.rowcount:
            if row.status == "revoked":
                raise SceauError(
                    ErrorKind.CONFLICT,
                    f"certificate {row.serial} was revoked at "
                    f"{row.revoked_at.isoformat() if row.revoked_at else '?'}",
                )
            raise SceauError(ErrorKind.CONFLICT, f"certificate {row.serial} has expired")
        bump_status_epoch(session, row.issuer_id, now)
        append_certificate_event(
            session,
            "certificate.revoked",
            row.serial,
            row.issuer_id,
            actor=actor,
            at=now,
            reason=reason,
            invalidity_date=invalidity_date.isoformat() if invalidity_date else None,
        )
        return certificate_record(row)

    record = db.transact(transaction)
    metrics.CERTIFICATES_REVOKED.labels(profile=record.profile).inc()
    return record


def bump_status_epoch(session: Any, issuer_id: str, now: datetime) -> None:
    """Move the issuer's status epoch by one, in one statement (no lost update between
    two revocations that commit at the same time, no duplicate first row)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(IssuerStatus).values(issuer_id=issuer_id, epoch=1, changed_at=now)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[IssuerStatus.issuer_id],
            set_={"epoch": IssuerStatus.epoch + 1, "changed_at": now},
        )
    )


def find_certificate(session: Any, serial: str, *, client_id: int | None) -> Certificate:
    """The issued or revoked certificate with this serial (of this client, if given)."""
    serial = normalise_serial(serial)
    query = select(Certificate).where(Certificate.serial == serial)
    if client_id is not None:
        query = query.where(Certificate.client_id == client_id)
    row = session.scalars(query).first()
    if row is None or row.status not in {"issued", "revoked"}:
        raise SceauError(ErrorKind.NOT_FOUND, f"no certificate with serial {serial}")
    return row  # type: ignore[no-any-return]
