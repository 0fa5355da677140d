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
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pkcs11
from asn1crypto import algos
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11.constants import Attribute, MechanismFlag, ObjectClass
from pkcs11.exceptions import NoSuchToken, PinIncorrect, PinLocked, PKCS11Error
from pkcs11.mechanisms import MGF, GCMParams, KeyType, Mechanism
from pkcs11.types import DecryptMixin, EncryptMixin, Object, SecretKey, Session, SignMixin
from pkcs11.types import PublicKey as P11PublicKey
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from core.errors import ConfigError, ErrorKind, HsmError, SceauError
from core.hsm.algorithms import HashAlgorithm, KeyAlgorithm, Padding, PublicKey, SignatureScheme

_PssParams = tuple[Mechanism, MGF, int]
_OPEN_ATTEMPTS = 5
_OPEN_PAUSE = 0.05  # seconds, times the attempt number

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
    pass


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
    label: str
    pin_digest: bytes
    pid: int
    registry: dict[str, _Token]  # the _Module.tokens this one is listed in while open
    signers: dict[str, tuple[SignMixin, KeyType]] = field(default_factory=dict)
    secrets: dict[str, SecretKey] = field(default_factory=dict)
    public_keys: dict[str, PublicKey] = field(default_factory=dict)
    open: bool = True

    def close(self) -> None:
        self.open = False
        del self.registry[self.label]
        self.session.close()


class _Module:
    """A loaded PKCS#11 library and the tokens this process has opened on it."""

    def __init__(self, path: Path, conf: bytes | None) -> None:
        self.conf = conf
        self.lib = pkcs11.lib(str(path))
        self.pid = os.getpid()
        self.tokens: dict[str, _Token] = {}

    @classmethod
    def for_config(cls, config: HsmConfig) -> _Module:
        path = config.module.resolve()
        conf = _read_conf(config.softhsm_conf)
        module = _MODULES.get(path)
        if module is None:
            _export_conf(config.softhsm_conf)
            try:
                module = _MODULES[path] = cls(path, conf)
            except PKCS11Error as exc:
                raise HsmError(f"loading PKCS#11 module {path} failed: {_reason(exc)}") from exc
            return module
        if module.pid != os.getpid():
            module.restart()
        if conf is not None and conf != module.conf:
            if module.tokens:
                raise ConfigError(
                    f"{config.softhsm_conf}: SoftHSM2 is already running in this process with"
                    " another configuration and open sessions; use one token directory per"
                    " process (several tokens may share it) or close the other KeyStores"
                )
            _export_conf(config.softhsm_conf)
            module.conf = conf
            module.restart()
        return module

    def restart(self) -> None:
        """Finalise and initialise again: after fork, or to see tokens created since."""
        for token in self.tokens.values():
            token.open = False
        self.tokens.clear()
        # A module that forgets its state in a forked child (as PKCS#11 allows) answers
        # CKR_CRYPTOKI_NOT_INITIALIZED here; only the C_Initialize below matters.
        with contextlib.suppress(PKCS11Error):
            self.lib.finalize()
        self.lib.initialize()
        self.pid = os.getpid()

    def token(self, config: HsmConfig) -> _Token:
        pin_digest = hashlib.sha256(config.user_pin.encode()).digest()
        label = config.token_label
        token = self.tokens.get(label)
        if token is not None:
            if not hmac.compare_digest(token.pin_digest, pin_digest):
                raise _error(config, "login to", _REASONS[PinIncorrect])
            return token
        # SoftHSM2 rewrites its token files at login; a process opening the token at that
        # instant (two gunicorn workers signing for the first time together) reads them
        # half-written and sees no token or a GeneralError (SoftHSMv2 issue #757). Such
        # failures are retried after a short pause; a wrong PIN never is (it would lock).
        for attempt in range(_OPEN_ATTEMPTS):
            last = attempt == _OPEN_ATTEMPTS - 1
            try:
                try:
                    p11_token = self.lib.get_token(token_label=label)
                except NoSuchToken:
                    self.restart()
                    p11_token = self.lib.get_token(token_label=label)
            except PKCS11Error as exc:
                if last:
                    raise _error(config, "opening a session on", _reason(exc)) from exc
                time.sleep(_OPEN_PAUSE * (attempt + 1))
                continue
            try:
                session = p11_token.open(rw=True, user_pin=config.user_pin)
            except (PinIncorrect, PinLocked) as exc:
                raise _error(config, "login to", _reason(exc)) from exc
            except PKCS11Error as exc:
                if last:
                    raise _error(config, "login to", _reason(exc)) from exc
                time.sleep(_OPEN_PAUSE * (attempt + 1))
                continue
            token = _Token(session, label, pin_digest, os.getpid(), self.tokens)
            self.tokens[label] = token
            return token
        raise AssertionError("unreachable: the last attempt returns or raises")


