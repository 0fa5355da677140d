"""The responder engine: a DER OCSPRequest in, a DER OCSPResponse out. No HTTP here.

Which CA a CertID names (:class:`IssuerIndex`), which delegated responder signs for it
(:class:`Responders`), the status (a :class:`pki.status.StatusSource`), and the pre-signed
response of each certificate (:class:`ocsp.cache.PresignedStore`).
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from asn1crypto import x509

from core.hsm.keystore import KeyStore
from core.store.db import Database
from ocsp import der, response
from ocsp.cache import PresignedStore, StoredResponse
from ocsp.request import HASHES, CertId, OcspRejection, OcspRequest, ResponseStatus, parse_request
from pki.issuers import IssuerRegistry, cached_issuer
from pki.profiles import ProfileKind
from pki.revocation import serial_hex
from pki.signers import current_signer
from pki.status import CertState, CertStatus, StatusSource

# Each certificate has a pre-signed response per CertID hash of this tuple: SHA-1 for RFC
# 5019 clients (and OpenSSL's default), SHA-256 for RFC 9919 clients.
PRESIGNED_HASHES = ("sha1", "sha256")
# A new or renewed responder certificate, or a new CA, is seen within this many seconds.
_RELOAD_SECONDS = 60.0


@dataclass(frozen=True)
class IssuerKey:
    """One CA of ours as CertIDs name it."""

    id: str
    # SEQUENCE { hashAlgorithm (parameters NULL), issuerNameHash, issuerKeyHash } contents
    # for each pre-signed hash: a serial appended makes the CertID most clients send.
    cert_id_heads: dict[str, bytes]
    archive_cutoff: bytes  # singleExtension, from the CA certificate's notBefore


class IssuerIndex:
    """CertID (hash algorithm, issuerNameHash, issuerKeyHash) -> CA: RFC 6960 section
    4.1.1, the hash of the issuer's DN (DER) and of its subjectPublicKey BIT STRING value,
    recomputed with each supported algorithm."""

    def __init__(self, registry: IssuerRegistry) -> None:
        self._registry = registry
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, bytes, bytes], IssuerKey] = {}
        self._by_id: dict[str, IssuerKey] = {}
        self._loaded = float("-inf")

    def find(self, cert_id: CertId) -> IssuerKey | None:
        wanted = (cert_id.hash_algorithm, cert_id.issuer_name_hash, cert_id.issuer_key_hash)
        found = self._keys.get(wanted)
        if found is None and time.monotonic() - self._loaded >= _RELOAD_SECONDS:
            self._load()  # a CA created since (key ceremony), at most once a minute
            found = self._keys.get(wanted)
        return found

    def get(self, issuer_id: str) -> IssuerKey:
        return cached_issuer(issuer_id, lambda: self._by_id, self._load)

    def ids(self) -> list[str]:
        if time.monotonic() - self._loaded >= _RELOAD_SECONDS:
            self._load()
        return list(self._by_id)

    def _load(self) -> None:
        with self._lock:
            keys: dict[tuple[str, bytes, bytes], IssuerKey] = {}
            by_id: dict[str, IssuerKey] = {}
            for issuer in self._registry.all():
                cert = x509.Certificate.load(issuer.certificate)
                name = bytes(cert.subject.dump())
                key_bits = bytes(cert["tbs_certificate"]["subject_public_key_info"]["public_key"])
                hashes = {
                    algorithm: (
                        hashlib.new(hash_name, name, usedforsecurity=False).digest(),
                        hashlib.new(hash_name, key_bits, usedforsecurity=False).digest(),
                    )
                    for algorithm, (_, hash_name) in HASHES.items()
                }
                issuer_key = by_id[issuer.id] = IssuerKey(
                    id=issuer.id,
                    cert_id_heads={
                        algorithm: der.sequence(HASHES[algorithm][0], der.NULL)
                        + der.octet_string(hashes[algorithm][0])
                        + der.octet_string(hashes[algorithm][1])
                        for algorithm in PRESIGNED_HASHES
                    },
                    archive_cutoff=response.archive_cutoff_extension(cert.not_valid_before),
                )
                for algorithm, (name_hash, key_hash) in hashes.items():
                    keys[algorithm, name_hash, key_hash] = issuer_key
            self._keys, self._by_id = keys, by_id
            self._loaded = time.monotonic()


class Responders:
    """The current delegated responder of each CA, as this process signs with it."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._responders: dict[str, tuple[response.SigningResponder, float]] = {}

    def get(self, issuer_id: str, now: datetime) -> response.SigningResponder:
        cached = self._responders.get(issuer_id)
        if (
            cached is not None
            and time.monotonic() - cached[1] < _RELOAD_SECONDS
            and cached[0].not_before <= now < cached[0].not_after
        ):
            return cached[0]
        signer = current_signer(self._db, ProfileKind.OCSP_RESPONDER, issuer_id, now)
        if signer is None:
            raise OcspRejection(
                ResponseStatus.TRY_LATER,
                f"CA {issuer_id} has no valid OCSP responder certificate"
                " (`sceau init` creates it, the renewal job renews it)",
            )
        responder = response.SigningResponder.of(signer)
        self._responders[issuer_id] = (responder, time.monotonic())
        return responder

    def forget(self) -> None:
        """Reload at the next signature (after a renewal in this process)."""
        self._responders = {}


