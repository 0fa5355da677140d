"""core.hsm.keystore and core.hsm.softhsm against a real SoftHSM2 token: keys are made in the
token and stay there, every scheme's signature verifies with `cryptography`, failures are HsmError.

SoftHSM2 takes one configuration per process (see core.hsm.keystore). When another test module of
the same run already uses a token directory, it exports SCEAU_TEST_SOFTHSM_CONF and the
tokens made here go into that directory, under their own labels.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, padding

from core.errors import ConfigError, ErrorKind, HsmError, SceauError
from core.hsm.algorithms import (
    HashAlgorithm,
    KeyAlgorithm,
    Padding,
    PublicKey,
    SignatureScheme,
    key_algorithm_of,
)
from core.hsm.keystore import HsmConfig, KeyNotFoundError, KeyStore
from core.hsm.softhsm import ensure_softhsm_token, find_softhsm_module

P256 = KeyAlgorithm.EC_P256
P256_SCHEME = SignatureScheme(HashAlgorithm.SHA256, Padding.ECDSA)


@dataclass(frozen=True)
class Hsm:
    config: HsmConfig
    home: Path  # where more tokens of the same token directory are made


def _label(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"  # token labels have at most 32 bytes


def _pin() -> str:
    return secrets.token_hex(8)


@pytest.fixture(scope="module")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Hsm:
    home = tmp_path_factory.mktemp("hsm")
    shared = os.environ.get("SCEAU_TEST_SOFTHSM_CONF")
    if shared:
        shutil.copyfile(shared, home / "softhsm2.conf")
    label, user_pin = _label("test-hsm"), _pin()
    conf = ensure_softhsm_token(home, label, user_pin, _pin())
    return Hsm(HsmConfig(find_softhsm_module(), label, user_pin, conf), home)


@pytest.fixture(scope="module")
def store(hsm: Hsm) -> Iterator[KeyStore]:
    key_store = KeyStore(hsm.config)
    yield key_store
    key_store.close()


@pytest.fixture(scope="module")
def keys(store: KeyStore) -> dict[KeyAlgorithm, PublicKey]:
    """One key of each algorithm, labelled with the algorithm's name (RSA-4096 takes seconds)."""
    return {algorithm: store.generate(algorithm.value, algorithm) for algorithm in KeyAlgorithm}


def _schemes(algorithm: KeyAlgorithm) -> list[SignatureScheme]:
    paddings = [Padding.ECDSA] if algorithm.is_ec else [Padding.PKCS1V15, Padding.PSS]
    return [SignatureScheme(h, p) for p in paddings for h in HashAlgorithm]


def _verify(public_key: PublicKey, signature: bytes, data: bytes, scheme: SignatureScheme) -> None:
    """Raises InvalidSignature unless `signature` is what X.509 and CMS expect."""
    hash_ = scheme.hash.cryptography_hash()
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(hash_))  # DER ECDSA-Sig-Value only
    elif scheme.padding is Padding.PSS:
        pss = padding.PSS(mgf=padding.MGF1(hash_), salt_length=scheme.hash.digest_size)
        public_key.verify(signature, data, pss, hash_)
    else:
        public_key.verify(signature, data, padding.PKCS1v15(), hash_)


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm), ids=str)
def test_generated_key_has_the_requested_algorithm(
    keys: dict[KeyAlgorithm, PublicKey], algorithm: KeyAlgorithm
) -> None:
    assert key_algorithm_of(keys[algorithm]) is algorithm


def test_public_keys_read_back_from_the_token(
    store: KeyStore, keys: dict[KeyAlgorithm, PublicKey]
) -> None:
    store.close()  # drops the cached copies made by generate
    for algorithm, generated in keys.items():
        assert store.public_key(algorithm.value).public_numbers() == generated.public_numbers()


@pytest.mark.parametrize(
    ("algorithm", "scheme"),
    [
        pytest.param(a, s, id=f"{a.value}-{s.padding.value}-{s.hash.value}")
        for a in KeyAlgorithm
        for s in _schemes(a)
    ],
)
def test_signature_verifies(
    store: KeyStore,
    keys: dict[KeyAlgorithm, PublicKey],
    algorithm: KeyAlgorithm,
    scheme: SignatureScheme,
) -> None:
    data = f"to be signed with {algorithm} {scheme}".encode()
    _verify(keys[algorithm], store.sign(algorithm.value, data, scheme), data, scheme)


def test_digest_of_the_wrong_length_is_refused(
    store: KeyStore, keys: dict[KeyAlgorithm, PublicKey]
) -> None:
    with pytest.raises(SceauError) as raised:
        store.sign_digest(P256.value, bytes(48), P256_SCHEME)
    assert raised.value.kind is ErrorKind.INVALID


