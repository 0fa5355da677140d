"""Keys that live in a PKCS#11 token, and signatures made with them.

Constraints of python-pkcs11 0.10.1 and SoftHSM2 that shape this module
(standards.md section 12):

* python-pkcs11 calls ``C_Initialize`` without locking callbacks, so SoftHSM2 runs
  without its own mutexes: two threads inside the library at once corrupt its heap.
  Every PKCS#11 call of the process therefore holds ``_LOCK``.
* A module is loaded and initialised once per process. SoftHSM2 reads ``SOFTHSM2_CONF``
  and lists its tokens only at ``C_Initialize``: a token created afterwards (by
  ``sceau init`` in the same process, say) stays invisible until the library is
  re-initialised, which we do when a label is not found. One token directory serves any
  number of tokens, found by label. A process uses one SoftHSM2 configuration at a time:
  another is accepted only while no session is open.
* Login state belongs to the process, not the session: SoftHSM2 answers a second login
  with CKR_USER_ALREADY_LOGGED_IN without looking at the PIN. So every KeyStore of a
  process on one token shares one session, and a KeyStore arriving later is checked
  against the PIN that opened it.
* After ``fork`` the child must not use its parent's sessions; it re-initialises the
  library on first use (``os.getpid()`` differs) and opens its own.

Failure and recovery (design.md, "Failure"): a token that does not answer makes every
operation raise ``HsmUnavailableError`` (an ``HsmError``: 503 with Retry-After), never
another exception, and the key store heals by itself:

* A failure that may be the session's or the token's (``_LOST``: handle or session
  invalid, device removed or in error, token not present...) drops that session and every
  handle cached on it. The next call, not before ``RECOVERY_BACKOFF`` so that a dead token
  is not hammered, re-initialises the library and logs in again; keys are then found again
  by label. Between two attempts, calls fail at once without touching the library.
* SoftHSM2 2.6 needs that re-initialisation, measured with the token directory moved away
  and back: while it is away a cached handle answers CKR_OBJECT_HANDLE_INVALID, a search
  answers an empty list (so an empty search is confirmed with C_GetTokenInfo before a key is
  called missing), C_GetTokenInfo answers CKR_GENERAL_ERROR, and C_Initialize itself fails
  (CKR_GENERAL_ERROR) until the directory is back. Once it is back, a new session on the
  same initialisation still fails (CKR_GENERAL_ERROR): only C_Finalize + C_Initialize make
  the token visible again.
* CKR_GENERAL_ERROR also answers an AES-GCM tag that does not match. So an ambiguous
  answer counts as lost only when C_GetTokenInfo fails too: an altered record does not
  cost every caller a reconnection.
* A handle or session from before a reset (CKR_OBJECT_HANDLE_INVALID,
  CKR_SESSION_HANDLE_INVALID...) gets one more try inside the same call, on a fresh session
  (``KeyStore._call``); operations that change the token (generate, destroy) do not.
  python-pkcs11 0.10.1 prints "Exception ignored in OperationContext.__del__" when a key
  search began on such a session: its SearchIter stays active and its __del__ raises.
  Harmless; the retry succeeds.
* A PIN the token refused is not tried again by the process (repeated tries would lock
  the token); the operator corrects it and restarts.
* Details shown to callers name neither the module, the token, a key label nor the PIN
  ("signing device unavailable", "the signing key is not available"); the log tells the
  operator which token, key and module, and why (never the PIN).
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import pkcs11
from asn1crypto import algos
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11.constants import Attribute, MechanismFlag, ObjectClass
from pkcs11.exceptions import (
    DeviceError,
    DeviceMemory,
    DeviceRemoved,
    FunctionFailed,
    GeneralError,
    KeyHandleInvalid,
    NoSuchToken,
    ObjectHandleInvalid,
    PinIncorrect,
    PinLocked,
    PKCS11Error,
    SessionClosed,
    SessionHandleInvalid,
    SlotIDInvalid,
    TokenNotPresent,
    TokenNotRecognised,
    UnwrappingKeyHandleInvalid,
    UserNotLoggedIn,
    WrappingKeyHandleInvalid,
)
from pkcs11.mechanisms import MGF, GCMParams, KeyType, Mechanism
from pkcs11.types import DecryptMixin, EncryptMixin, Object, SecretKey, Session, SignMixin, Slot
from pkcs11.types import PublicKey as P11PublicKey
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from core import metrics
from core.errors import ConfigError, ErrorKind, HsmError, SceauError
from core.hsm.algorithms import HashAlgorithm, KeyAlgorithm, Padding, PublicKey, SignatureScheme

log = logging.getLogger("sceau.hsm")

T = TypeVar("T")
ObjT = TypeVar("ObjT", bound=Object)
_PssParams = tuple[Mechanism, MGF, int]
_OPEN_ATTEMPTS = 5
_OPEN_PAUSE = 0.05  # seconds, times the attempt number

# Seconds between two attempts to reach a token that was lost: a dead token is not
# hammered by every request, and one that came back is in use again this long after.
RECOVERY_BACKOFF = 1.0
# While a token stays unreachable, its failed attempts are logged once a minute, not once
# a second (the readiness gauge says it all along).
_REPORT_EVERY = 60.0

# What callers are told (module docstring: never a module path, token or key label, PIN).
UNAVAILABLE = "signing device unavailable"
KEY_NOT_AVAILABLE = "the signing key is not available"
REFUSED = "the signing device refused the operation"

# (padding, hash) -> the mechanism that signs a digest computed outside the token, and
# its parameters. PSS salt = hash length (TS 119 312, standards.md section 9.2).
_MECHANISMS: dict[tuple[Padding, HashAlgorithm], tuple[Mechanism, _PssParams | None]] = {
    (Padding.ECDSA, HashAlgorithm.SHA256): (Mechanism.ECDSA, None),
    (Padding.ECDSA, HashAlgorithm.SHA384): (Mechanism.ECDSA, None),
    (Padding.ECDSA, HashAlgorithm.SHA512): (Mechanism.ECDSA, None),
    (Padding.PKCS1V15, HashAlgorithm.SHA256): (Mechanism.RSA_PKCS, None),
    (Padding.PKCS1V15, HashAlgorithm.SHA384): (Mechanism.RSA_PKCS, None),
    (Padding.PKCS1V15, HashAlgorithm.SHA512): (Mechanism.RSA_PKCS, None),
    (Padding.PSS, HashAlgorithm.SHA256): (
        Mechanism.RSA_PKCS_PSS,
        (Mechanism.SHA256, MGF.SHA256, 32),
    ),
    (Padding.PSS, HashAlgorithm.SHA384): (
        Mechanism.RSA_PKCS_PSS,
        (Mechanism.SHA384, MGF.SHA384, 48),
    ),
    (Padding.PSS, HashAlgorithm.SHA512): (
        Mechanism.RSA_PKCS_PSS,
        (Mechanism.SHA512, MGF.SHA512, 64),
    ),
}
_KEY_TYPE = {Padding.ECDSA: KeyType.EC, Padding.PKCS1V15: KeyType.RSA, Padding.PSS: KeyType.RSA}

_RSA_PUBLIC_EXPONENT = 65537
_GCM_NONCE_BYTES = 12
_SECRET_KEY_BITS = 256
_KEY_ID_BYTES = 16
_RANDOM_PROBE_BITS = 64

# Answers meaning the session, its handles or the token are gone, whatever the operation:
# the session is dropped and the library re-initialised before the next one opens.
_LOST: tuple[type[PKCS11Error], ...] = (
    SessionHandleInvalid,
    SessionClosed,
    UserNotLoggedIn,
    ObjectHandleInvalid,
    KeyHandleInvalid,
    WrappingKeyHandleInvalid,
    UnwrappingKeyHandleInvalid,
    DeviceRemoved,
    DeviceError,
    DeviceMemory,
    TokenNotPresent,
    TokenNotRecognised,
    SlotIDInvalid,
    NoSuchToken,
)
# Of those, what a handle or session from before a reset answers while the token itself
# may well be back: worth one more try, on a fresh session, inside the same call.
_STALE: tuple[type[PKCS11Error], ...] = (
    SessionHandleInvalid,
    SessionClosed,
    UserNotLoggedIn,
    ObjectHandleInvalid,
    KeyHandleInvalid,
)
# Answers that do not say whose fault they are (module docstring): lost only if the token
# does not answer C_GetTokenInfo either. python-pkcs11 raises PKCS11Error itself for the
# codes it has no class for, CKR_CRYPTOKI_NOT_INITIALIZED among them.
_AMBIGUOUS: tuple[type[PKCS11Error], ...] = (GeneralError, FunctionFailed)

_REASONS: dict[type[PKCS11Error], str] = {
    PinIncorrect: "PIN incorrect",
    PinLocked: "PIN locked",
    NoSuchToken: "no token with this label (sceau init creates it)",
}


@dataclass(frozen=True)
class HsmConfig:
    module: Path
    token_label: str
    user_pin: str = field(repr=False)
    # When set, exported as SOFTHSM2_CONF before the library initialises; SoftHSM2 reads
    # it only then, so a process can use one configuration at a time (module docstring).
    softhsm_conf: Path | None = None


@dataclass(frozen=True)
class KeyFacts:
    """What the token reports about a private key: the flags showing it cannot leave it."""

    sensitive: bool
    extractable: bool
    always_sensitive: bool
    never_extractable: bool
    key_type: str  # "EC", "RSA", "AES", "GENERIC_SECRET"


class KeyNotFoundError(HsmError):
    """The token answers, and holds no key of this label."""

    def __init__(self) -> None:
        super().__init__(KEY_NOT_AVAILABLE)


class HsmUnavailableError(HsmError):
    """The token did not answer (gone, refusing, or between two attempts to reach it again):
    nothing was done, and the same call may succeed later."""

    def __init__(self) -> None:
        super().__init__(UNAVAILABLE)


class SecretKind(enum.Enum):
    """Symmetric keys of ours in the token: what each may do, and nothing else."""

    WRAPPING = "aes-256-gcm"  # encrypts the data keys of sealed records (envelope encryption)
    HMAC = "hmac-sha256"  # keyed digests: blind search terms, never reversible


# Every PKCS#11 call of the process, and the registry below, sit behind this lock.
_LOCK = threading.Lock()
# A child forked while another thread is inside the library would inherit it
# mid-operation (and the lock held forever): fork waits for the call to finish.
os.register_at_fork(
    before=_LOCK.acquire, after_in_parent=_LOCK.release, after_in_child=_LOCK.release
)


@dataclass(eq=False)
class _Token:
    """The logged-in session on one token, shared by every KeyStore of the process on it."""

    session: Session
    slot: Slot  # C_GetTokenInfo on it tells whether the token still answers
    label: str
    pin_digest: bytes
    pid: int
    module: _Module  # lists this token in its ``tokens`` while open
    signers: dict[str, tuple[SignMixin, KeyType]] = field(default_factory=dict)
    secrets: dict[str, SecretKey] = field(default_factory=dict)
    public_keys: dict[str, PublicKey] = field(default_factory=dict)
    open: bool = True

    def answers(self) -> bool:
        try:
            self.slot.get_token()
        except PKCS11Error:
            return False
        return True


class _Module:
    """A loaded PKCS#11 library and the tokens this process has opened on it."""

    def __init__(self, path: Path, conf: bytes | None) -> None:
        self.path = path
        self.conf = conf
        self.lib = pkcs11.lib(str(path))
        self.pid = os.getpid()
        self.tokens: dict[str, _Token] = {}
        # A token was lost: C_Finalize + C_Initialize before the next session opens.
        self.needs_restart = False
        # Token label -> monotonic time before which no attempt is made to reach it again.
        self.retry_at: dict[str, float] = {}
        # Token label -> (when it was lost, when a failed attempt was last logged).
        self.outages: dict[str, tuple[float, float]] = {}
        # Token label -> digest of a PIN it refused: never tried again (it would lock).
        self.refused: dict[str, bytes] = {}

    @classmethod
    def for_config(cls, config: HsmConfig) -> _Module:
        path = config.module.resolve()
        conf = _read_conf(config.softhsm_conf)
        module = _MODULES.get(path)
        if module is None:
            if time.monotonic() < _LOAD_RETRY_AT.get(path, 0.0):
                raise HsmUnavailableError()
            _export_conf(config.softhsm_conf)
            try:
                module = _MODULES[path] = cls(path, conf)
            except PKCS11Error as exc:
                _LOAD_RETRY_AT[path] = time.monotonic() + RECOVERY_BACKOFF
                log.error("loading PKCS#11 module %s failed: %s", path, _reason(exc))
                raise HsmUnavailableError() from exc
            _LOAD_RETRY_AT.pop(path, None)
            return module
        if module.pid != os.getpid():
            # The parent's sessions are not the child's: it initialises the library again,
            # in token() below, where a failure is handled like any other.
            module.forget_all()
            module.pid = os.getpid()
        if conf is not None and conf != module.conf:
            if module.tokens:
                log.error(
                    "%s: SoftHSM2 already runs in this process with another configuration",
                    config.softhsm_conf,
                )
                raise ConfigError(
                    "SoftHSM2 is already running in this process with another configuration"
                    " and open sessions; use one token directory per process (several tokens"
                    " may share it) or close the other KeyStores"
                )
            _export_conf(config.softhsm_conf)
            module.conf = conf
            module.needs_restart = True
        return module

    def restart(self) -> None:
        """Finalise and initialise again: after fork, to see tokens created since, or to
        find a lost token again. Every session of the process on this module ends."""
        self.forget_all()
        # A module that forgets its state in a forked child (as PKCS#11 allows) answers
        # CKR_CRYPTOKI_NOT_INITIALIZED here; only the C_Initialize below matters.
        with contextlib.suppress(PKCS11Error):
            self.lib.finalize()
        self.lib.initialize()
        self.pid = os.getpid()
        self.needs_restart = False

    def forget_all(self) -> None:
        """Mark every session of this module closed: the library is initialised again
        before the next one opens."""
        for token in self.tokens.values():
            token.open = False
        self.tokens.clear()
        self.needs_restart = True  # until a C_Initialize succeeds

    def lose(self, token: _Token, *, retry_now: bool) -> None:
        """Forget ``token`` and its handles: the next session on it comes from a fresh
        initialisation, ``RECOVERY_BACKOFF`` from now (or at once, for the one retry)."""
        token.open = False
        if self.tokens.get(token.label) is token:
            del self.tokens[token.label]
        now = time.monotonic()
        self.needs_restart = True
        self.retry_at[token.label] = now + (0.0 if retry_now else RECOVERY_BACKOFF)
        self.outages.setdefault(token.label, (now, now))
        metrics.DEPENDENCY_UP.labels("hsm").set(0)

    def token(self, config: HsmConfig) -> _Token:
        pin_digest = hashlib.sha256(config.user_pin.encode()).digest()
        label = config.token_label
        token = self.tokens.get(label)
        if token is not None:
            if not hmac.compare_digest(token.pin_digest, pin_digest):
                raise _refused(config, _REASONS[PinIncorrect])
            return token
        refused = self.refused.get(label)
        if refused is not None and hmac.compare_digest(refused, pin_digest):
            raise _refused(config, "PIN refused before, not tried again")
        recovering = label in self.retry_at
        if recovering and time.monotonic() < self.retry_at[label]:
            raise HsmUnavailableError()  # no library call between two attempts
        try:
            if self.needs_restart:
                self.restart()
            # A recovery is one attempt: the next comes after the back-off, not in a loop
            # that holds the process lock.
            token = self._open(config, pin_digest, 1 if recovering else _OPEN_ATTEMPTS)
        except PKCS11Error as exc:
            self._unreachable(config, exc)
            raise HsmUnavailableError() from exc
        if recovering:
            del self.retry_at[label]
            since, _ = self.outages.pop(label, (time.monotonic(), 0.0))
            log.warning(
                "token %r answers again after %.1f s: session reopened",
                label,
                time.monotonic() - since,
            )
        metrics.DEPENDENCY_UP.labels("hsm").set(1)
        return token

    def _open(self, config: HsmConfig, pin_digest: bytes, attempts: int) -> _Token:
        label = config.token_label
        # SoftHSM2 rewrites its token files at login; a process opening the token at that
        # instant (two gunicorn workers signing for the first time together) reads them
        # half-written and sees no token or a GeneralError (SoftHSMv2 issue #757). Such
        # failures are retried after a short pause; a wrong PIN never is (it would lock).
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                try:
                    p11_token = self.lib.get_token(token_label=label)
                except NoSuchToken:
                    self.restart()
                    p11_token = self.lib.get_token(token_label=label)
                session = p11_token.open(rw=True, user_pin=config.user_pin)
            except (PinIncorrect, PinLocked) as exc:
                self.refused[label] = pin_digest
                raise _refused(config, _reason(exc)) from exc
            except PKCS11Error:
                if last:
                    raise
                time.sleep(_OPEN_PAUSE * (attempt + 1))
                continue
            token = _Token(session, p11_token.slot, label, pin_digest, os.getpid(), self)
            self.tokens[label] = token
            return token
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _unreachable(self, config: HsmConfig, exc: PKCS11Error) -> None:
        label, now = config.token_label, time.monotonic()
        self.needs_restart = True
        self.retry_at[label] = now + RECOVERY_BACKOFF
        metrics.DEPENDENCY_UP.labels("hsm").set(0)
        since, reported = self.outages.get(label, (now, -_REPORT_EVERY))
        if now - reported < _REPORT_EVERY:
            return
        self.outages[label] = (since, now)
        log.error(
            "opening a session on token %r failed: %s (PKCS#11 module %s); next attempt in %.0f s",
            label,
            _reason(exc),
            config.module,
            RECOVERY_BACKOFF,
        )


