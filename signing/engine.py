"""Remote signing with subscriber keys kept in our token (CSC API v2.0.0.2, standards.md 13).

The engine knows nothing of HTTP or JSON: it takes the typed requests of
``signing.requests`` (parsed, with the wire format gone, before a call reaches it) and
``now``. Every refusal is a ``CscError`` that the views render as CSC's
``{"error", "error_description"}``; its text never holds a secret.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from cryptography import x509
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from core import audit
from core.accounts.clients import Client
from core.config import SigningConfig
from core.errors import SceauError
from core.hsm.algorithms import KeyAlgorithm, Padding
from core.hsm.envelope import Sealer
from core.hsm.keystore import KeyNotFoundError, KeyStore
from core.store.db import Database
from core.store.models import (
    Certificate,
    Credential,
    IdentityProof,
    OneTimeCode,
    SignatureActivation,
)
from pki.issuers import IssuerRegistry
from pki.profiles import ProfileSet, SubjectKind
from pki.proofs import open_record
from signing.errors import CscError, invalid
from signing.otp import OtpDeliveryError, OtpRecipient, OtpSender
from signing.requests import (
    EC_SIGN_ALGORITHMS,
    MAX_HASHES,
    RSA_SIGN_ALGORITHMS,
    AuthorizeRequest,
    CredentialInfoRequest,
    SendOtpRequest,
    SignHashRequest,
)

log = logging.getLogger(__name__)

_CURVES = {"ec-p256": ("1.2.840.10045.3.1.7", 256), "ec-p384": ("1.3.132.0.34", 384)}


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _otp_hash(credential_id: str, code: str, expires_at: datetime) -> str:
    """A six-digit code has a million values: a fast hash in the database would give it away
    to anyone who reads the table. scrypt (~40 ms, 16 MiB) makes trying them all outlast
    the code's few minutes of life, and the salt (credential and expiry instant) makes
    every code's table its own."""
    salt = f"{credential_id}:{int(expires_at.timestamp() * 1_000_000)}".encode()
    return hashlib.scrypt(code.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32).hex()


def _hashes_digest(digests: Sequence[bytes]) -> str:
    """What a SAD is bound to: the exact hashes, in order (length-prefixed, so no two lists
    share a digest)."""
    return _sha256_hex(b"".join(len(d).to_bytes(2, "big") + d for d in digests))