def test_scheme_of_another_key_type_is_refused(
    store: KeyStore, keys: dict[KeyAlgorithm, PublicKey]
) -> None:
    with pytest.raises(SceauError) as raised:
        store.sign(KeyAlgorithm.RSA_3072.value, b"data", P256_SCHEME)
    assert raised.value.kind is ErrorKind.INVALID


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm), ids=str)
def test_private_key_cannot_leave_the_token(
    store: KeyStore, keys: dict[KeyAlgorithm, PublicKey], algorithm: KeyAlgorithm
) -> None:
    facts = store.key_facts(algorithm.value)
    assert facts.sensitive
    assert facts.always_sensitive
    assert not facts.extractable
    assert facts.never_extractable
    assert facts.key_type == ("EC" if algorithm.is_ec else "RSA")


def test_pkcs11_tool_sees_the_same_flags(hsm: Hsm, keys: dict[KeyAlgorithm, PublicKey]) -> None:
    """An independent PKCS#11 client reads the token files we wrote."""
    listing = subprocess.run(
        [
            "pkcs11-tool",
            "--module",
            str(hsm.config.module),
            "--token-label",
            hsm.config.token_label,
            "--login",
            "--pin",
            hsm.config.user_pin,
            "--list-objects",
        ],
        env={**os.environ, "SOFTHSM2_CONF": str(hsm.config.softhsm_conf)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # Objects start at column 0 ("Private Key Object; EC"), attributes are indented.
    private_keys: dict[str, str] = {}
    for block in re.split(r"\n(?=\S)", listing):
        label = re.search(r"^\s+label:\s+(.*)$", block, re.MULTILINE)
        if block.startswith("Private Key Object") and label:
            private_keys[label.group(1).strip()] = block
    for algorithm in KeyAlgorithm:
        block = private_keys[algorithm.value]
        access = re.search(r"^\s+Access:\s+(.*)$", block, re.MULTILINE)
        assert access, block
        flags = {flag.strip() for flag in access.group(1).split(",")}
        assert {"sensitive", "always sensitive", "never extractable", "local"} <= flags
        assert re.search(r"^\s+Usage:\s+sign$", block, re.MULTILINE), block


def test_generating_an_existing_label_is_refused(
    store: KeyStore, keys: dict[KeyAlgorithm, PublicKey]
) -> None:
    with pytest.raises(HsmError, match="already exists"):
        store.generate(P256.value, KeyAlgorithm.EC_P384)
    assert store.public_key(P256.value).public_numbers() == keys[P256].public_numbers()


@pytest.mark.parametrize(
    "use",
    [
        pytest.param(lambda s: s.public_key("absent"), id="public_key"),
        pytest.param(lambda s: s.sign("absent", b"data", P256_SCHEME), id="sign"),
        pytest.param(lambda s: s.key_facts("absent"), id="key_facts"),
        pytest.param(lambda s: s.destroy("absent"), id="destroy"),
    ],
)
def test_unknown_label_is_key_not_found(store: KeyStore, use: Callable[[KeyStore], object]) -> None:
    with pytest.raises(KeyNotFoundError, match="the signing key is not available") as raised:
        use(store)
    assert "absent" not in raised.value.detail  # the log names the label, the caller does not
    assert not store.has_key("absent")


def test_destroy_removes_both_halves(store: KeyStore) -> None:
    label = _label("doomed")
    public_key = store.generate(label, P256)
    _verify(public_key, store.sign(label, b"data", P256_SCHEME), b"data", P256_SCHEME)
    store.destroy(label)
    assert not store.has_key(label)
    with pytest.raises(KeyNotFoundError):
        store.public_key(label)
    with pytest.raises(KeyNotFoundError):
        store.sign(label, b"data", P256_SCHEME)
    store.generate(label, P256)  # the label is free again
    store.destroy(label)


def test_token_created_after_the_library_loaded_is_found(
    hsm: Hsm, store: KeyStore, keys: dict[KeyAlgorithm, PublicKey]
) -> None:
    """SoftHSM2 lists tokens only at C_Initialize; `sceau init` may add one later."""
    store.has_key(P256.value)  # the library is loaded and a session open
    label, user_pin = _label("late"), _pin()
    ensure_softhsm_token(hsm.home, label, user_pin, _pin())
    late = KeyStore(replace(hsm.config, token_label=label, user_pin=user_pin))
    late_key = late.generate("key", P256)
    _verify(late_key, late.sign("key", b"data", P256_SCHEME), b"data", P256_SCHEME)
    signature = store.sign(P256.value, b"data", P256_SCHEME)  # survives the re-initialisation
    _verify(keys[P256], signature, b"data", P256_SCHEME)
    late.close()


def test_wrong_pin_is_refused_by_the_token(hsm: Hsm) -> None:
    label, user_pin, wrong_pin = _label("pin"), _pin(), _pin()
    ensure_softhsm_token(hsm.home, label, user_pin, _pin())
    with pytest.raises(HsmError) as raised:
        KeyStore(replace(hsm.config, token_label=label, user_pin=wrong_pin)).has_key("x")
    assert raised.value.detail == "the signing device refused the login: PIN incorrect"
    assert wrong_pin not in str(raised.value)
    assert user_pin not in str(raised.value)


def test_wrong_pin_is_refused_while_the_token_is_logged_in(hsm: Hsm, store: KeyStore) -> None:
    """SoftHSM2 would accept any PIN then (the login is the process's): we compare."""
    store.has_key(P256.value)
    wrong_pin = _pin()
    with pytest.raises(HsmError, match="PIN incorrect") as raised:
        KeyStore(replace(hsm.config, user_pin=wrong_pin)).has_key(P256.value)
    assert wrong_pin not in str(raised.value)
    assert hsm.config.user_pin not in str(raised.value)


def test_config_repr_hides_the_pin(hsm: Hsm) -> None:
    assert hsm.config.user_pin not in repr(hsm.config)


def test_another_configuration_is_refused_while_a_session_is_open(
    store: KeyStore, tmp_path: Path
) -> None:
    store.has_key(P256.value)
    label, user_pin = _label("other"), _pin()
    conf = ensure_softhsm_token(tmp_path, label, user_pin, _pin())
    other = KeyStore(HsmConfig(find_softhsm_module(), label, user_pin, conf))
    with pytest.raises(ConfigError, match="one token directory per process"):
        other.has_key("x")


@pytest.fixture(scope="module")
def other_store(hsm: Hsm) -> Iterator[tuple[KeyStore, PublicKey]]:
    """A second token, hence a second PKCS#11 session, with a P-256 key."""
    label, user_pin = _label("test-hsm-other"), _pin()
    ensure_softhsm_token(hsm.home, label, user_pin, _pin())
    key_store = KeyStore(replace(hsm.config, token_label=label, user_pin=user_pin))
    yield key_store, key_store.generate(P256.value, P256)
    key_store.close()


@pytest.mark.parametrize("tokens", [1, 2], ids=["one-session", "two-sessions"])
def test_two_threads_sign_concurrently(
    store: KeyStore,
    keys: dict[KeyAlgorithm, PublicKey],
    other_store: tuple[KeyStore, PublicKey],
    tokens: int,
) -> None:
    """python-pkcs11 serializes operations on one session itself; across sessions only
    the process lock stands between SoftHSM2 and a corrupted heap (a crash, here)."""
    signers = [(store, keys[P256]), (store, keys[P256]) if tokens == 1 else other_store]
    start = threading.Barrier(len(signers))
    results: list[list[tuple[bytes, bytes]]] = [[] for _ in signers]
    errors: list[BaseException] = []

    def sign_many(key_store: KeyStore, out: list[tuple[bytes, bytes]]) -> None:
        try:
            start.wait()
            for i in range(200):
                data = f"{threading.get_ident()}-{i}".encode()
                out.append((data, key_store.sign(P256.value, data, P256_SCHEME)))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=sign_many, args=(key_store, out))
        for (key_store, _), out in zip(signers, results, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for (_, public_key), out in zip(signers, results, strict=True):
        assert len(out) == 200
        for data, signature in out:
            _verify(public_key, signature, data, P256_SCHEME)


def test_forked_child_opens_its_own_session(
    store: KeyStore, keys: dict[KeyAlgorithm, PublicKey]
) -> None:
    store.sign(P256.value, b"parent", P256_SCHEME)  # the parent's session is open
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status only
        status = 1
        try:
            signature = store.sign(P256.value, b"child", P256_SCHEME)
            _verify(keys[P256], signature, b"child", P256_SCHEME)
            store.close()
            status = 0
        finally:
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    signature = store.sign(P256.value, b"parent again", P256_SCHEME)
    _verify(keys[P256], signature, b"parent again", P256_SCHEME)


def test_ensure_softhsm_token_is_idempotent(tmp_path: Path) -> None:
    label = _label("idem")
    user_pin, so_pin = _pin(), _pin()
    conf = ensure_softhsm_token(tmp_path, label, user_pin, so_pin)
    text = conf.read_text()
    assert ensure_softhsm_token(tmp_path, label, user_pin, so_pin) == conf
    assert conf.read_text() == text
    assert f"directories.tokendir = {(tmp_path / 'tokens').resolve()}" in text
    assert (tmp_path / "tokens").stat().st_mode & 0o777 == 0o700
    slots = subprocess.run(
        ["softhsm2-util", "--show-slots"],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert len(re.findall(rf"Label:\s+{label}\s*$", slots, re.MULTILINE)) == 1


def test_softhsm2_util_failure_is_an_hsm_error_without_pins(tmp_path: Path) -> None:
    (tmp_path / "softhsm2.conf").write_text(
        f"directories.tokendir = {tmp_path}\nobjectstore.backend = no-such-backend\n"
    )
    user_pin, so_pin = _pin(), _pin()
    with pytest.raises(HsmError, match="softhsm2-util") as raised:
        ensure_softhsm_token(tmp_path, _label("broken"), user_pin, so_pin)
    assert user_pin not in str(raised.value)
    assert so_pin not in str(raised.value)


@pytest.mark.parametrize(
    ("label", "user_pin", "message"),
    [
        pytest.param("x" * 33, "123456", "longer than 32 bytes", id="long-label"),
        pytest.param("short", "123", "4 to 255 bytes", id="short-pin"),
    ],
)
def test_ensure_softhsm_token_refuses_what_softhsm_would_not_take(
    tmp_path: Path, label: str, user_pin: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        ensure_softhsm_token(tmp_path, label, user_pin, "654321")