# By resolved path: a symlink to a loaded library is the same library.
_MODULES: dict[Path, _Module] = {}
# Resolved path -> monotonic time before which a module that failed to load is not retried.
_LOAD_RETRY_AT: dict[Path, float] = {}


class KeyStore:
    """The signing keys of one token. The process holds one PKCS#11 session per token,
    shared by its KeyStores, opened lazily and re-opened after fork (compare os.getpid())
    or after the token was lost (module docstring); every PKCS#11 call of the process is
    serialized behind one threading.Lock (SoftHSM2 runs without mutexes under
    python-pkcs11)."""

    def __init__(self, config: HsmConfig) -> None:
        self._config = config
        self._token: _Token | None = None

    def generate(self, label: str, algorithm: KeyAlgorithm) -> PublicKey:
        """Generate a key pair in the token; the private key never leaves it."""
        key_id = secrets.token_bytes(_KEY_ID_BYTES)
        public_template: dict[Attribute, Any] = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: False,
            Attribute.VERIFY: True,
        }
        private_template: dict[Attribute, Any] = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.SIGN: True,
        }
        if algorithm.is_ec:
            key_type, key_length = KeyType.EC, None
            public_template[Attribute.EC_PARAMS] = encode_named_curve_parameters(
                algorithm.curve_name
            )
        else:
            key_type, key_length = KeyType.RSA, algorithm.rsa_bits
            public_template[Attribute.PUBLIC_EXPONENT] = _RSA_PUBLIC_EXPONENT.to_bytes(3, "big")

        def generate(token: _Token) -> PublicKey:
            self._refuse_existing(token, label)
            p11_public, _ = token.session.generate_keypair(
                key_type,
                key_length,
                id=key_id,
                label=label,
                store=True,
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                public_template=public_template,
                private_template=private_template,
            )
            public_key = token.public_keys[label] = _public_key(p11_public)
            return public_key

        # Not retried: a failure may come after the token stored the key.
        return self._call("generating key", label, generate, retry=False)

    def has_key(self, label: str) -> bool:
        return self._has(label, ObjectClass.PRIVATE_KEY, "looking up key")

    def public_key(self, label: str) -> PublicKey:
        def public_key(token: _Token) -> PublicKey:
            cached = token.public_keys.get(label)
            if cached is None:
                p11_key = self._object(token, label, ObjectClass.PUBLIC_KEY, P11PublicKey)
                cached = token.public_keys[label] = _public_key(p11_key)
            return cached

        return self._call("reading public key", label, public_key)

    def sign(self, label: str, data: bytes, scheme: SignatureScheme) -> bytes:
        digest = hashes.Hash(scheme.hash.cryptography_hash())
        digest.update(data)
        return self.sign_digest(label, digest.finalize(), scheme)

    def sign_digest(self, label: str, digest: bytes, scheme: SignatureScheme) -> bytes:
        """Sign a digest made outside the token. ECDSA comes back DER-encoded, as X.509
        and CMS carry it; RSA as the raw signature block."""
        (signature,) = self.sign_digests(label, [digest], scheme)
        return signature

    def sign_digests(
        self, label: str, digests: list[bytes], scheme: SignatureScheme
    ) -> list[bytes]:
        """Sign several digests with one key under one hold of the process lock (a remote
        signing batch): the key lookup and the locking are paid once, not per digest."""
        for digest in digests:
            if len(digest) != scheme.hash.digest_size:
                raise SceauError(
                    ErrorKind.INVALID,
                    f"a {scheme.hash.value} digest has {scheme.hash.digest_size} bytes,"
                    f" not {len(digest)}",
                )
        mechanism, param = _MECHANISMS[scheme.padding, scheme.hash]
        if scheme.padding is Padding.PKCS1V15:
            # RSA_PKCS only pads: the DigestInfo naming the hash is ours to add (RFC 8017 §9.2).
            digests = [
                algos.DigestInfo(
                    {"digest_algorithm": {"algorithm": scheme.hash.value}, "digest": d}
                ).dump()
                for d in digests
            ]

        def sign(token: _Token) -> list[bytes]:
            key, key_type = self._signer(token, label)
            if key_type is not _KEY_TYPE[scheme.padding]:
                raise SceauError(
                    ErrorKind.INVALID,
                    f"the key is {key_type.name}; {scheme.padding.value} needs"
                    f" {_KEY_TYPE[scheme.padding].name}",
                )
            return [key.sign(d, mechanism=mechanism, mechanism_param=param) for d in digests]

        signatures = self._call("signing with key", label, sign)
        if scheme.padding is Padding.ECDSA:
            return [_ecdsa_der(s) for s in signatures]
        return signatures

    def generate_secret(self, label: str, kind: SecretKind) -> None:
        """Generate a 256-bit secret key in the token: sensitive, never extractable, able to
        do only what ``kind`` says."""
        if kind is SecretKind.WRAPPING:
            key_type, usage = KeyType.AES, {Attribute.ENCRYPT: True, Attribute.DECRYPT: True}
        else:
            key_type, usage = KeyType.GENERIC_SECRET, {Attribute.SIGN: True}
        template: dict[Attribute, Any] = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.ENCRYPT: False,
            Attribute.DECRYPT: False,
            Attribute.SIGN: False,
            Attribute.VERIFY: False,
            Attribute.WRAP: False,
            Attribute.UNWRAP: False,
            Attribute.DERIVE: False,
            **usage,
        }

        def generate(token: _Token) -> None:
            self._refuse_existing(token, label)
            token.secrets[label] = token.session.generate_key(
                key_type,
                _SECRET_KEY_BITS,
                id=secrets.token_bytes(_KEY_ID_BYTES),
                label=label,
                store=True,
                template=template,
            )

        self._call("generating secret key", label, generate, retry=False)

    def has_secret(self, label: str) -> bool:
        return self._has(label, ObjectClass.SECRET_KEY, "looking up secret key")

    def encrypt(self, label: str, plaintext: bytes, aad: bytes) -> bytes:
        """AES-256-GCM inside the token; returns nonce || ciphertext || tag. ``aad`` binds the
        ciphertext to its place (a record id), so it cannot be moved to another record."""
        nonce = secrets.token_bytes(_GCM_NONCE_BYTES)
        return nonce + self._aes_gcm(label, "encrypt", plaintext, GCMParams(nonce, aad))

    def decrypt(self, label: str, sealed: bytes, aad: bytes) -> bytes:
        """The inverse of ``encrypt``; a changed byte or another ``aad`` is an HsmError."""
        nonce, body = sealed[:_GCM_NONCE_BYTES], sealed[_GCM_NONCE_BYTES:]
        return self._aes_gcm(label, "decrypt", body, GCMParams(nonce, aad))

    def hmac_sha256(self, label: str, data: bytes) -> bytes:
        def digest(token: _Token) -> bytes:
            key = self._secret(token, label)
            if not isinstance(key, SignMixin):
                raise self._cannot(label, "compute an HMAC")
            return bytes(key.sign(data, mechanism=Mechanism.SHA256_HMAC))

        return self._call("computing an HMAC with key", label, digest)

    def secret_facts(self, label: str) -> KeyFacts:
        return self._call("reading secret key", label, lambda t: _facts(self._secret(t, label)))

    def destroy(self, label: str) -> None:
        def destroy(token: _Token) -> None:
            token.signers.pop(label, None)
            token.public_keys.pop(label, None)
            found = _find(token.session, label, ObjectClass.PRIVATE_KEY) + _find(
                token.session, label, ObjectClass.PUBLIC_KEY
            )
            if not found:
                raise self._not_found(token, label)
            for obj in found:
                obj.destroy()

        # Not retried: the first attempt may have destroyed one half already.
        self._call("destroying key", label, destroy, retry=False)

    def private_key_labels(self, prefix: str) -> list[str]:
        """The labels of the token's private keys that start with ``prefix`` (the leftover
        sweep compares them with the records that name keys)."""

        def labels(token: _Token) -> list[str]:
            found = token.session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})
            names = (str(obj[Attribute.LABEL]) for obj in found)
            return sorted(name for name in names if name.startswith(prefix))

        return self._call("listing keys", None, labels)

    def key_facts(self, label: str) -> KeyFacts:
        return self._call("reading key", label, lambda t: _facts(self._signer(t, label)[0]))

    def check(self) -> None:
        """Raise an HsmError unless the token answers now: a session is open (opened here if
        need be), the token is present (C_GetTokenInfo) and the session valid (a few random
        bytes, C_GenerateRandom). Some tens of microseconds; for readiness probes."""

        def check(token: _Token) -> None:
            token.slot.get_token()
            token.session.generate_random(_RANDOM_PROBE_BITS)

        self._call("checking", None, check)

    def close(self) -> None:
        """Log out and close the session, which other KeyStores of the process on this
        token share: they, like this one, open a new session on their next call."""
        with _LOCK:
            token, self._token = self._token, None
            if token is None or not token.open or token.pid != os.getpid():
                return
            token.open = False
            if token.module.tokens.get(token.label) is token:
                del token.module.tokens[token.label]
            try:
                token.session.close()
            except PKCS11Error as exc:
                # The session is gone either way; whatever state the library is in, the
                # next session comes from a fresh initialisation.
                token.module.needs_restart = True
                log.warning("closing the session on token %r failed: %s", token.label, _reason(exc))

    def _call(
        self, action: str, label: str | None, body: Callable[[_Token], T], *, retry: bool = True
    ) -> T:
        """Run ``body`` on this token's session under the process lock. A PKCS#11 failure
        becomes an HsmError (the session dropped if it may be lost, see _failure); every
        other exception but a SceauError too, so that no caller sees another type."""
        with _LOCK:
            # A handle or session from before a reset of the token (the device restarted,
            # its directory came back): the operation did not run and changes nothing in
            # the token, so it runs once more on a fresh session whose keys are found
            # again by label; telling the caller "unavailable" for a token that answers
            # would fail one request per reset. A second failure is the answer (and if the
            # token is really gone, reopening fails and the back-off starts).
            attempts = 2 if retry else 1
            for attempt in range(attempts):
                token = self._session()
                try:
                    return body(token)
                except SceauError:
                    raise
                except Exception as exc:
                    if attempt == attempts - 1 or not isinstance(exc, _STALE):
                        raise self._failure(token, exc, action, label) from exc
                    self._lost(token, exc, action, label, retry_now=True)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _session(self) -> _Token:
        token = self._token
        if token is None or not token.open or token.pid != os.getpid():
            try:
                token = self._token = _Module.for_config(self._config).token(self._config)
            except SceauError:
                raise
            except Exception as exc:  # a guard: for_config and token() raise HsmErrors only
                log.error(
                    "opening a session on token %r failed (PKCS#11 module %s)",
                    self._config.token_label,
                    self._config.module,
                    exc_info=exc,
                )
                raise HsmUnavailableError() from exc
        return token

    def _failure(self, token: _Token, exc: Exception, action: str, label: str | None) -> HsmError:
        what = _what(action, label, token.label)
        if not isinstance(exc, PKCS11Error):
            log.error("%s failed", what, exc_info=exc)
            return HsmError("the signing device failed")
        if isinstance(exc, _LOST) or (
            (isinstance(exc, _AMBIGUOUS) or type(exc) is PKCS11Error) and not token.answers()
        ):
            return self._lost(token, exc, action, label, retry_now=False)
        log.warning("%s refused: %s", what, _reason(exc))
        return HsmError(REFUSED)

    def _lost(
        self, token: _Token, exc: PKCS11Error, action: str, label: str | None, *, retry_now: bool
    ) -> HsmUnavailableError:
        # A stale handle retried at once is usually healed within the call: a warning.
        log.log(
            logging.WARNING if retry_now else logging.ERROR,
            "%s failed: %s (PKCS#11 module %s); session dropped, %s",
            _what(action, label, token.label),
            _reason(exc),
            self._config.module,
            "reopening it now" if retry_now else f"reopened from {RECOVERY_BACKOFF:.0f} s on",
        )
        if token.open and token.pid == os.getpid():
            token.module.lose(token, retry_now=retry_now)
        return HsmUnavailableError()

    def _signer(self, token: _Token, label: str) -> tuple[SignMixin, KeyType]:
        cached = token.signers.get(label)
        if cached is not None:
            return cached
        found = _find(token.session, label, ObjectClass.PRIVATE_KEY)
        if not found:
            raise self._not_found(token, label)
        key = found[0]
        if not isinstance(key, SignMixin):
            raise self._cannot(label, "sign")
        signer = token.signers[label] = (key, KeyType(key[Attribute.KEY_TYPE]))
        return signer

    def _secret(self, token: _Token, label: str) -> SecretKey:
        cached = token.secrets.get(label)
        if cached is None:
            cached = token.secrets[label] = self._object(
                token, label, ObjectClass.SECRET_KEY, SecretKey
            )
        return cached

    def _object(
        self, token: _Token, label: str, object_class: ObjectClass, kind: type[ObjT]
    ) -> ObjT:
        """The token's object of this label and class, as a ``kind``; KeyNotFoundError when
        there is none (or it is not a ``kind``)."""
        found = _find(token.session, label, object_class)
        if not found or not isinstance(found[0], kind):
            raise self._not_found(token, label)
        return found[0]

    def _has(self, label: str, object_class: ObjectClass, action: str) -> bool:
        """Whether the token holds a key of this label and class (private: a signing key,
        secret: a SecretKind); a handle cached by an earlier call answers without a search."""

        def has(token: _Token) -> bool:
            cached = token.signers if object_class is ObjectClass.PRIVATE_KEY else token.secrets
            if label in cached or _find(token.session, label, object_class):
                return True
            _confirm_absent(token)
            return False

        return self._call(action, label, has)

    def _aes_gcm(
        self, label: str, operation: Literal["encrypt", "decrypt"], data: bytes, params: GCMParams
    ) -> bytes:
        """AES-GCM with the token's secret key ``label``: ``data`` and its result without the
        nonce, which ``params`` carries with the associated data."""

        def run(token: _Token) -> bytes | Iterator[bytes]:
            key = self._secret(token, label)
            if operation == "encrypt" and isinstance(key, EncryptMixin):
                return key.encrypt(data, mechanism=Mechanism.AES_GCM, mechanism_param=params)
            if operation == "decrypt" and isinstance(key, DecryptMixin):
                return key.decrypt(data, mechanism=Mechanism.AES_GCM, mechanism_param=params)
            raise self._cannot(label, operation)

        action = "encrypting with key" if operation == "encrypt" else "decrypting with key"
        result = self._call(action, label, run)
        # One buffer in, one out (the iterator form is for buffers given as iterables).
        assert isinstance(result, bytes)
        return result

    def _refuse_existing(self, token: _Token, label: str) -> None:
        if _find(token.session, label):
            log.warning("key %r already exists on token %r", label, token.label)
            raise HsmError("a key with this label already exists in the signing device")
        _confirm_absent(token)

    def _cannot(self, label: str, what: str) -> HsmError:
        log.warning(
            "key %r on token %r is not allowed to %s", label, self._config.token_label, what
        )
        return HsmError(f"the key is not allowed to {what}")

    def _not_found(self, token: _Token, label: str) -> KeyNotFoundError:
        _confirm_absent(token)
        log.warning("no key %r on token %r", label, token.label)
        return KeyNotFoundError()


