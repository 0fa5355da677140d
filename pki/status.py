"""Certificate status as the core records it, for the status services (OCSP).

A status service asks a :class:`StatusSource` (style.md section 7); the core answers from
the tables that the issuance pipeline, revocation and the key ceremony write. A CA of ours
issues three kinds of certificates, each recorded in its own table, and all three have a
status: subscriber certificates (``certificates``), the delegated signers it certified
(``signers``: its OCSP responder, the TSU for the root) and, for the root, the issuing CAs
(``issuers``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from asn1crypto import x509
from sqlalchemy import ColumnElement, Select, and_, bindparam, or_, select

from core.store.db import Database
from core.store.models import Certificate, Issuer, IssuerStatus, OcspResponse, Signer
from pki.revocation import REVOCATION_REASONS, serial_hex

# Issuing CAs change only at a key ceremony; a ceremony while the service runs is seen
# within this many seconds.
_CA_RELOAD_SECONDS = 60.0


class CertState(StrEnum):
    GOOD = "good"
    REVOKED = "revoked"
    # No certificate with this serial: never issued, or only reserved or failed (the
    # pipeline reserves the serial before the HSM signs; a crash in between leaves a
    # "reserved" row for a certificate that may or may not exist).
    NOT_ISSUED = "not-issued"


@dataclass(frozen=True)
class CertStatus:
    state: CertState
    revoked_at: datetime | None = None
    reason_code: int | None = None  # RFC 5280 section 5.3.1 CRLReason
    invalidity_date: datetime | None = None


NOT_ISSUED = CertStatus(CertState.NOT_ISSUED)
GOOD = CertStatus(CertState.GOOD)


class StatusSource(Protocol):
    def status(self, issuer_id: str, serial: int) -> CertStatus:
        """The status of the certificate ``serial`` issued by our CA ``issuer_id``."""
        ...

    def epochs(self) -> dict[str, int]:
        """Per CA, a counter that every revocation moves (absent: never revoked any)."""
        ...

    def needing_response(
        self, issuer_id: str, *, now: datetime, fresh_until: datetime, limit: int
    ) -> list[int]:
        """Serials of unexpired certificates of ``issuer_id`` whose pre-signed OCSP
        response is missing or expires before ``fresh_until``; at most ``limit``."""
        ...

    def revoked_since_response(self, issuer_id: str, *, since: datetime, limit: int) -> list[int]:
        """Serials of certificates of ``issuer_id`` revoked at or after ``since`` that have
        no pre-signed OCSP response signed after the revocation's second; at most
        ``limit``."""
        ...


_CERTIFICATE = select(
    Certificate.status,
    Certificate.revoked_at,
    Certificate.revocation_reason,
    Certificate.invalidity_date,
).where(Certificate.issuer_id == bindparam("issuer"), Certificate.serial == bindparam("serial"))
_SIGNER = (
    select(Signer.id)
    .where(Signer.issuer_id == bindparam("issuer"), Signer.serial == bindparam("serial"))
    .limit(1)
)


def _with_response(issuer_id: str, *conditions: ColumnElement[bool]) -> Select[str]:
    """The serials of ``issuer_id``'s certificates that meet ``conditions``, each beside its
    stored OCSP response (whose columns are NULL where it has none)."""
    return (
        select(Certificate.serial)
        .outerjoin(
            OcspResponse,
            and_(
                OcspResponse.issuer_id == Certificate.issuer_id,
                OcspResponse.serial == Certificate.serial,
            ),
        )
        .where(Certificate.issuer_id == issuer_id, *conditions)
    )


class DatabaseStatusSource:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = threading.Lock()
        # (parent CA id, serial hex) -> notAfter of each issuing CA certificate.
        self._child_cas: dict[tuple[str, str], datetime] = {}
        self._child_cas_loaded = float("-inf")

    def status(self, issuer_id: str, serial: int) -> CertStatus:
        if serial <= 0:
            return NOT_ISSUED  # RFC 5280 section 4.1.2.2: we never issue one
        key = {"issuer": issuer_id, "serial": serial_hex(serial)}
        # A Core connection and statements built once: this runs for every status answer
        # that no cache holds, and the ORM session would double its cost.
        with self._db.engine.connect() as conn:
            row = conn.execute(_CERTIFICATE, key).first()
            if row is not None and row.status == "revoked":
                return CertStatus(
                    CertState.REVOKED,
                    revoked_at=row.revoked_at,
                    reason_code=REVOCATION_REASONS.get(row.revocation_reason or "unspecified", 0),
                    invalidity_date=row.invalidity_date,
                )
            if row is not None and row.status == "issued":
                return GOOD
            if row is not None:
                return NOT_ISSUED  # reserved or failed
            signer = conn.execute(_SIGNER, key).first()
        # Signer certificates and issuing CAs are never revoked through the API (a
        # responder is short-lived and replaced, a CA is replaced at a ceremony).
        if signer is not None or (issuer_id, key["serial"]) in self._children():
            return GOOD
        return NOT_ISSUED

    def epochs(self) -> dict[str, int]:
        with self._db.read() as session:
            rows = session.execute(select(IssuerStatus.issuer_id, IssuerStatus.epoch)).all()
        return {issuer_id: epoch for issuer_id, epoch in rows}

    def needing_response(
        self, issuer_id: str, *, now: datetime, fresh_until: datetime, limit: int
    ) -> list[int]:
        stale = or_(OcspResponse.serial.is_(None), OcspResponse.next_update < fresh_until)
        with self._db.read() as session:
            serials = list(
                session.scalars(
                    _with_response(
                        issuer_id,
                        Certificate.status.in_(("issued", "revoked")),
                        Certificate.not_after > now,
                        stale,
                    ).limit(limit)
                )
            )
            # The few certificates of the other two kinds, checked one by one.
            others = set(
                session.scalars(
                    select(Signer.serial).where(
                        Signer.issuer_id == issuer_id, Signer.not_after > now
                    )
                )
            )
            others |= {
                serial
                for (parent, serial), not_after in self._children().items()
                if parent == issuer_id and not_after > now
            }
            fresh = set(
                session.scalars(
                    select(OcspResponse.serial).where(
                        OcspResponse.issuer_id == issuer_id,
                        OcspResponse.serial.in_(others),
                        OcspResponse.next_update >= fresh_until,
                    )
                )
            )
        serials += sorted(others - fresh)
        return [int(s, 16) for s in serials[:limit]]

    def revoked_since_response(self, issuer_id: str, *, since: datetime, limit: int) -> list[int]:
        with self._db.read() as session:
            serials = session.scalars(
                _with_response(
                    issuer_id,
                    Certificate.status == "revoked",
                    Certificate.revoked_at >= since,
                    or_(
                        OcspResponse.serial.is_(None),
                        OcspResponse.this_update <= Certificate.revoked_at,
                    ),
                ).limit(limit)
            )
            return [int(s, 16) for s in serials]

    def _children(self) -> dict[tuple[str, str], datetime]:
        with self._lock:
            if time.monotonic() - self._child_cas_loaded < _CA_RELOAD_SECONDS:
                return self._child_cas
            with self._db.read() as session:
                rows = session.execute(
                    select(Issuer.parent_id, Issuer.certificate).where(
                        Issuer.parent_id.is_not(None), Issuer.certificate.is_not(None)
                    )
                ).all()
            children: dict[tuple[str, str], datetime] = {}
            for parent, der in rows:
                cert = x509.Certificate.load(der)
                children[str(parent), serial_hex(cert.serial_number)] = cert.not_valid_after
            self._child_cas, self._child_cas_loaded = children, time.monotonic()
            return children
