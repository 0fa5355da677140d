"""The timestamping engine: request bytes in, TimeStampResp bytes out. No HTTP here.

One request, in order (each step raises a TsaRejection naming its failure bit):

1. Parse and check the TimeStampReq (tsa/request.py).
2. Its reqPolicy, if any, must be ours (RFC 3161 §2.4.2: else unacceptedPolicy).
3. Read the clock; refuse when it is not trusted within the accuracy (tsa/clock.py).
4. Take the TSU signer valid now (EN 319 421 TIS-7.7.1-09: none after its certificate ends).
5. Build TSTInfo with a fresh serial, sign it in the HSM (tsa/token.py).
6. Hand its record to the writer (tsa/records.py): queued ("batch") or committed ("sync")
   before the token is answered.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509

from core.config import SceauConfig
from core.errors import ConfigError, HsmError, SceauError
from core.hsm.algorithms import Padding, PublicKey, SignatureScheme, key_algorithm_of
from core.hsm.keystore import KeyNotFoundError, KeyStore
from core.store.db import Database
from pki.profiles import ProfileKind, ProfileSet
from pki.signers import ActiveSigner, current_signer
from tsa import der, response
from tsa.clock import TimeSource, time_source
from tsa.records import RecordWriter, TimestampRecord
from tsa.request import TimestampRequest, parse_request
from tsa.response import PKIFailure, TsaRejection
from tsa.token import BTSP_POLICY, TokenFields, TokenTemplate

log = logging.getLogger(__name__)

# How often a process looks for a renewed TSU certificate (one indexed query). A renewal
# is used within this time; an expiry is seen at once (not_after is checked per token).
SIGNER_REFRESH = 60.0  # seconds
LOGIN_ATTEMPTS = 5
LOGIN_RETRY_DELAY = 0.05  # seconds, times 1..4 at random so that workers drift apart
# EN 319 421 TIS-7.7.2-02: the declared accuracy is 1 second or better.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def token_scheme(scheme: SignatureScheme) -> SignatureScheme:
    """How the TSU key signs tokens. RSA keys sign with PKCS#1 v1.5, not the PSS our CAs
    use: OpenSSL 3.0's `ts -verify` (its PKCS7 code, unlike its CMS code) verifies an RSA
    SignerInfo as PKCS#1 v1.5 whatever its signatureAlgorithm says, so a PSS token fails
    there, and relying parties' toolchains lag likewise. TS 119 312 V2.1.1 keeps PKCS#1
    v1.5 as legacy until 2034-12-31."""
    if scheme.padding is Padding.PSS:
        return SignatureScheme(scheme.hash, Padding.PKCS1V15)
    return scheme


def tsa_policy(config: SceauConfig) -> str:
    """The policy every token states: [tsa] policy_oid, else <[ca] policy_arc>.3.1 (our
    own TSA policy, which incorporates the BTSP, EN 319 422 Annex A), else the BTSP."""
    policy = config.tsa.policy_oid or (
        f"{config.ca.policy_arc}.3.1" if config.ca.policy_arc else BTSP_POLICY
    )
    try:
        der.oid(policy)
    except ValueError:
        raise ConfigError(f"[tsa] policy_oid {policy!r} is not an object identifier") from None
    return policy


@dataclass(frozen=True)
class _Signer:
    active: ActiveSigner
    template: TokenTemplate
    not_after_micros: int
    loaded_at: float  # time.monotonic()


class TimestampAuthority:
    def __init__(  # noqa: PLR0913 - keyword-only dependencies and policy
        self,
        db: Database,
        keys: KeyStore,
        *,
        issuer_id: str,
        policy: str,
        accuracy_ms: int,
        clock: TimeSource,
        records: RecordWriter,
    ) -> None:
        self.db = db
        self.keys = keys
        self.issuer_id = issuer_id
        self.policy = policy
        self.accuracy_micros = accuracy_ms * 1000
        self.clock = clock
        self.records = records
        self._signer: _Signer | None = None
        self._signer_lock = threading.Lock()

    @classmethod
    def from_config(
        cls,
        config: SceauConfig,
        db: Database,
        keys: KeyStore,
        profiles: ProfileSet,
        *,
        clock: TimeSource | None = None,
    ) -> TimestampAuthority:
        return cls(
            db,
            keys,
            issuer_id=profiles.signer_profile(ProfileKind.TSU).issuer,
            policy=tsa_policy(config),
            accuracy_ms=config.tsa.accuracy_ms,
            clock=clock or time_source(config.tsa.clock_check),
            records=RecordWriter(db, mode=config.tsa.record),
        )

    def respond(self, body: bytes, *, client: str | None = None) -> tuple[bytes, PKIFailure | None]:
        """The DER TimeStampResp for ``body``, and the failure bit when it is a rejection.
        Never raises: an unexpected error is logged and answered systemFailure."""
        try:
            request = parse_request(body)
            return response.granted(self.issue(request, client=client)), None
        except SceauError as exc:
            failure = response.failure_of(exc)
            detail = exc.detail
            if failure is PKIFailure.SYSTEM_FAILURE:
                log.error("timestamp refused (systemFailure): %s", exc.detail)
                if not isinstance(exc, TsaRejection):
                    # Module paths and key labels are the operator's business.
                    detail = "the TSA cannot sign now; try again later"
            return response.rejection(failure, detail), failure
        except Exception:
            log.exception("timestamp refused (systemFailure): unexpected error")
            failure = PKIFailure.SYSTEM_FAILURE
            return response.rejection(failure, "internal error"), failure

    def issue(self, request: TimestampRequest, *, client: str | None = None) -> bytes:
        """A TimeStampToken (ContentInfo DER) for a parsed request."""
        if request.req_policy is not None and request.req_policy != self.policy:
            raise TsaRejection(
                PKIFailure.UNACCEPTED_POLICY, f"this TSA issues under policy {self.policy} only"
            )
        reading = self.clock.read(self.accuracy_micros)
        if reading.untrusted is not None:
            raise TsaRejection(PKIFailure.TIME_NOT_AVAILABLE, reading.untrusted)
        now = reading.unix_micros
        signer = self._current(now)
        # Unique across every instance of a cluster without coordination: genTime in
        # microseconds, then 64 random bits. About 115 bits, under RFC 3161's 160; two
        # tokens share one only with the same microsecond and the same 64 random bits.
        serial = (now << 64) | secrets.randbits(64)
        template = signer.template
        tst_info = template.tst_info(request, TokenFields(serial=serial, unix_micros=now))
        label, scheme = signer.active.key_label, template.scheme
        token = template.token(
            tst_info,
            cert_req=request.cert_req,
            sign=lambda data: self.keys.sign(label, data, scheme),
        )
        self.records.record(
            TimestampRecord(
                serial=serial,
                unix_micros=now,
                hash_algorithm=request.hash.name,
                imprint=request.hashed_message,
                policy=self.policy,
                client=client,
                signer_id=signer.active.id,
            )
        )
        return token

    def _current(self, now: int) -> _Signer:
        signer = self._signer
        if signer is None or not _fresh(signer, now):
            with self._signer_lock:  # one reload, however many threads noticed
                signer = self._signer
                if signer is None or not _fresh(signer, now):
                    signer = self._signer = self._load(now)
        return signer

    def _load(self, now: int) -> _Signer:
        at = _EPOCH + timedelta(microseconds=now)
        active = current_signer(self.db, ProfileKind.TSU, self.issuer_id, at)
        if active is None:
            raise TsaRejection(PKIFailure.SYSTEM_FAILURE, "no valid timestamping unit certificate")
        previous = self._signer
        if previous is not None and previous.active.id == active.id:
            return _Signer(active, previous.template, previous.not_after_micros, time.monotonic())
        # style.md section 9: a key is checked against its certificate before it signs.
        certified = x509.load_der_x509_certificate(active.certificate).public_key()
        if (
            certified != self._public_key(active.key_label)
            or key_algorithm_of(certified) is not active.key_algorithm
        ):
            raise ConfigError(
                f"TSU key {active.key_label!r} does not match its certificate or its recorded"
                f" algorithm {active.key_algorithm} (signer {active.id})"
            )
        template = TokenTemplate(
            active.certificate,
            token_scheme(active.scheme),
            policy=self.policy,
            accuracy_micros=self.accuracy_micros,
        )
        not_after = (active.not_after - _EPOCH) // timedelta(microseconds=1)
        log.info("TSU signer %d (key %s) signs from now on", active.id, active.key_label)
        return _Signer(active, template, not_after, time.monotonic())

    def _public_key(self, label: str) -> PublicKey:
        """The key's public half, which also opens this process's PKCS#11 session. SoftHSM2
        2.6 rewrites its token file at each login, and a process logging in meanwhile
        may read it half-written and fail (SoftHSMv2 issue #757): gunicorn workers start
        together, so their first logins are retried a few times before giving up."""
        for attempt in range(LOGIN_ATTEMPTS):
            try:
                return self.keys.public_key(label)
            except HsmError as exc:
                if isinstance(exc, KeyNotFoundError) or attempt == LOGIN_ATTEMPTS - 1:
                    raise
                log.warning("PKCS#11 session for the TSU failed, retrying: %s", exc.detail)
                time.sleep(LOGIN_RETRY_DELAY * (1 + secrets.randbelow(4)))
        raise AssertionError("unreachable")


def _fresh(signer: _Signer, now: int) -> bool:
    return now < signer.not_after_micros and time.monotonic() - signer.loaded_at < SIGNER_REFRESH