def _find(session: Session, label: str, object_class: ObjectClass | None = None) -> list[Object]:
    template: dict[Attribute, Any] = {Attribute.LABEL: label}
    if object_class is not None:
        template[Attribute.CLASS] = object_class
    return list(session.get_objects(template))


def _confirm_absent(token: _Token) -> None:
    """A search on a token that went away finds nothing rather than failing (SoftHSM2, its
    directory gone): before a key is called missing (and, say, a retired key's row marked
    destroyed), the token must answer C_GetTokenInfo. Raises the PKCS11Error if not."""
    token.slot.get_token()


def _what(action: str, label: str | None, token_label: str) -> str:
    """For the log: "signing with key 'k' on token 't'"."""
    key = f" {label!r}" if label is not None else ""
    return f"{action}{key} on token {token_label!r}"


def _facts(key: Object) -> KeyFacts:
    attrs = key.get_attributes(
        [
            Attribute.SENSITIVE,
            Attribute.EXTRACTABLE,
            Attribute.ALWAYS_SENSITIVE,
            Attribute.NEVER_EXTRACTABLE,
            Attribute.KEY_TYPE,
        ]
    )
    return KeyFacts(
        sensitive=attrs[Attribute.SENSITIVE],
        extractable=attrs[Attribute.EXTRACTABLE],
        always_sensitive=attrs[Attribute.ALWAYS_SENSITIVE],
        never_extractable=attrs[Attribute.NEVER_EXTRACTABLE],
        key_type=KeyType(attrs[Attribute.KEY_TYPE]).name,
    )


