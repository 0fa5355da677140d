"""The certification authority engine: issuance, revocation, lookup.

One pipeline for every profile. The engine knows nothing of HTTP; it takes ``now``.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from ca import audit, metrics
from ca.clients import Client
from ca.config import SceauConfig
from ca.csr import check_csr
from ca.errors import ErrorKind, SceauError
from ca.hsm import KeyStore
from ca.issuers import IssuerRegistry, LoadedIssuer
from ca.lints.prelint import lint_tbs
from ca.profiles import KeyOrigin, Profile, ProfileSet, ProofMethod, SubjectKind
from ca.proofs import open_record, retention_end
from ca.sealing import Sealer
from ca.store.db import Database
from ca.store.models import Certificate, Credential, IdentityProof, IssuerStatus, OcspResponse
from ca.subject import subject_emails, subject_name
from ca.tbs import TbsRequest, Urls, assemble, build_tbs

log = logging.getLogger(__name__)

SERIAL_ATTEMPTS = 3

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
class IssuedCertificate:
    serial: str
    issuer: str
    profile: str
    certificate: bytes
    chain: list[bytes]
    not_before: datetime
    not_after: datetime
    credential_id: str | None = None  # set when the key was generated in our HSM


@dataclass(frozen=True)
class NewCredential:
    """A subscriber key just generated in the token, not yet certified."""

    id: str
    key_label: str
    spki_der: bytes


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


def credential_key_label(credential_id: str) -> str:
    """The token label of a credential's key: found from the credential id alone."""
    return f"subscriber-{credential_id}"


def serial_hex(serial: int) -> str:
    return format(serial, "x")