# By resolved path: a symlink to a loaded library is the same library.
_MODULES: dict[Path, _Module] = {}


class KeyStore:
    """The signing keys of one token. The process holds one PKCS#11 session per token,
    shared by its KeyStores, opened lazily and re-opened after fork (compare os.getpid());
    every PKCS#11 call of the process is serialized behind one threading.Lock (SoftHSM2
    runs without mutexes under python-pkcs11)."""

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
        with self._calling(f"generating key {label!r} on") as token:
            if _find(token.session, label):
                raise HsmError(
                    f"key {label!r} already exists on token {self._config.token_label!r}"
                )
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

    def has_key(self, label: str) -> bool:
        with self._calling(f"looking up key {label!r} on") as token:
            return label in token.signers or bool(
                _find(token.session, label, ObjectClass.PRIVATE_KEY)
            )

    def public_key(self, label: str) -> PublicKey:
        with self._calling(f"reading public key {label!r} on") as token:
            cached = token.public_keys.get(label)
            if cached is not None:
                return cached
            found = _find(token.session, label, ObjectClass.PUBLIC_KEY)
            if not found or not isinstance(found[0], P11PublicKey):
                raise self._not_found(label)
            public_key = token.public_keys[label] = _public_key(found[0])
            return public_key

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
        with self._calling(f"signing with key {label!r} on") as token:
            key, key_type = self._signer(token, label)
            if key_type is not _KEY_TYPE[scheme.padding]:
                raise SceauError(
                    ErrorKind.INVALID,
                    f"key {label!r} is {key_type.name}; {scheme.padding.value} needs"
                    f" {_KEY_TYPE[scheme.padding].name}",
                )
            signatures = [key.sign(d, mechanism=mechanism, mechanism_param=param) for d in digests]
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
        with self._calling(f"generating secret key {label!r} on") as token:
            if _find(token.session, label):
                raise HsmError(
                    f"key {label!r} already exists on token {self._config.token_label!r}"
                )
            token.secrets[label] = token.session.generate_key(
                key_type,
                _SECRET_KEY_BITS,
                id=secrets.token_bytes(_KEY_ID_BYTES),
                label=label,
                store=True,
                template=template,
            )

    def has_secret(self, label: str) -> bool:
        with self._calling(f"looking up secret key {label!r} on") as token:
            return label in token.secrets or bool(
                _find(token.session, label, ObjectClass.SECRET_KEY)
            )

    def encrypt(self, label: str, plaintext: bytes, aad: bytes) -> bytes:
        """AES-256-GCM inside the token; returns nonce || ciphertext || tag. ``aad`` binds the
        ciphertext to its place (a record id), so it cannot be moved to another record."""
        nonce = secrets.token_bytes(_GCM_NONCE_BYTES)
        with self._calling(f"encrypting with key {label!r} on") as token:
            key = self._secret(token, label)
            if not isinstance(key, EncryptMixin):
                raise self._cannot(label, "encrypt")
            sealed = key.encrypt(
                plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, aad)
            )
        # One buffer in, one out (the iterator form is for buffers given as iterables).
        assert isinstance(sealed, bytes)
        return nonce + sealed

    def decrypt(self, label: str, sealed: bytes, aad: bytes) -> bytes:
        """The inverse of ``encrypt``; a changed byte or another ``aad`` is an HsmError."""
        nonce, body = sealed[:_GCM_NONCE_BYTES], sealed[_GCM_NONCE_BYTES:]
        with self._calling(f"decrypting with key {label!r} on") as token:
            key = self._secret(token, label)
            if not isinstance(key, DecryptMixin):
                raise self._cannot(label, "decrypt")
            plain = key.decrypt(
                body, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, aad)
            )
        assert isinstance(plain, bytes)
        return plain

    def hmac_sha256(self, label: str, data: bytes) -> bytes:
        with self._calling(f"computing an HMAC with key {label!r} on") as token:
            key = self._secret(token, label)
            if not isinstance(key, SignMixin):
                raise self._cannot(label, "compute an HMAC")
            return bytes(key.sign(data, mechanism=Mechanism.SHA256_HMAC))

    def secret_facts(self, label: str) -> KeyFacts:
        with self._calling(f"reading secret key {label!r} on") as token:
            return _facts(self._secret(token, label))

    def destroy(self, label: str) -> None:
        with self._calling(f"destroying key {label!r} on") as token:
            token.signers.pop(label, None)
            token.public_keys.pop(label, None)
            found = _find(token.session, label, ObjectClass.PRIVATE_KEY) + _find(
                token.session, label, ObjectClass.PUBLIC_KEY
            )
            if not found:
                raise self._not_found(label)
            for obj in found:
                obj.destroy()

    def key_facts(self, label: str) -> KeyFacts:
        with self._calling(f"reading key {label!r} on") as token:
            key, _ = self._signer(token, label)
            return _facts(key)

    def close(self) -> None:
        """Log out and close the session, which other KeyStores of the process on this
        token share: they, like this one, open a new session on their next call."""
        with _LOCK:
            token, self._token = self._token, None
            if token is None or not token.open or token.pid != os.getpid():
                return
            try:
                token.close()
            except PKCS11Error as exc:
                raise _error(self._config, "closing the session on", _reason(exc)) from exc

    @contextlib.contextmanager
    def _calling(self, operation: str) -> Iterator[_Token]:
        """Hold the process lock around PKCS#11 calls; name module and token on failure."""
        with _LOCK:
            try:
                yield self._session()
            except PKCS11Error as exc:
                raise _error(self._config, operation, _reason(exc)) from exc

    def _session(self) -> _Token:
        token = self._token
        if token is None or not token.open or token.pid != os.getpid():
            token = self._token = _Module.for_config(self._config).token(self._config)
        return token

    def _signer(self, token: _Token, label: str) -> tuple[SignMixin, KeyType]:
        cached = token.signers.get(label)
        if cached is not None:
            return cached
        found = _find(token.session, label, ObjectClass.PRIVATE_KEY)
        if not found:
            raise self._not_found(label)
        key = found[0]
        if not isinstance(key, SignMixin):
            raise HsmError(
                f"key {label!r} on token {self._config.token_label!r} is not allowed to sign"
            )
        signer = token.signers[label] = (key, KeyType(key[Attribute.KEY_TYPE]))
        return signer

    def _secret(self, token: _Token, label: str) -> SecretKey:
        cached = token.secrets.get(label)
        if cached is not None:
            return cached
        found = _find(token.session, label, ObjectClass.SECRET_KEY)
        if not found or not isinstance(found[0], SecretKey):
            raise self._not_found(label)
        token.secrets[label] = found[0]
        return found[0]

    def _cannot(self, label: str, what: str) -> HsmError:
        return HsmError(
            f"key {label!r} on token {self._config.token_label!r} is not allowed to {what}"
        )

    def _not_found(self, label: str) -> KeyNotFoundError:
        return KeyNotFoundError(f"no key {label!r} on token {self._config.token_label!r}")


def _find(session: Session, label: str, object_class: ObjectClass | None = None) -> list[Object]:
    template: dict[Attribute, Any] = {Attribute.LABEL: label}
    if object_class is not None:
        template[Attribute.CLASS] = object_class
    return list(session.get_objects(template))


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
    raise HsmError(
        f"public key {p11_key[Attribute.LABEL]!r} is neither RSA nor a named-curve EC key"
    )


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
        raise ConfigError(f"SoftHSM2 configuration {conf}: {exc.strerror}") from exc


def _export_conf(conf: Path | None) -> None:
    if conf is not None:
        os.environ["SOFTHSM2_CONF"] = str(conf)


def _reason(exc: PKCS11Error) -> str:
    reason = _REASONS.get(type(exc))
    if reason is not None:
        return reason
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _error(config: HsmConfig, operation: str, reason: str) -> HsmError:
    """``operation`` reads before "token 'X'": "login to", "signing with key 'k' on"."""
    return HsmError(
        f"{operation} token {config.token_label!r} failed: {reason}"
        f" (PKCS#11 module {config.module})"
    )