def _public_key(p11_key: P11PublicKey) -> PublicKey:
    key_type = p11_key[Attribute.KEY_TYPE]
    if key_type is KeyType.RSA:
        attrs = p11_key.get_attributes([Attribute.MODULUS, Attribute.PUBLIC_EXPONENT])
        return rsa.RSAPublicNumbers(
            int.from_bytes(attrs[Attribute.PUBLIC_EXPONENT], "big"),
            int.from_bytes(attrs[Attribute.MODULUS], "big"),
        ).public_key()
    if key_type is KeyType.EC:
        loaded = serialization.load_der_public_key(encode_ec_public_key(p11_key))
        if isinstance(loaded, ec.EllipticCurvePublicKey):
            return loaded
    log.warning("public key %r is neither RSA nor a named-curve EC key", p11_key[Attribute.LABEL])
    raise HsmError("the public key is neither RSA nor a named-curve EC key")


def _ecdsa_der(raw: bytes) -> bytes:
    """PKCS#11 gives r || s; X.509 and CMS carry a DER ECDSA-Sig-Value. cryptography's
    encoder rather than pkcs11.util.ec's (asn1crypto): ~1 us instead of ~9 us a signature."""
    half = len(raw) // 2
    return encode_dss_signature(
        int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
    )


def _read_conf(conf: Path | None) -> bytes | None:
    if conf is None:
        return None
    try:
        return conf.read_bytes()
    except OSError as exc:
        log.error("SoftHSM2 configuration %s: %s", conf, exc.strerror)
        raise ConfigError(f"the SoftHSM2 configuration cannot be read: {exc.strerror}") from exc


def _export_conf(conf: Path | None) -> None:
    if conf is not None:
        os.environ["SOFTHSM2_CONF"] = str(conf)


def _reason(exc: PKCS11Error) -> str:
    reason = _REASONS.get(type(exc))
    if reason is not None:
        return reason
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _refused(config: HsmConfig, reason: str) -> HsmError:
    log.error(
        "login to token %r failed: %s (PKCS#11 module %s)",
        config.token_label,
        reason,
        config.module,
    )
    return HsmError(f"the signing device refused the login: {reason}")