class CertificateAuthority:
    def __init__(
        self,
        config: SceauConfig,
        db: Database,
        keys: KeyStore,
        profiles: ProfileSet,
        sealer: Sealer,
    ) -> None:
        self.config = config
        self.sealer = sealer
        self.db = db
        self.keys = keys
        self.profiles = profiles
        self.issuers = IssuerRegistry(db)
        self.urls = Urls(config.service.base_url.rstrip("/"), config.service.documents_base)
        self._accepted_findings = frozenset(config.lint.accept_findings)

    # -- issuance -----------------------------------------------------------------------

    def issue(
        self, client: Client, profile_id: str, proof_id: str, csr_pem: str | None, *, now: datetime
    ) -> IssuedCertificate:
        now = now.replace(microsecond=0)
        # 1. Authorize the caller for the profile.
        profile = self.profiles.get(profile_id)
        client.require_profile(profile.id)
        # 2. The subject key: a CSR proves possession; without one, a profile that allows
        # it gets a key generated in our token, used later through remote signing.
        if csr_pem is None:
            if KeyOrigin.HSM not in profile.key_origins:
                raise SceauError(ErrorKind.INVALID, "csr is required")
            # 3. The identity proof, checked before a key is generated for nothing.
            proof = self._usable_proof(client, profile, proof_id, now)
            self._check_otp_reachable(profile, proof)
            credential = self._new_credential(client, profile, now)
            try:
                issued = self._issue_on(
                    client, profile, proof, credential.spki_der, now, credential
                )
            except BaseException:
                # No orphan: the key of a certificate that was never issued goes at once.
                self._discard_credential(client, credential, now)
                raise
            return issued
        if KeyOrigin.CSR not in profile.key_origins:
            raise SceauError(
                ErrorKind.INVALID,
                f"profile {profile.id} accepts only keys generated in our HSM "
                "(QSCD, sole control); omit the csr",
            )
        key = check_csr(csr_pem, profile)
        # 3. The identity proof: the client's own, verified, unexpired, accepted by the profile.
        proof = self._usable_proof(client, profile, proof_id, now)
        return self._issue_on(client, profile, proof, key.spki_der, now, None)

    def _issue_on(
        self,
        client: Client,
        profile: Profile,
        proof: IdentityProof,
        spki_der: bytes,
        now: datetime,
        credential: NewCredential | None,
    ) -> IssuedCertificate:
        attributes = open_record(self.sealer, proof)["subject"]
        subject = subject_name(SubjectKind(proof.subject_kind), proof.id, attributes)
        issuer = self.issuers.get(profile.issuer)
        shards = self.config.crl.shards
        for _attempt in range(SERIAL_ATTEMPTS):
            serial = x509.random_serial_number()
            # The serial is uniformly random, so its residue spreads certificates evenly.
            shard = serial % shards if shards > 1 else None
            # 4. Build the TBS from profile and proof; lint exactly these bytes.
            tbs = build_tbs(
                TbsRequest(
                    profile=profile,
                    subject=subject,
                    spki_der=spki_der,
                    serial=serial,
                    not_before=now,
                    policy_oids=profile.policy_oid_list(self.config.ca.policy_arc),
                    issuer=issuer.info,
                    subject_alt_emails=subject_emails(attributes)
                    if profile.subject_kind is SubjectKind.NATURAL
                    else (),
                    crl_shard=shard,
                ),
                self.urls,
            )
            tbs_der = bytes(tbs.dump())
            self._lint_or_refuse(tbs_der, profile, client, proof.id, now)
            # 5. Reserve the serial with the TBS, committed before the HSM signs.
            try:
                row_id = self._reserve(
                    client, profile, issuer, proof.id, serial, shard, tbs, tbs_der, now
                )
            except IntegrityError:
                continue  # a 159-bit collision: draw again
            # 6. Sign in the HSM. 7. Store as issued and audit, in one transaction.
            return self._sign_and_store(
                row_id, client, profile, issuer, proof.id, serial, tbs, tbs_der, now, credential
            )
        raise SceauError(ErrorKind.CONFLICT, "could not reserve a unique serial number")

    def _check_otp_reachable(self, profile: Profile, proof: IdentityProof) -> None:
        """A qualified (SCAL2) key signs only after its owner's one-time code: refuse to
        create one whose owner the configured OTP channel cannot reach ([signing])."""
        field = self.config.signing.otp_address
        if not profile.qscd or field is None:
            return
        if not open_record(self.sealer, proof)["subject"].get(field):
            raise SceauError(
                ErrorKind.PROOF_NOT_USABLE,
                f"profile {profile.id} keys sign only after a one-time code sent by "
                f"{self.config.signing.otp_channel}: identity proof {proof.id} has no "
                f"subject.{field} to send it to",
            )

    def _new_credential(self, client: Client, profile: Profile, now: datetime) -> NewCredential:
        """Generate the subject's key pair in the token (sensitive, never extractable) and
        record it at once, before anything else can fail."""
        algorithm = profile.hsm_key_algorithm
        if algorithm is None:  # ProfileSet refuses an hsm profile without one; for mypy
            raise SceauError(ErrorKind.INVALID, f"profile {profile.id} has no hsm_key_algorithm")
        credential_id = "cred-" + secrets.token_hex(16)
        label = credential_key_label(credential_id)
        public_key = self.keys.generate(label, algorithm)
        with self.db.write() as session:
            session.add(
                Credential(
                    id=credential_id,
                    client_id=client.id,
                    certificate_id=None,
                    key_label=label,
                    key_algorithm=algorithm.value,
                    status="pending",
                    # EN 419 241-1: a QSCD key needs sole control (SCAL2); the others may
                    # be used on the platform's own authority (SCAL1).
                    scal=2 if profile.qscd else 1,
                    created_at=now,
                    destroyed_at=None,
                )
            )
        spki = public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return NewCredential(credential_id, label, spki)

    def _discard_credential(self, client: Client, credential: NewCredential, now: datetime) -> None:
        """Destroy the key of a failed issuance; if the token refuses, the row says
        "unused" so that the key clean-up finds it."""
        try:
            self.keys.destroy(credential.key_label)
            status, destroyed_at = "destroyed", now
        except SceauError:
            log.exception("could not destroy key of failed credential %s", credential.id)
            status, destroyed_at = "unused", None
        with self.db.write() as session:
            session.execute(
                update(Credential)
                .where(Credential.id == credential.id)
                .values(status=status, destroyed_at=destroyed_at)
            )
            audit.append(
                session,
                actor=client.actor,
                action="credential.discarded",
                at=now,
                details={"credential": credential.id, "key": status},
            )

    def _usable_proof(
        self, client: Client, profile: Profile, proof_id: str, now: datetime
    ) -> IdentityProof:
        with self.db.read() as session:
            proof = session.get(IdentityProof, proof_id)
        if proof is None or proof.client_id != client.id:
            raise SceauError(ErrorKind.NOT_FOUND, f"no identity proof {proof_id!r} for this client")
        if proof.status != "verified":
            raise SceauError(
                ErrorKind.PROOF_NOT_USABLE,
                f"identity proof {proof.id} is {proof.status}, not verified",
            )
        if proof.usable_until is None or proof.usable_until <= now:
            raise SceauError(ErrorKind.PROOF_NOT_USABLE, f"identity proof {proof.id} has expired")
        if proof.subject_kind != profile.subject_kind:
            raise SceauError(
                ErrorKind.PROOF_NOT_USABLE,
                f"profile {profile.id} is for a {profile.subject_kind} person, the "
                f"proof for a {proof.subject_kind} one",
            )
        if ProofMethod(proof.method) not in profile.identity_methods:
            raise SceauError(
                ErrorKind.PROOF_NOT_USABLE,
                f"profile {profile.id} does not accept {proof.method} identity proofs",
            )
        approvers = {a["by"] for a in proof.approvals}
        if proof.method != ProofMethod.DELEGATED and len(approvers) < profile.approvals_required:
            raise SceauError(
                ErrorKind.PROOF_NOT_USABLE,
                f"profile {profile.id} needs {profile.approvals_required} officer "
                f"approvals, the proof has {len(approvers)}",
            )
        return proof

    def _lint_or_refuse(
        self, tbs_der: bytes, profile: Profile, client: Client, proof_id: str, now: datetime
    ) -> None:
        findings = lint_tbs(tbs_der, profile, self._accepted_findings)
        if not findings:
            return
        with self.db.write() as session:
            audit.append(
                session,
                actor=client.actor,
                action="certificate.refused",
                at=now,
                details={
                    "profile": profile.id,
                    "proof": proof_id,
                    "findings": [str(f) for f in findings],
                },
            )
        metrics.ISSUANCE_REFUSED.labels(profile=profile.id).inc()
        raise SceauError(
            ErrorKind.LINT_FAILED,
            "the certificate would break its profile's rules: "
            + "; ".join(str(f) for f in findings),
        )

    def _reserve(
        self,
        client: Client,
        profile: Profile,
        issuer: LoadedIssuer,
        proof_id: str,
        serial: int,
        shard: int | None,
        tbs: ax509.TbsCertificate,
        tbs_der: bytes,
        now: datetime,
    ) -> int:
        validity = tbs["validity"]
        with self.db.write() as session:
            row = Certificate(
                issuer_id=issuer.id,
                serial=serial_hex(serial),
                profile=profile.id,
                status="reserved",
                proof_id=proof_id,
                client_id=client.id,
                subject=tbs["subject"].human_friendly,
                tbs=tbs_der,
                der=None,
                not_before=validity["not_before"].native,
                not_after=validity["not_after"].native,
                created_at=now,
                crl_shard=shard,
            )
            session.add(row)
            session.flush()
            return row.id

    def _sign_and_store(
        self,
        row_id: int,
        client: Client,
        profile: Profile,
        issuer: LoadedIssuer,
        proof_id: str,
        serial: int,
        tbs: ax509.TbsCertificate,
        tbs_der: bytes,
        now: datetime,
        credential: NewCredential | None,
    ) -> IssuedCertificate:
        try:
            signature = self.keys.sign(issuer.key_label, tbs_der, issuer.info.scheme)
        except SceauError:
            with self.db.write() as session:
                session.execute(
                    update(Certificate).where(Certificate.id == row_id).values(status="failed")
                )
                audit.append(
                    session,
                    actor=client.actor,
                    action="certificate.failed",
                    at=now,
                    details={
                        "serial": serial_hex(serial),
                        "issuer": issuer.id,
                        "reason": "HSM signature failed",
                    },
                )
            raise
        der = assemble(tbs_der, issuer.info.scheme, signature)
        not_before = tbs["validity"]["not_before"].native
        not_after = tbs["validity"]["not_after"].native
        with self.db.write() as session:
            session.execute(
                update(Certificate).where(Certificate.id == row_id).values(status="issued", der=der)
            )
            # EN 319 411-1 OVR-6.4.6-01: keep the registration record 7 years past the
            # expiry of the last certificate that relies on it.
            proof = session.get(IdentityProof, proof_id)
            keep_until = retention_end(not_after, self.config.registration.retention_years)
            if proof is not None and proof.retain_until < keep_until:
                proof.retain_until = keep_until
            if credential is not None:
                session.execute(
                    update(Credential)
                    .where(Credential.id == credential.id)
                    .values(certificate_id=row_id, status="active")
                )
            audit.append(
                session,
                actor=client.actor,
                action="certificate.issued",
                at=now,
                details={
                    "serial": serial_hex(serial),
                    "issuer": issuer.id,
                    "profile": profile.id,
                    "proof": proof_id,
                    "subject": tbs["subject"].human_friendly,
                    "not_after": not_after.isoformat(),
                    "credential": credential.id if credential is not None else None,
                },
            )
        metrics.CERTIFICATES_ISSUED.labels(profile=profile.id).inc()
        return IssuedCertificate(
            serial=serial_hex(serial),
            issuer=issuer.id,
            profile=profile.id,
            certificate=der,
            chain=self.issuers.chain(issuer.id),
            not_before=not_before,
            not_after=not_after,
            credential_id=credential.id if credential is not None else None,
        )

    # -- lookup and revocation --------------------------------------------------------------

    def _row(self, session: Any, client: Client, serial: str) -> Certificate:
        serial = _normalise_serial(serial)
        row = session.scalars(
            select(Certificate).where(
                Certificate.serial == serial, Certificate.client_id == client.id
            )
        ).first()
        if row is None or row.status in {"reserved", "failed"}:
            raise SceauError(ErrorKind.NOT_FOUND, f"no certificate with serial {serial}")
        return row  # type: ignore[no-any-return]

    def lookup(self, client: Client, serial: str) -> CertificateRecord:
        with self.db.read() as session:
            return _record(self._row(session, client, serial))

    def revoke(
        self,
        client: Client,
        serial: str,
        reason: str,
        invalidity_date: datetime | None,
        *,
        now: datetime,
    ) -> CertificateRecord:
        if reason not in REVOCATION_REASONS:
            raise SceauError(
                ErrorKind.INVALID, f"reason must be one of {', '.join(REVOCATION_REASONS)}"
            )
        if invalidity_date is not None and invalidity_date > now:
            raise SceauError(ErrorKind.INVALID, "invalidity_date may not be in the future")
        with self.db.write() as session:
            row = self._row(session, client, serial)
            if row.status == "revoked":
                raise SceauError(
                    ErrorKind.CONFLICT,
                    f"certificate {row.serial} was revoked at "
                    f"{row.revoked_at.isoformat() if row.revoked_at else '?'}",
                )
            if row.not_after <= now:
                raise SceauError(ErrorKind.CONFLICT, f"certificate {row.serial} has expired")
            row.status = "revoked"
            row.revoked_at = now
            row.revocation_reason = reason
            row.invalidity_date = invalidity_date
            # Status caches see the change at once: the pre-signed OCSP response goes, and
            # the issuer's status epoch moves (CRL publisher, OCSP in-process caches).
            session.execute(
                delete(OcspResponse).where(
                    OcspResponse.issuer_id == row.issuer_id, OcspResponse.serial == row.serial
                )
            )
            bump_status_epoch(session, row.issuer_id, now)
            audit.append(
                session,
                actor=client.actor,
                action="certificate.revoked",
                at=now,
                details={
                    "serial": row.serial,
                    "issuer": row.issuer_id,
                    "reason": reason,
                    "invalidity_date": invalidity_date.isoformat() if invalidity_date else None,
                },
            )
            record = _record(row)
        metrics.CERTIFICATES_REVOKED.labels(profile=record.profile).inc()
        return record


def _normalise_serial(serial: str) -> str:
    cleaned = serial.strip().lower().replace(":", "")
    if not cleaned or len(cleaned) > 40 or any(c not in "0123456789abcdef" for c in cleaned):
        raise SceauError(ErrorKind.NOT_FOUND, "serial must be hexadecimal, at most 20 octets")
    return cleaned.lstrip("0") or "0"


def _record(row: Certificate) -> CertificateRecord:
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


def bump_status_epoch(session: Any, issuer_id: str, now: datetime) -> None:
    status = session.get(IssuerStatus, issuer_id)
    if status is None:
        session.add(IssuerStatus(issuer_id=issuer_id, epoch=1, changed_at=now))
    else:
        status.epoch += 1
        status.changed_at = now