@dataclass(frozen=True)
class Answer:
    body: bytes  # DER OCSPResponse
    issuer_id: str
    source: str  # "database" (pre-signed) or "signed" (now)
    # Set when any client may be given this same answer until the response's midlife:
    # successful, no nonce, every certificate known. GET caching headers derive from them
    # (RFC 9919 section 6.2).
    this_update: datetime | None = None
    next_update: datetime | None = None


class Engine:
    def __init__(  # noqa: PLR0913 - keyword-only dependencies
        self,
        *,
        db: Database,
        keys: KeyStore,
        source: StatusSource,
        registry: IssuerRegistry,
        validity: timedelta,
        max_cert_ids: int,
    ) -> None:
        self.index = IssuerIndex(registry)
        self.responders = Responders(db)
        self.store = PresignedStore(db)
        self._keys = keys
        self.source = source
        self._validity = validity
        self._max_cert_ids = max_cert_ids

    def answer(self, request_der: bytes, *, now: datetime) -> Answer:
        """Raises OcspRejection for what gets an unsigned error response."""
        request = parse_request(request_der, max_cert_ids=self._max_cert_ids)
        issuer = self._issuer(request)
        now = now.replace(microsecond=0)  # GeneralizedTime without fraction (RFC 9919)
        if request.nonce is None and len(request.cert_ids) == 1:
            cert_id = request.cert_ids[0]
            if cert_id.hash_algorithm in issuer.cert_id_heads and cert_id.null_parameters:
                # The CertID is the one a pre-signed response carries.
                return self._presigned(issuer, cert_id, now)
        answers = [(c.dump(), self.source.status(issuer.id, c.serial)) for c in request.cert_ids]
        return self._sign(issuer, answers, now, nonce=request.nonce)

    def presign(self, issuer_id: str, serial: int, *, now: datetime) -> bool:
        """Sign and store the responses of one certificate (the scheduled job); False when
        there is no such certificate."""
        issuer = self.index.get(issuer_id)
        now = now.replace(microsecond=0)
        status = self.source.status(issuer_id, serial)
        if status.state is CertState.NOT_ISSUED:
            return False
        self._presign(issuer, serial, status, now)
        return True

    def stored_disagrees(self, issuer_id: str, serial: int) -> bool:
        """Whether the stored responses of a certificate are missing or state another
        status than the current one (the status changed since they were signed)."""
        stored = self.store.get(issuer_id, serial_hex(serial))
        if stored is None or not stored.responses:
            return True
        status = self.source.status(issuer_id, serial)
        return response.first_status(stored.responses[0]) != status.state.value

    def _issuer(self, request: OcspRequest) -> IssuerKey:
        found = [self.index.find(cert_id) for cert_id in request.cert_ids]
        issuers = {issuer.id: issuer for issuer in found if issuer is not None}
        if None in found:
            # RFC 9919 section 2.2.3: not capable of responding authoritatively.
            raise OcspRejection(ResponseStatus.UNAUTHORIZED, "CertID names no CA of ours")
        if len(issuers) > 1:
            # One response has one signer, and a delegated responder may sign only for the
            # CA that certified it (RFC 6960 section 4.2.2.2): certificates of two of our
            # CAs cannot be answered together, and leaving some out is not allowed either
            # (RFC 6960 section 4.2.2.3: a SingleResponse for each certificate requested).
            raise OcspRejection(
                ResponseStatus.UNAUTHORIZED, "CertIDs of different CAs in one request"
            )
        (issuer,) = issuers.values()
        return issuer

    def _presigned(self, issuer: IssuerKey, cert_id: CertId, now: datetime) -> Answer:
        status = self.source.status(issuer.id, cert_id.serial)
        if status.state is CertState.NOT_ISSUED:
            # Signed each time, never stored: anyone may ask for any serial.
            return self._sign(issuer, [(cert_id.dump(), status)], now, nonce=None)
        which = PRESIGNED_HASHES.index(cert_id.hash_algorithm)
        stored = self.store.get(issuer.id, serial_hex(cert_id.serial))
        # A row may predate a revocation that committed while it was being signed and
        # written: only a row that says what the status says is served.
        if (
            stored is not None
            and len(stored.responses) == len(PRESIGNED_HASHES)
            and stored.fresh(now)
            and response.first_status(stored.responses[which]) == status.state.value
        ):
            body = stored.responses[which]
            return Answer(body, issuer.id, "database", stored.this_update, stored.next_update)
        return self._presign(issuer, cert_id.serial, status, now)[which]

    def _presign(
        self, issuer: IssuerKey, serial: int, status: CertStatus, now: datetime
    ) -> list[Answer]:
        """Sign the response of each pre-signed CertID hash, store them, return them."""
        serial_der = der.integer(serial)
        answers = [
            self._sign(
                issuer,
                [(der.tlv(0x30, issuer.cert_id_heads[h] + serial_der), status)],
                now,
                nonce=None,
            )
            for h in PRESIGNED_HASHES
        ]
        this_update, next_update = answers[0].this_update, answers[0].next_update
        assert this_update is not None and next_update is not None
        stored = StoredResponse(tuple(a.body for a in answers), this_update, next_update)
        self.store.put(issuer.id, serial_hex(serial), stored)
        return answers

    def _sign(
        self,
        issuer: IssuerKey,
        answers: list[tuple[bytes, CertStatus]],
        now: datetime,
        *,
        nonce: bytes | None,
    ) -> Answer:
        responder = self.responders.get(issuer.id, now)
        # thisUpdate = producedAt = now; nextUpdate always present (RFC 9919 section 2.2.4),
        # never past the responder certificate, which clients check at use.
        next_update = min(now + self._validity, responder.not_after)
        singles = [
            response.single_response(
                cert_id,
                status,
                this_update=now,
                next_update=next_update,
                archive_cutoff=issuer.archive_cutoff,
            )
            for cert_id, status in answers
        ]
        not_issued = any(status.state is CertState.NOT_ISSUED for _, status in answers)
        tbs = response.response_data(
            responder, singles, produced_at=now, nonce=nonce, extended_revoke=not_issued
        )
        signature = self._keys.sign(responder.key_label, tbs, responder.scheme)
        body = response.signed_response(responder, tbs, signature)
        if nonce is not None or not_issued:
            return Answer(body, issuer.id, "signed")
        return Answer(body, issuer.id, "signed", now, next_update)