@dataclass(frozen=True, eq=False)  # a service, compared by identity
class SigningEngine:
    """The collaborators a CSC call needs; the engine keeps no other state."""

    db: Database
    keys: KeyStore
    issuers: IssuerRegistry
    config: SigningConfig
    otp_sender: OtpSender
    sealer: Sealer
    profiles: ProfileSet | None = None  # None: credentials/info gives no signatureQualifier

    def credential_ids(self, client: Client) -> list[str]:
        with self.db.read() as session:
            rows = session.scalars(
                select(Credential.id)
                .where(Credential.client_id == client.id, Credential.status == "active")
                .order_by(Credential.created_at, Credential.id)
            ).all()
        return list(rows)

    def info(
        self, client: Client, request: CredentialInfoRequest, *, now: datetime
    ) -> dict[str, Any]:
        """CSC 11.5 credentials/info. ``certificates`` "none" | "single" (the default: the
        end-entity certificate) | "chain"; ``certInfo`` adds the certificate's fields.
        The authorisation description is always given: clients need it to know whether to
        ask their user for an OTP."""
        credential, cert = self._owned(client, request.credential_id)
        if cert.der is None:
            raise invalid("Invalid parameter credentialID")
        algorithm = KeyAlgorithm(credential.key_algorithm)
        key: dict[str, Any] = {"status": "enabled" if _valid(cert, now) else "disabled"}
        # The key's OID, then the combined OIDs signHash accepts as signAlgo (CSC's own
        # example lists ecdsa-with-SHA256; pyHanko picks its mechanism from this list).
        if algorithm.is_ec:
            curve, length = _CURVES.get(algorithm.value, ("1.3.132.0.35", 521))
            key.update(algo=EC_SIGN_ALGORITHMS, len=length, curve=curve)
        else:
            key.update(algo=RSA_SIGN_ALGORITHMS, len=algorithm.rsa_bits)
        cert_out: dict[str, Any] = {"status": _cert_status(cert, now)}
        if request.certificates != "none":
            chain = [cert.der]
            if request.certificates == "chain":
                chain.extend(self.issuers.chain(cert.issuer_id))
            cert_out["certificates"] = [base64.b64encode(c).decode() for c in chain]
        if request.cert_info:
            leaf = x509.load_der_x509_certificate(cert.der)
            cert_out.update(
                issuerDN=leaf.issuer.rfc4514_string(),
                serialNumber=format(leaf.serial_number, "x"),
                subjectDN=leaf.subject.rfc4514_string(),
                validFrom=leaf.not_valid_before_utc.strftime("%Y%m%d%H%M%SZ"),
                validTo=leaf.not_valid_after_utc.strftime("%Y%m%d%H%M%SZ"),
            )
        answer: dict[str, Any] = {
            "description": f"{cert.profile} {cert.subject}"[:255],
            "key": key,
            "cert": cert_out,
            "SCAL": str(credential.scal),
            "multisign": MAX_HASHES,
            "lang": "en-US",
        }
        qualifier = self._qualifier(cert.profile)
        if qualifier:
            answer["signatureQualifier"] = qualifier
        if credential.scal == 2:
            # SCAL2: an explicit credentials/authorize with the owner's OTP, which the
            # service generates and sends (credentials/sendOTP): CSC "online" OTP.
            otp = {
                "type": "OTP",
                "id": "otp",
                "format": "N",
                "label": "One-time code",
                "description": "Six digits sent to the credential's owner by sendOTP",
            }
            answer["auth"] = {"mode": "explicit", "expression": "otp", "objects": [otp]}
            # The same as CSC v1 clients read it (authMode, OTP {presence, type, ...}).
            answer["authMode"] = "explicit"
            answer["OTP"] = {
                "presence": "true",
                "type": "online",
                "format": "N",
                "label": otp["label"],
                "description": otp["description"],
                "ID": "otp",
                "provider": "sceau",
            }
        else:
            # SCAL1: the platform's token authorises each signHash.
            answer["auth"] = {"mode": "implicit"}
            answer["authMode"] = "implicit"
        return answer

    def _qualifier(self, profile_id: str) -> str | None:
        """CSC signatureQualifier: the eIDAS kind of signature the credential makes."""
        if self.profiles is None:
            return None
        try:
            profile = self.profiles.get(profile_id)
        except SceauError:
            return None
        legal = profile.subject_kind is SubjectKind.LEGAL
        if profile.qscd:
            return "eu_eidas_qeseal" if legal else "eu_eidas_qes"
        return "eu_eidas_aeseal" if legal else "eu_eidas_aes"

    # -- the calls that authorise or sign: every refusal is an audit event -------------

    def sign_hash(self, client: Client, request: SignHashRequest, *, now: datetime) -> list[bytes]:
        """CSC 11.9 signatures/signHash: one signature per hash, in their order. The hashes'
        lengths already match ``request.scheme``."""
        with self._refusals(client, "signatures/signHash", request.credential_id, now):
            key = self._signing_key(client, request.credential_id)
            # Lifecycle (EN 419 241-1): a revoked or expired certificate's key signs nothing,
            # checked on the row at every call, so a revocation takes effect at once.
            if not _valid(key, now):
                raise invalid(f"Signing certificate is {_cert_status(key, now)}")
            scheme = request.scheme
            if (scheme.padding is Padding.ECDSA) != KeyAlgorithm(key.key_algorithm).is_ec:
                raise invalid("Invalid parameter signAlgo: the credential's key cannot do it")
            digests = list(request.hashes)
            if key.scal == 2:
                # Sole control: the platform's token alone never signs with a qualified key.
                self._consume_sad(key.id, request.sad, digests, now)
            # CSC returns each signature as it would sit in a CMS SignerInfo: for ECDSA the DER
            # ECDSA-Sig-Value, as KeyStore.sign_digests gives it (what pyHanko's CSC client embeds).
            signatures = self.keys.sign_digests(key.key_label, digests, scheme)
            algorithm = f"{scheme.hash.value}-{scheme.padding.value}"
            self._record(
                client,
                "signing.sign_hash",
                now,
                {"credential": key.id, "hashes": len(digests), "algorithm": algorithm},
            )
            return signatures

    def send_otp(self, client: Client, request: SendOtpRequest, *, now: datetime) -> None:
        """CSC 11.7 credentials/sendOTP: a new code to the owner of a SCAL2 credential."""
        with self._refusals(client, "credentials/sendOTP", request.credential_id, now):
            credential, cert = self._scal2(
                client, request.credential_id, now, "this credential uses no OTP"
            )
            recipient = self._recipient(credential, cert)
            if not self.otp_sender.reachable(recipient):
                raise invalid(
                    f"No OTP can be sent: the credential's owner has no address for the "
                    f"{self.otp_sender.channel} OTP channel in their identity proof"
                )
            code = f"{secrets.randbelow(10**6):06d}"
            expires_at = now + timedelta(seconds=self.config.otp_ttl_seconds)
            code_hash = _otp_hash(credential.id, code, expires_at)
            with self.db.write() as session:
                # One live code per credential: a new one replaces the last, and its attempts
                # count afresh only because a new random code is as hard to guess.
                session.execute(
                    delete(OneTimeCode).where(OneTimeCode.credential_id == credential.id)
                )
                session.add(
                    OneTimeCode(
                        credential_id=credential.id,
                        code_hash=code_hash,
                        expires_at=expires_at,
                        attempts=0,
                        used_at=None,
                    )
                )
            try:
                self.otp_sender.send(recipient, code, self.config.otp_ttl_seconds)
            except OtpDeliveryError as exc:
                # No live code that nobody received: the owner asks again once the channel is back.
                log.warning("OTP for %s not sent: %s", credential.id, exc)
                with self.db.write() as session:
                    session.execute(
                        delete(OneTimeCode).where(OneTimeCode.credential_id == credential.id)
                    )
                raise CscError(
                    503,
                    "temporarily_unavailable",
                    f"The OTP could not be sent through the {self.otp_sender.channel} channel: "
                    "try again later",
                ) from None
            channel = self.otp_sender.channel
            self._record(
                client, "signing.otp_sent", now, {"credential": credential.id, "channel": channel}
            )

    def authorize(
        self, client: Client, request: AuthorizeRequest, *, now: datetime
    ) -> tuple[str, int]:
        """CSC 11.6 credentials/authorize: check the owner's OTP, then give a SAD bound to
        the credential, these hashes and their count (``numSignatures`` already counts
        them). Returns (SAD, seconds it lives)."""
        with self._refusals(client, "credentials/authorize", request.credential_id, now):
            credential, _ = self._scal2(
                client, request.credential_id, now, "a SCAL1 credential needs no SAD"
            )
            digests = request.hashes
            self._check_otp(client, credential, request.otp, now)
            sad = secrets.token_urlsafe(32)
            ttl = self.config.sad_ttl_seconds
            with self.db.write() as session:
                session.add(
                    SignatureActivation(
                        sad_hash=_sha256_hex(sad.encode()),
                        credential_id=credential.id,
                        hashes_digest=_hashes_digest(digests),
                        count=len(digests),
                        expires_at=now + timedelta(seconds=ttl),
                        used_at=None,
                    )
                )
                details = {"credential": credential.id, "hashes": len(digests)}
                self._record(client, "signing.authorized", now, details, session)
            return sad, ttl

    def refused(
        self, client: Client, call: str, credential_id: str | None, reason: str, *, now: datetime
    ) -> None:
        """Record a refusal: the call, the credential asked for (None: the request named
        none that could be read), the client, and the reason as answered. The reason texts
        never quote a hash, SAD or OTP, and none is stored."""
        details = {"call": call, "client": client.name, "reason": reason[:300]}
        if credential_id:
            details["credential"] = credential_id[:80]
        self._record(client, "signing.refused", now, details)

    def _record(
        self,
        client: Client,
        action: str,
        now: datetime,
        details: dict[str, Any],
        session: Session | None = None,
    ) -> None:
        """A ``signing.*`` event by ``client``: in ``session``'s transaction, as its last
        write (core.audit's lock order), or in a transaction of its own."""
        transaction = self.db.write() if session is None else contextlib.nullcontext(session)
        with transaction as writing:
            audit.append(writing, actor=client.actor, action=action, at=now, details=details)

    @contextlib.contextmanager
    def _refusals(
        self, client: Client, call: str, credential_id: str, now: datetime
    ) -> Iterator[None]:
        try:
            yield
        except CscError as exc:
            self.refused(client, call, credential_id, exc.description, now=now)
            raise

    def _recipient(self, credential: Credential, cert: Certificate) -> OtpRecipient:
        """Where the owner's codes go: the e-mail (or mobile) of the identity proof the
        certificate was issued on, read from its sealed record."""
        with self.db.read() as session:
            proof = session.get(IdentityProof, cert.proof_id) if cert.proof_id else None
        if proof is None:
            return OtpRecipient(credential.id)
        try:
            subject = open_record(self.sealer, proof).get("subject", {})
        except SceauError:  # purged at the end of retention: no address left
            return OtpRecipient(credential.id)
        email, mobile = subject.get("email"), subject.get("mobile")
        return OtpRecipient(
            credential.id,
            email if isinstance(email, str) and email else None,
            mobile if isinstance(mobile, str) and mobile else None,
        )

    def _check_otp(self, client: Client, credential: Credential, otp: str, now: datetime) -> None:
        with self.db.write() as session:
            row = session.scalars(
                select(OneTimeCode)
                .where(OneTimeCode.credential_id == credential.id)
                .with_for_update()
            ).first()
            failure = None
            if row is None or row.used_at is not None:
                failure = "no OTP pending: call credentials/sendOTP"
            elif row.attempts >= self.config.otp_max_attempts:
                failure = "OTP locked: too many wrong OTPs; call credentials/sendOTP for a new one"
            elif row.expires_at <= now:
                failure = "The OTP has expired: call credentials/sendOTP"
            elif not hmac.compare_digest(
                row.code_hash, _otp_hash(credential.id, otp, row.expires_at)
            ):
                row.attempts += 1
                failure = "The OTP is invalid"
            else:
                row.used_at = now
            details = {"credential": credential.id, "accepted": failure is None}
            self._record(client, "signing.otp_checked", now, details, session)
        if failure is not None:
            # CSC: a wrong code is invalid_otp (the user may type it again); a lock, like
            # CSC's "PIN locked", is invalid_request.
            error = "invalid_request" if failure.startswith("OTP locked") else "invalid_otp"
            raise CscError(400, error, failure)

    def _consume_sad(
        self, credential_id: str, sad: str | None, digests: Sequence[bytes], now: datetime
    ) -> None:
        """Spend the SAD before the token signs: it works once even if signing then fails."""
        if not sad:
            raise CscError(
                403,
                "access_denied",
                "Missing (or invalid type) string parameter SAD: a SCAL2 credential signs "
                "only with a SAD from credentials/authorize",
            )
        with self.db.write() as session:
            row = session.get(SignatureActivation, _sha256_hex(sad.encode()))
            failure = None
            if row is None or row.credential_id != credential_id:
                failure = "Invalid parameter SAD"
            elif row.used_at is not None:
                failure = "Invalid parameter SAD: it was already used"
            elif row.expires_at <= now:
                failure = "SAD expired"
            elif row.count != len(digests) or not hmac.compare_digest(
                row.hashes_digest, _hashes_digest(digests)
            ):
                failure = "Hash is not authorized by the SAD"
            else:
                # The conditional UPDATE makes two concurrent calls with one SAD sign once.
                spent = session.execute(
                    update(SignatureActivation)
                    .where(
                        SignatureActivation.sad_hash == row.sad_hash,
                        SignatureActivation.used_at.is_(None),
                    )
                    .values(used_at=now)
                )
                if spent.rowcount != 1:  # type: ignore[attr-defined]
                    failure = "Invalid parameter SAD: it was already used"
        if failure is not None:
            raise CscError(400, "invalid_request", failure)

    def destroy_retired_keys(self, now: datetime) -> int:
        """The scheduled clean-up: destroy the keys whose certificate was revoked or expired
        more than ``key_grace_days`` ago, and those of failed issuances ("unused", or
        "pending" for longer than the grace period). Returns how many were destroyed."""
        cutoff = now - timedelta(days=self.config.key_grace_days)
        with self.db.read() as session:
            retired = session.execute(
                select(Credential.id, Credential.key_label)
                .outerjoin(Certificate, Certificate.id == Credential.certificate_id)
                .where(
                    (Credential.status == "unused")
                    | ((Credential.status == "pending") & (Credential.created_at <= cutoff))
                    | (
                        (Credential.status == "active")
                        & (
                            (Certificate.not_after <= cutoff)
                            | (
                                (Certificate.status == "revoked")
                                & (Certificate.revoked_at <= cutoff)
                            )
                        )
                    )
                )
            ).all()
        destroyed = 0
        for credential_id, label in retired:
            # Already gone is fine: a crash after destroy, before the row was updated.
            with contextlib.suppress(KeyNotFoundError):
                self.keys.destroy(label)
            with self.db.write() as session:
                session.execute(
                    update(Credential)
                    .where(Credential.id == credential_id)
                    .values(status="destroyed", destroyed_at=now)
                )
                audit.append(
                    session,
                    actor="system:key-cleanup",
                    action="credential.destroyed",
                    at=now,
                    details={"credential": credential_id},
                )
            destroyed += 1
        return destroyed

    def _signing_key(self, client: Client, credential_id: str) -> _SigningKey:
        """The hot path of signHash: one SELECT of the columns it needs (no ORM objects),
        with the same answer as ``_owned`` for unknown, foreign or inactive credentials."""
        with self.db.read() as session:
            row = session.execute(
                select(
                    Credential.client_id,
                    Credential.status,
                    Credential.key_label,
                    Credential.key_algorithm,
                    Credential.scal,
                    Certificate.status,
                    Certificate.not_before,
                    Certificate.not_after,
                )
                .join(Certificate, Certificate.id == Credential.certificate_id)
                .where(Credential.id == credential_id)
            ).first()
        # Another client's credential is indistinguishable from an unknown one.
        if row is None or row[0] != client.id or row[1] != "active":
            raise invalid("Invalid parameter credentialID")
        return _SigningKey(credential_id, row[2], row[3], row[4], row[5], row[6], row[7])

    def _scal2(
        self, client: Client, credential_id: str, now: datetime, if_scal1: str
    ) -> tuple[Credential, Certificate]:
        """``_owned`` for the calls of sole control (sendOTP, authorize): a SCAL2 credential
        (else invalid, ``if_scal1`` saying why) whose certificate is valid now."""
        credential, cert = self._owned(client, credential_id)
        if credential.scal != 2:
            raise invalid(f"Invalid parameter credentialID: {if_scal1}")
        if not _valid(cert, now):
            raise invalid(f"Invalid credential: the certificate is {_cert_status(cert, now)}")
        return credential, cert

    def _owned(self, client: Client, credential_id: str) -> tuple[Credential, Certificate]:
        with self.db.read() as session:
            row = session.get(Credential, credential_id)
            # Another client's credential is indistinguishable from an unknown one.
            if row is None or row.client_id != client.id or row.certificate_id is None:
                raise invalid("Invalid parameter credentialID")
            cert = session.get(Certificate, row.certificate_id)
        if cert is None or row.status != "active":
            raise invalid("Invalid parameter credentialID")
        return row, cert


class _CertState(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def not_before(self) -> datetime: ...
    @property
    def not_after(self) -> datetime: ...


@dataclass(frozen=True)
class _SigningKey:
    """What signHash needs of a credential and its certificate, read in one query."""

    id: str
    key_label: str
    key_algorithm: str
    scal: int
    status: str  # the certificate's
    not_before: datetime
    not_after: datetime


def _valid(cert: _CertState, now: datetime) -> bool:
    return cert.status == "issued" and cert.not_before <= now < cert.not_after


def _cert_status(cert: _CertState, now: datetime) -> str:
    if cert.status == "revoked":
        return "revoked"
    if now >= cert.not_after:
        return "expired"
    return "valid" if cert.not_before <= now else "invalid"
