"""The certification authority engine: issuance and lookup.

One pipeline for every profile, in numbered steps. The engine knows nothing of HTTP; it
takes ``now``. It writes certificate rows only: a key generated in our token belongs to
the key custodian (the signing service), the proof record's retention to the RA's
listeners (``pki.custody``); revocation is ``pki.revocation``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import x509 as ax509
from cryptography import x509
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit, metrics
from core.accounts.clients import Client
from core.errors import ErrorKind, SceauError
from core.store.models import Certificate, IdentityProof
from pki.context import PkiContext
from pki.csr import check_csr
from pki.custody import IssuanceListener, KeyCustodian, NewKey
from pki.issuers import LoadedIssuer
from pki.lints.prelint import lint_tbs
from pki.profiles import KeyOrigin, Profile, ProofMethod, SubjectKind
from pki.proofs import open_record, owned_proof
from pki.revocation import (
    CertificateRecord,
    append_certificate_event,
    certificate_record,
    find_certificate,
    serial_hex,
)
from pki.subject import subject_emails, subject_name
from pki.tbs import TbsRequest, assemble, build_tbs

log = logging.getLogger(__name__)

SERIAL_ATTEMPTS = 3


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
class Draft:
    """One issuance between lint and signature: what the reservation records and what the
    signature and the audit event need."""

    client: Client
    profile: Profile
    proof_id: str
    issuer: LoadedIssuer
    serial: int
    shard: int | None
    tbs: ax509.TbsCertificate
    tbs_der: bytes
    now: datetime
    key: NewKey | None  # the key generated in our token, if the subject sent no CSR

    @property
    def subject(self) -> str:
        return str(self.tbs["subject"].human_friendly)

    @property
    def not_before(self) -> datetime:
        return self.tbs["validity"]["not_before"].native  # type: ignore[no-any-return]

    @property
    def not_after(self) -> datetime:
        return self.tbs["validity"]["not_after"].native  # type: ignore[no-any-return]

    @property
    def credential_id(self) -> str | None:
        return self.key.credential_id if self.key is not None else None

    def append_event(self, session: Session, action: str, **details: object) -> None:
        """A ``certificate.*`` event of this issuance, by its client at its time."""
        append_certificate_event(
            session,
            action,
            serial_hex(self.serial),
            self.issuer.id,
            actor=self.client.actor,
            at=self.now,
            **details,
        )


class CertificateAuthority:
    def __init__(
        self,
        ctx: PkiContext,
        custodian: KeyCustodian,
        listeners: Sequence[IssuanceListener] = (),
    ) -> None:
        self.config = ctx.config
        self.sealer = ctx.sealer
        self.db = ctx.db
        self.keys = ctx.keys
        self.profiles = ctx.profiles
        self.issuers = ctx.issuers
        self.urls = ctx.urls
        self.custodian = custodian
        self.listeners = tuple(listeners)
        self._accepted_findings = frozenset(ctx.config.lint.accept_findings)

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
            self.custodian.check_reachable(profile, open_record(self.sealer, proof)["subject"])
            key = self.custodian.create(client, profile, now)
            try:
                issued = self._issue_on(client, profile, proof, key, now)
            except BaseException:
                # No orphan: the key of a certificate that was never issued goes at once.
                self.custodian.discard(client, key.credential_id, now)
                raise
            return issued
        if KeyOrigin.CSR not in profile.key_origins:
            raise SceauError(
                ErrorKind.INVALID,
                f"profile {profile.id} accepts only keys generated in our HSM "
                "(QSCD, sole control); omit the csr",
            )
        checked = check_csr(csr_pem, profile)
        # 3. The identity proof: the client's own, verified, unexpired, accepted by the profile.
        proof = self._usable_proof(client, profile, proof_id, now)
        return self._issue_on(client, profile, proof, checked.spki_der, now)

    def _issue_on(
        self,
        client: Client,
        profile: Profile,
        proof: IdentityProof,
        subject_key: bytes | NewKey,  # the CSR's SubjectPublicKeyInfo, or a key of our token
        now: datetime,
    ) -> IssuedCertificate:
        key = subject_key if isinstance(subject_key, NewKey) else None
        spki_der = subject_key.spki_der if isinstance(subject_key, NewKey) else subject_key
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
            draft = Draft(client, profile, proof.id, issuer, serial, shard, tbs, tbs_der, now, key)
            try:
                row_id = self._reserve(draft)
            except IntegrityError:
                continue  # a 159-bit collision: draw again
            # 6. Sign in the HSM. 7. Store as issued and audit, in one transaction.
            return self._sign_and_store(row_id, draft)
        raise SceauError(ErrorKind.CONFLICT, "could not reserve a unique serial number")

    def _usable_proof(
        self, client: Client, profile: Profile, proof_id: str, now: datetime
    ) -> IdentityProof:
        with self.db.read() as session:
            proof = owned_proof(session, client.id, proof_id)
        if proof is None:
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

    def _reserve(self, draft: Draft) -> int:
        with self.db.write() as session:
            row = Certificate(
                issuer_id=draft.issuer.id,
                serial=serial_hex(draft.serial),
                profile=draft.profile.id,
                status="reserved",
                proof_id=draft.proof_id,
                client_id=draft.client.id,
                subject=draft.subject,
                tbs=draft.tbs_der,
                der=None,
                not_before=draft.not_before,
                not_after=draft.not_after,
                created_at=draft.now,
                crl_shard=draft.shard,
            )
            session.add(row)
            session.flush()
            return row.id

    def _sign_and_store(self, row_id: int, draft: Draft) -> IssuedCertificate:
        issuer, serial = draft.issuer, serial_hex(draft.serial)
        try:
            signature = self.keys.sign(issuer.key_label, draft.tbs_der, issuer.info.scheme)
        except SceauError:
            with self.db.write() as session:
                session.execute(
                    update(Certificate).where(Certificate.id == row_id).values(status="failed")
                )
                draft.append_event(session, "certificate.failed", reason="HSM signature failed")
            raise
        der = assemble(draft.tbs_der, issuer.info.scheme, signature)

        # Lock order (pki.revocation): the certificate row, the rows of the listeners and
        # the custodian, the audit head last.
        def store(session: Session) -> None:
            session.execute(
                update(Certificate).where(Certificate.id == row_id).values(status="issued", der=der)
            )
            for listener in self.listeners:
                listener(session, draft.proof_id, draft.not_after)
            if draft.key is not None:
                self.custodian.activate(session, draft.key.credential_id, row_id)
            draft.append_event(
                session,
                "certificate.issued",
                profile=draft.profile.id,
                proof=draft.proof_id,
                subject=draft.subject,
                not_after=draft.not_after.isoformat(),
                credential=draft.credential_id,
            )

        # transact(), not write(): the certificate is signed already, so a transaction the
        # database aborts for a deadlock or a serialization failure is run again (its body
        # touches nothing outside the session). Answered 503 instead, it left the signed
        # certificate unrecorded and its row "reserved" (tests/test_concurrency.py).
        self.db.transact(store)
        metrics.CERTIFICATES_ISSUED.labels(profile=draft.profile.id).inc()
        return IssuedCertificate(
            serial=serial,
            issuer=issuer.id,
            profile=draft.profile.id,
            certificate=der,
            chain=self.issuers.chain(issuer.id),
            not_before=draft.not_before,
            not_after=draft.not_after,
            credential_id=draft.credential_id,
        )

    # -- lookup ---------------------------------------------------------------------------

    def lookup(self, client: Client, serial: str) -> CertificateRecord:
        with self.db.read() as session:
            return certificate_record(find_certificate(session, serial, client_id=client.id))
