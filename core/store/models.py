"""Database schema (SQLAlchemy 2). Alembic migrations under ``migrations/`` create it.

Serial numbers are stored as lowercase hex strings: they reach 159 bits, more than any
portable integer column holds, and hex sorts and compares exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way out, on every database (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None


class Base(DeclarativeBase):
    pass


class Issuer(Base):
    """A CA of ours: the root and each issuing CA. Its key lives in the token under key_label."""

    __tablename__ = "issuers"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    profile: Mapped[str] = mapped_column(String(64))
    key_label: Mapped[str] = mapped_column(String(128), unique=True)
    key_algorithm: Mapped[str] = mapped_column(String(16))
    certificate: Mapped[bytes | None] = mapped_column(LargeBinary)
    subject: Mapped[str] = mapped_column(Text)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("issuers.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ApiClient(Base):
    """A signing platform. Only the SHA-256 of its token is kept (the token has 256 bits
    of entropy, so a slow password hash would add latency and no security)."""

    __tablename__ = "api_clients"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    profiles: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The HMAC key that signs webhook callbacks to this platform, sealed (``client:<name>``).
    webhook_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    webhook_secret_wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)


class IdentityProof(Base):
    """An identity-proofing record (TS 119 461 ISS-8.5). Everything personal (the subject's
    attributes, the document and its number, the representative, the contact details) is in
    ``sealed`` (core.hsm.envelope, associated data ``proof:<id>``); the clear columns are what the
    work queue, the retention job and the issuance checks need, and nothing that names anyone.
    """

    __tablename__ = "identity_proofs"
    __table_args__ = (
        Index("ix_identity_proofs_queue", "status", "created_at"),
        Index("ix_identity_proofs_retain", "purged_at", "retain_until"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    client_id: Mapped[int | None] = mapped_column(ForeignKey("api_clients.id"))
    # Who submitted it ("client:<name>", "officer:<name>"): an officer never approves their own.
    submitted_by: Mapped[str] = mapped_column(String(128))
    subject_kind: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # pending | verified | rejected | purged
    sealed: Mapped[bytes | None] = mapped_column(LargeBinary)  # None once purged
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The identity document's expiry: bounds usable_until without opening the record.
    document_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    # Who approved it: [{"by": "officer:alice", "at": iso}]; a profile may need two (four-eyes).
    approvals: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    # Past this instant the proof may not be used to issue (document expiry, max age).
    usable_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # EN 319 411-1 OVR-6.4.6-01: 7 years after the last certificate relying on it expires
    # (after its creation when none was issued); recomputed at every issuance.
    retain_until: Mapped[datetime] = mapped_column(UtcDateTime)
    # A legal hold suspends the retention purge (litigation, a court order).
    legal_hold: Mapped[str | None] = mapped_column(Text)
    purged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The platform's callback for the officer's decision (signed with the client's secret).
    webhook_url: Mapped[str | None] = mapped_column(String(512))


class ProofTerm(Base):
    """Blind search terms of a proof (core.hsm.envelope.Sealer.term): HMACs of its normalised name,
    e-mail and organisation identifier, so officers find a record without a clear index."""

    __tablename__ = "proof_terms"
    __table_args__ = (Index("ix_proof_terms_term", "term"),)
    proof_id: Mapped[str] = mapped_column(ForeignKey("identity_proofs.id"), primary_key=True)
    term: Mapped[str] = mapped_column(String(64), primary_key=True)


class EvidenceFile(Base):
    """An uploaded evidence file (document image, company extract, mandate), sealed like its
    proof (associated data ``evidence:<proof id>:<id>``)."""

    __tablename__ = "evidence_files"
    __table_args__ = (Index("ix_evidence_files_proof", "proof_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    proof_id: Mapped[str] = mapped_column(ForeignKey("identity_proofs.id"))
    kind: Mapped[str] = mapped_column(String(32))  # document-front, company-extract, mandate...
    media_type: Mapped[str] = mapped_column(String(64))  # from the content, not the name
    size: Mapped[int] = mapped_column(Integer)
    sealed: Mapped[bytes | None] = mapped_column(LargeBinary)  # None once purged
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    uploaded_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class WebhookDelivery(Base):
    """A decision to tell a platform about, retried until its endpoint answers 2xx."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "delivered_at", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    proof_id: Mapped[str] = mapped_column(ForeignKey("identity_proofs.id"))
    url: Mapped[str] = mapped_column(String(512))
    payload: Mapped[bytes] = mapped_column(LargeBinary)  # the exact JSON body that is signed
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Officer(Base):
    """A person with an account on the officer (/ra/admin) or auditor (/audit) UI: password
    (argon2id hash) and TOTP at every login. The TOTP secret is sealed (``officer:<name>``)."""

    __tablename__ = "officers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # ra-officer | auditor | admin
    password_hash: Mapped[str] = mapped_column(String(255))
    totp_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    totp_wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    # The last TOTP time step accepted: a code is never accepted twice (replay).
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    failed_logins: Mapped[int] = mapped_column(Integer)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class OfficerSession(Base):
    """A logged-in browser: only the SHA-256 of its cookie value is kept, so a database
    reader cannot take a session over; expiry is enforced here, not by the cookie."""

    __tablename__ = "officer_sessions"
    __table_args__ = (Index("ix_officer_sessions_officer", "officer_id"),)
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    officer_id: Mapped[int] = mapped_column(ForeignKey("officers.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Certificate(Base):
    """Every serial ever reserved. A row exists before the HSM signs (status "reserved"),
    so a crash between signing and storing leaves a visible reserved row, never an
    unrecorded certificate."""

    __tablename__ = "certificates"
    __table_args__ = (
        UniqueConstraint("issuer_id", "serial", name="uq_certificates_issuer_serial"),
        Index("ix_certificates_proof", "proof_id"),
        Index("ix_certificates_status", "issuer_id", "status"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id"))
    serial: Mapped[str] = mapped_column(String(40))
    profile: Mapped[str] = mapped_column(String(64))
    # reserved | issued | revoked | failed | abandoned (ca/leftovers.py)
    status: Mapped[str] = mapped_column(String(16))
    proof_id: Mapped[str | None] = mapped_column(ForeignKey("identity_proofs.id"))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("api_clients.id"))
    subject: Mapped[str] = mapped_column(Text)
    tbs: Mapped[bytes] = mapped_column(LargeBinary)
    der: Mapped[bytes | None] = mapped_column(LargeBinary)
    not_before: Mapped[datetime] = mapped_column(UtcDateTime)
    not_after: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revocation_reason: Mapped[str | None] = mapped_column(String(32))
    invalidity_date: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The CRL partition named in the certificate's CRL distribution point (None: the full CRL).
    crl_shard: Mapped[int | None] = mapped_column(Integer)


class AuditEvent(Base):
    """Append-only, hash-chained: hash = SHA-256(prev_hash || canonical JSON of the event)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        # One index per auditor filter, each ending in seq: a filtered list pages by seq
        # (keyset) straight from the index.
        Index("ix_audit_events_action", "action", "seq"),
        Index("ix_audit_events_at", "at", "seq"),
        Index("ix_audit_events_actor", "actor", "seq"),
        Index("ix_audit_events_profile", "profile", "seq"),
        Index("ix_audit_events_serial", "serial", "seq"),
        Index("ix_audit_events_proof", "proof_id", "seq"),
        Index("ix_audit_events_stats", "action", "profile", "at"),
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # Copies of details["profile"], ["serial"], ["proof"] for the filters; not hashed, and
    # checked against the hashed details by verification.
    profile: Mapped[str | None] = mapped_column(String(64))
    serial: Mapped[str | None] = mapped_column(String(40))
    proof_id: Mapped[str | None] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A signed, timestamped Merkle checkpoint (RFC 9162 tree hash) of the first
    ``tree_size`` audit events: ``statement`` is the exact signed bytes, ``signature`` the
    audit key's ECDSA signature over them, ``timestamp_token`` an RFC 3161 token over the
    signature from our TSA."""

    __tablename__ = "audit_checkpoints"
    __table_args__ = (UniqueConstraint("tree_size", name="uq_audit_checkpoints_tree_size"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tree_size: Mapped[int] = mapped_column(BigInteger)
    root_hash: Mapped[str] = mapped_column(String(64))
    head_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    statement: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    key_label: Mapped[str] = mapped_column(String(128))
    signer_id: Mapped[int | None] = mapped_column(ForeignKey("signers.id"))
    timestamp_token: Mapped[bytes] = mapped_column(LargeBinary)


class AuditHead(Base):
    """One row: the chain's head. Appending updates it first, which takes the row (PostgreSQL)
    or database (SQLite) write lock, so concurrent appenders queue instead of forking the chain."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class Signer(Base):
    """A delegated signing certificate of ours (a TSU, an OCSP responder), its key in the token.

    Several rows per (kind, issuer) accumulate over renewals; the newest valid one signs.
    """

    __tablename__ = "signers"
    __table_args__ = (Index("ix_signers_kind_issuer", "kind", "issuer_id", "not_after"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # ProfileKind value: "tsu", "ocsp-responder"
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id"))
    key_label: Mapped[str] = mapped_column(String(128))
    key_algorithm: Mapped[str] = mapped_column(String(16))
    serial: Mapped[str] = mapped_column(String(40))
    certificate: Mapped[bytes] = mapped_column(LargeBinary)
    not_before: Mapped[datetime] = mapped_column(UtcDateTime)
    not_after: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class IssuerStatus(Base):
    """Per CA, a counter bumped in the same transaction as every revocation: OCSP caches and
    the CRL publisher compare it with what they last saw to act within a second."""

    __tablename__ = "issuer_status"
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id"), primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Timestamp(Base):
    """Every RFC 3161 token issued (what an auditor lists), written in batches."""

    __tablename__ = "timestamps"
    __table_args__ = (Index("ix_timestamps_gen_time", "gen_time"),)
    serial: Mapped[str] = mapped_column(String(40), primary_key=True)  # hex, unique per TSA
    gen_time: Mapped[datetime] = mapped_column(UtcDateTime)
    hash_algorithm: Mapped[str] = mapped_column(String(16))
    imprint: Mapped[str] = mapped_column(String(128))  # hex
    policy: Mapped[str] = mapped_column(String(128))
    client: Mapped[str | None] = mapped_column(String(64))
    signer_id: Mapped[int] = mapped_column(ForeignKey("signers.id"))


class Crl(Base):
    """Every CRL ever published, kept for the auditors; the newest per (issuer, shard) is served."""

    __tablename__ = "crls"
    __table_args__ = (
        UniqueConstraint("issuer_id", "shard", "number", name="uq_crls_issuer_shard_number"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id"))
    shard: Mapped[int] = mapped_column(Integer)  # -1: the full CRL; 0..N-1: a partition
    number: Mapped[int] = mapped_column(BigInteger)
    this_update: Mapped[datetime] = mapped_column(UtcDateTime)
    next_update: Mapped[datetime] = mapped_column(UtcDateTime)
    entries: Mapped[int] = mapped_column(Integer)
    status_epoch: Mapped[int] = mapped_column(BigInteger)  # IssuerStatus.epoch it reflects
    der: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class OcspResponse(Base):
    """Pre-signed OCSP responses (no nonce), one per CertID hash (SHA-1, SHA-256) stored
    together in ``der`` as a DER SEQUENCE OF OCSPResponse. Written by the OCSP side only: the
    engine serves a row only while it states the current status, and re-signs it after a
    revocation (ocsp/jobs.py)."""

    __tablename__ = "ocsp_responses"
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id"), primary_key=True)
    serial: Mapped[str] = mapped_column(String(40), primary_key=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    this_update: Mapped[datetime] = mapped_column(UtcDateTime)
    next_update: Mapped[datetime] = mapped_column(UtcDateTime)


class JobLock(Base):
    """Cluster-wide lease for a scheduled job: one instance runs it, the others skip.
    Works the same on SQLite and PostgreSQL (a lease row, taken by a conditional UPDATE)."""

    __tablename__ = "job_locks"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Credential(Base):
    """A subscriber key generated in our token, used only through remote signing (CSC API).
    The row is written as soon as the key exists ("pending"), so a key whose issuance then
    fails is never unrecorded: it is destroyed at once, or left "unused" for the clean-up."""

    __tablename__ = "credentials"
    __table_args__ = (Index("ix_credentials_client", "client_id"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("api_clients.id"))
    certificate_id: Mapped[int | None] = mapped_column(ForeignKey("certificates.id"))
    key_label: Mapped[str] = mapped_column(String(128), unique=True)
    key_algorithm: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # pending | active | unused | destroyed
    scal: Mapped[int] = mapped_column(Integer)  # CSC "SCAL1" / "SCAL2" (sole control)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    destroyed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class OneTimeCode(Base):
    """An OTP sent to a credential's owner (sole control, EN 419 241-1 SCAL2): only its hash
    is kept; it works once, before ``expires_at``, and dies after a few wrong tries."""

    __tablename__ = "otps"
    __table_args__ = (Index("ix_otps_credential", "credential_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    credential_id: Mapped[str] = mapped_column(ForeignKey("credentials.id"))
    code_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SignatureActivation(Base):
    """A SAD (CSC credentials/authorize): bound to one credential and to the exact hashes
    (``hashes_digest``, SHA-256 over them in order) and their count; single use. Only the
    SAD's hash is kept."""

    __tablename__ = "sads"
    sad_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    credential_id: Mapped[str] = mapped_column(ForeignKey("credentials.id"))
    hashes_digest: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
