"""The HSM going away and coming back (design.md, "Failure"): while the token is gone every
key store operation is an HsmError and the services answer 503 (problem+json, Retry-After),
/readyz says "hsm" is down and /healthz stays 200; once it is back, within a few seconds and
without a restart, signatures, issuance and /readyz work again. The database half of
/readyz: a SQLite home whose file is moved away (the tests run as root, for whom an
unreadable file is still readable), and a PostgreSQL cluster of this module's own that is
stopped and started (the session's is shared by every test and stays up).

Two ways of taking the token away:

* In this process, whose SoftHSM2 configuration is the session's (a process can use only
  one, see core.hsm.keystore): a home of our own, whose token's own directory inside the
  session's token directory is moved out and back. The other tests' tokens stay where they
  are; their sessions are reopened after the library's re-initialisation, as after any loss.
* `sceau serve` (two gunicorn workers) on a home with a SoftHSM2 configuration of its own:
  the directory named by its ``directories.tokendir`` is renamed away and back, as in the
  incident this guards against.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from werkzeug.test import Client as WsgiClient

from core.errors import ErrorKind, SceauError
from core.hsm.algorithms import HashAlgorithm, KeyAlgorithm, Padding, SignatureScheme
from core.hsm.envelope import INDEX_KEY, WRAPPING_KEY
from core.hsm.keystore import RECOVERY_BACKOFF, UNAVAILABLE, HsmUnavailableError, KeyStore
from core.http.readiness import install_readiness
from core.store.db import Database
from pki.context import PkiContext
from sceau.devserver import create_app
from tests.support.builders import NATURAL, csr_pem
from tests.support.clients import http_request
from tests.support.judges import BIN
from tests.support.live import pg_start, pg_stop
from tests.support.pki import Pki, make_home, write_softhsm_conf
from tests.support.postgres import PgCluster, throwaway_cluster
from tests.support.servers import SceauServer
from tests.support.signing import credential, sign_hash

pytestmark = pytest.mark.slow

P256 = KeyAlgorithm.EC_P256
P256_SCHEME = SignatureScheme(HashAlgorithm.SHA256, Padding.ECDSA)
HEAL_WITHIN = 5.0  # seconds after the token is back: the back-off (~1 s) plus slack
PROBLEM_JSON = "application/problem+json"


def wait_until(check: Callable[[], bool], *, timeout: float, every: float = 0.05) -> float:
    """Seconds until ``check()`` is true; AssertionError after ``timeout``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"not within {timeout} s"
        time.sleep(every)
    return time.monotonic() - started


def tokendir_of(conf: Path) -> Path:
    for line in conf.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "directories.tokendir":
            return Path(value.strip())
    raise AssertionError(f"{conf}: no directories.tokendir")


def token_directory(conf: Path, label: str) -> Path:
    """The directory of the token labelled ``label``: SoftHSM2 names it by a UUID and keeps
    the label (blank-padded to 32 bytes) in its token.object."""
    padded = label.encode().ljust(32)
    found = [
        d
        for d in tokendir_of(conf).iterdir()
        if (d / "token.object").is_file() and padded in (d / "token.object").read_bytes()
    ]
    assert len(found) == 1, found
    return found[0]


@contextlib.contextmanager
def moved_away(path: Path, to: Path) -> Iterator[Callable[[], None]]:
    """``path`` renamed to ``to`` inside the block, which calls the function given to bring
    it back; back after the block in any case, so that no later test finds it gone."""
    os.rename(path, to)

    def back() -> None:
        if to.exists() and not path.exists():
            os.rename(to, path)

    try:
        yield back
    finally:
        back()


def secret_label() -> str:
    return f"k-{secrets.token_hex(4)}"


def no_specifics(detail: str, *specifics: str) -> None:
    for word in ("libsofthsm2", "PKCS#11 module", "token '", *specifics):
        assert word not in detail, detail


# -- in this process: a home of our own, its token's directory moved out ------------------


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory, softhsm_conf: Path) -> Iterator[Pki]:
    home = tmp_path_factory.mktemp("hsm-recovery")
    config, _ = make_home(home, softhsm_conf, None, f"recovery-{secrets.token_hex(4)}")
    ctx = PkiContext.open(config)
    yield Pki("sqlite", home, config, ctx, create_app(ctx=ctx, start_jobs=False))
    ctx.db.dispose()


@pytest.fixture
def token_away(own: Pki) -> Iterator[Callable[[], Callable[[], None]]]:
    """Call it to move the home's token out of the token directory: it returns the function
    that brings it back (also done after the test)."""
    assert own.config.hsm.softhsm_conf is not None
    where = token_directory(own.config.hsm.softhsm_conf, own.config.hsm.token_label)
    with contextlib.ExitStack() as stack:

        def away() -> Callable[[], None]:
            return stack.enter_context(moved_away(where, own.home / "token-away"))

        yield away
    # Whatever the test did, the token answers again before the next test starts.
    keys = KeyStore(own.config.hsm)
    wait_until(lambda: _answers(keys), timeout=HEAL_WITHIN)


def _answers(keys: KeyStore) -> bool:
    try:
        keys.check()
    except SceauError:
        return False
    return True


_DIGEST = hashlib.sha256(b"to be signed").digest()

# Each operation, run on a label that exists before the token goes (``victim``, a P-256
# key) or on a fresh one; each must work once the token is back.
_OPERATIONS: dict[str, Callable[[KeyStore, str], object]] = {
    "sign": lambda k, v: k.sign(v, b"data", P256_SCHEME),
    "sign_digest": lambda k, v: k.sign_digest(v, _DIGEST, P256_SCHEME),
    "sign_digests": lambda k, v: k.sign_digests(v, [_DIGEST] * 3, P256_SCHEME),
    "public_key": lambda k, v: k.public_key(v),
    "has_key": lambda k, v: k.has_key(secret_label()),
    "key_facts": lambda k, v: k.key_facts(v),
    "generate": lambda k, v: k.generate(secret_label(), P256),
    "destroy": lambda k, v: k.destroy(v),
    "encrypt": lambda k, v: k.encrypt(WRAPPING_KEY, b"data key", b"record"),
    "decrypt": lambda k, v: k.decrypt(
        WRAPPING_KEY, k.encrypt(WRAPPING_KEY, b"data key", b"record"), b"record"
    ),
    "hmac": lambda k, v: k.hmac_sha256(INDEX_KEY, b"term"),
    "has_secret": lambda k, v: k.has_secret(secret_label()),
    "check": lambda k, v: k.check(),
}


@pytest.mark.parametrize("operation", list(_OPERATIONS))
def test_every_operation_is_an_hsm_error_while_the_token_is_gone_then_works(
    own: Pki, token_away: Callable[[], Callable[[], None]], operation: str
) -> None:
    run = _OPERATIONS[operation]
    keys = KeyStore(own.config.hsm)
    victim = secret_label()
    keys.generate(victim, P256)
    # A new session with a signer handle cached, and no public key: one read before is
    # answered from memory without the token (public data), which is not what is tested.
    keys.close()
    keys.sign(victim, b"warm", P256_SCHEME)
    back = token_away()

    with pytest.raises(HsmUnavailableError) as raised:
        run(keys, victim)
    assert raised.value.kind is ErrorKind.HSM and raised.value.detail == UNAVAILABLE
    no_specifics(raised.value.detail, own.config.hsm.token_label, victim)
    # Within the back-off the library is left alone: the answer is immediate.
    started = time.monotonic()
    with pytest.raises(HsmUnavailableError):
        run(keys, victim)
    assert time.monotonic() - started < RECOVERY_BACKOFF / 4

    back()
    took = wait_until(lambda: _works(lambda: run(keys, victim)), timeout=HEAL_WITHIN)
    assert took < RECOVERY_BACKOFF + 1.0


def _works(call: Callable[[], object]) -> bool:
    try:
        call()
    except SceauError as exc:
        assert exc.kind is ErrorKind.HSM, exc  # never another kind, nor another type
        return False
    return True


def test_a_stale_handle_is_retried_on_a_fresh_session_within_the_call(
    own: Pki, token_away: Callable[[], Callable[[], None]]
) -> None:
    """The token went and came back between two signatures: the cached handle is stale
    (CKR_OBJECT_HANDLE_INVALID) but the token answers, so the next signature succeeds at
    its first call, on a new session, instead of failing once."""
    keys = KeyStore(own.config.hsm)
    victim = secret_label()
    public_key = keys.generate(victim, P256)
    keys.sign(victim, b"warm", P256_SCHEME)
    token_away()()  # away and straight back, no call in between
    signature = keys.sign(victim, b"data", P256_SCHEME)
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(signature, b"data", ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize(
    "cached",
    [
        pytest.param(True, id="signer-cached"),
        # python-pkcs11 0.10.1: a search begun on a session the token no longer knows
        # leaves its SearchIter active (C_FindObjectsInit failed inside __enter__), and
        # its __del__ then raises what C_FindObjectsFinal answers: "Exception ignored in
        # OperationContext.__del__" on stderr, which pytest turns into a warning. The
        # signature itself is made, as the assertion shows.
        pytest.param(
            False,
            id="key-searched",
            marks=pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
        ),
    ],
)
def test_a_session_closed_behind_the_stores_back_is_reopened_within_the_call(
    own: Pki, cached: bool
) -> None:
    """CKR_SESSION_HANDLE_INVALID (a device reset, a network HSM's session dropped) is
    stale, like a handle: the signature succeeds on a fresh session at its first call."""
    keys = KeyStore(own.config.hsm)
    victim = secret_label()
    public_key = keys.generate(victim, P256)
    if cached:
        keys.sign(victim, b"warm", P256_SCHEME)
    else:
        keys.check()
    assert keys._token is not None  # white box: the session under the store
    keys._token.session.close()
    signature = keys.sign(victim, b"data", P256_SCHEME)
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(signature, b"data", ec.ECDSA(hashes.SHA256()))


def test_an_altered_ciphertext_is_refused_without_dropping_the_session(own: Pki) -> None:
    """SoftHSM2 answers CKR_GENERAL_ERROR both for a GCM tag that does not match and for a
    token gone: C_GetTokenInfo tells them apart, so a bad record costs no reconnection."""
    keys = KeyStore(own.config.hsm)
    sealed = bytearray(keys.encrypt(WRAPPING_KEY, b"data key", b"record"))
    sealed[-1] ^= 1
    with pytest.raises(SceauError) as raised:
        keys.decrypt(WRAPPING_KEY, bytes(sealed), b"record")
    assert raised.value.kind is ErrorKind.HSM
    assert not isinstance(raised.value, HsmUnavailableError)
    assert raised.value.detail == "the signing device refused the operation"
    started = time.monotonic()
    keys.hmac_sha256(INDEX_KEY, b"term")  # no back-off: the session is the same
    assert time.monotonic() - started < RECOVERY_BACKOFF / 4


def test_a_module_that_does_not_load_is_unavailable_without_its_path(
    own: Pki, tmp_path: Path
) -> None:
    module = tmp_path / "not-a-pkcs11-module.so"
    module.write_bytes(b"nothing to load")
    keys = KeyStore(replace(own.config.hsm, module=module, softhsm_conf=None))
    for _ in range(2):  # the second within the back-off, without trying again
        with pytest.raises(HsmUnavailableError) as raised:
            keys.sign("any", b"data", P256_SCHEME)
        no_specifics(raised.value.detail, str(module), module.name)


def _readyz(http: Any) -> Any:
    return http.get("/readyz")


def _readyz_until(http: Any, status: int) -> Any:
    """/readyz's first answer with ``status`` (its answer is cached about a second)."""
    answers: list[Any] = []

    def answered() -> bool:
        answers.append(_readyz(http))
        return bool(answers[-1].status_code == status)

    wait_until(answered, timeout=3)
    return answers[-1]


def _problem(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 503, resp.get_data(as_text=True)
    assert resp.mimetype == PROBLEM_JSON
    assert int(resp.headers["Retry-After"]) > 0
    body: dict[str, Any] = json.loads(resp.get_data())
    return body


def _gauge(http: Any, dependency: str) -> float:
    text = http.get("/metrics").get_data(as_text=True)
    prefix = f'sceau_dependency_up{{dependency="{dependency}"}} '
    (line,) = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(line.removeprefix(prefix))


def test_issuance_and_signatures_answer_503_then_heal(
    own: Pki, token_away: Callable[[], Callable[[], None]]
) -> None:
    api = own.client("person-lcp", "seal-lcp")
    seal = credential(own, api, "seal-lcp")["credential_id"]
    proofs = [api.post("/ra/api/v1/identity-proofs", NATURAL).json["id"] for _ in range(2)]
    assert sign_hash(api, seal, [_DIGEST]).status_code == 200
    assert _readyz(api.http).status_code == 200
    back = token_away()

    issued = api.post(
        "/ca/api/v1/certificates",
        {"profile": "person-lcp", "identity_proof": proofs[0], "csr": csr_pem()},
    )
    problem = _problem(issued)
    assert problem["type"] == "urn:sceau:problem:hsm"
    no_specifics(problem["detail"], own.config.hsm.token_label, "sceau-")
    body = _problem(_readyz_until(api.http, 503))
    assert (body["hsm"], body["database"]) == ("down", "ok")
    assert "signing device" in body["detail"]
    no_specifics(body["detail"], own.config.hsm.token_label)
    assert api.http.get("/healthz").status_code == 200
    assert _gauge(api.http, "hsm") == 0

    back()
    took = wait_until(lambda: _readyz(api.http).status_code == 200, timeout=HEAL_WITHIN)
    assert took < RECOVERY_BACKOFF + 2.0  # the readiness cache (1 s) on top of the back-off
    assert _readyz(api.http).json == {"status": "ready", "database": "ok", "hsm": "ok"}
    assert _gauge(api.http, "hsm") == 1
    issued = api.post(
        "/ca/api/v1/certificates",
        {"profile": "person-lcp", "identity_proof": proofs[1], "csr": csr_pem()},
    )
    assert issued.status_code == 201, issued.json
    signed = sign_hash(api, seal, [_DIGEST])
    assert signed.status_code == 200, signed.json


def test_csc_sign_hash_is_temporarily_unavailable_while_the_token_is_gone(
    own: Pki, token_away: Callable[[], Callable[[], None]]
) -> None:
    api = own.client("seal-lcp")
    seal = credential(own, api, "seal-lcp")["credential_id"]
    assert sign_hash(api, seal, [_DIGEST]).status_code == 200
    token_away()
    signed = sign_hash(api, seal, [_DIGEST])
    assert signed.json["error"] == "temporarily_unavailable", signed.json
    assert signed.status_code == 503 and int(signed.headers["Retry-After"]) > 0
    no_specifics(signed.json["error_description"], own.config.hsm.token_label, "sceau-")


def test_readyz_names_the_database_when_its_file_is_gone(own: Pki) -> None:
    http = WsgiClient(own.app)  # /readyz asks for no token
    database = own.home / "sceau.db"
    assert database.is_file()
    assert _readyz(http).status_code == 200
    with moved_away(database, own.home / "sceau.db.away") as back:
        body = _problem(_readyz_until(http, 503))
        assert (body["database"], body["hsm"]) == ("down", "ok")
        assert body["detail"] == "not ready: the database does not answer"
        assert str(own.home) not in json.dumps(body)
        assert http.get("/healthz").status_code == 200
        assert _gauge(http, "database") == 0
        back()
        wait_until(lambda: _readyz(http).status_code == 200, timeout=3)
    assert not (own.home / "sceau.db.away").exists()
    assert _gauge(http, "database") == 1


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgCluster]:
    """A PostgreSQL cluster that only this module stops."""
    cluster = throwaway_cluster(tmp_path_factory.mktemp("pg-readiness"))
    yield cluster
    cluster.stop()


@pytest.mark.postgres
def test_readyz_names_the_database_while_postgresql_is_stopped(
    own: Pki, own_cluster: PgCluster
) -> None:
    db = Database(own_cluster.create_database("readiness"))
    app = Flask(__name__)
    install_readiness(app, db, own.ctx.keys)
    http = WsgiClient(app)
    try:
        assert _readyz(http).status_code == 200  # a pooled connection, kept
        pg_stop(own_cluster)
        try:
            body = _problem(_readyz_until(http, 503))
            assert (body["database"], body["hsm"]) == ("down", "ok")
            assert body["detail"] == "not ready: the database does not answer"
            assert str(own_cluster.socket_dir) not in json.dumps(body)
        finally:
            pg_start(own_cluster)
        # The pool's connections died with the server: pre-ping replaces them.
        wait_until(lambda: _readyz(http).status_code == 200, timeout=HEAL_WITHIN)
    finally:
        db.dispose()


def test_a_probe_storm_is_answered_from_the_cache(own: Pki) -> None:
    http = WsgiClient(own.app)
    assert _readyz(http).status_code == 200
    checks: list[None] = []
    original = KeyStore.check

    def counted(keys: KeyStore) -> None:
        checks.append(None)
        original(keys)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(KeyStore, "check", counted)
        started = time.monotonic()
        for _ in range(200):
            assert _readyz(http).status_code == 200
        elapsed = time.monotonic() - started
    assert len(checks) <= 1 + int(elapsed)  # one check a second at most


# -- `sceau serve` on a home of its own: its token directory renamed ------------------------


def _sceau(home: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "sceau"), "--home", str(home), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_sceau_serve_heals_when_its_token_directory_comes_back(tmp_path: Path) -> None:
    (tmp_path / "softhsm").mkdir()
    conf = write_softhsm_conf(tmp_path / "softhsm")  # a token directory of its own
    home = tmp_path / "home"
    home.mkdir()
    (home / "softhsm2.conf").write_text(conf.read_text())
    env = {"SOFTHSM2_CONF": str(home / "softhsm2.conf")}
    _sceau(home, env, "init", "--token-label", "hsm-recovery-live")
    token = _sceau(home, env, "client", "add", "live", "--profile", "person-lcp")
    auth = {"Authorization": f"Bearer {token.strip().splitlines()[-1]}"}
    tokendir = tokendir_of(home / "softhsm2.conf")

    with SceauServer(home, tmp_path / "server.log", workers=2, env=env) as server:

        def call(method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
            data = None if body is None else json.dumps(body).encode()
            headers = {**auth, "Content-Type": "application/json"} if data else auth
            status, got, raw = http_request(server.port, method, path, data, headers)
            return status, got, json.loads(raw) if raw else None

        def issue() -> int:
            """A proof (sealed in the token), then a certificate on it: the first status
            that is not 201, else 201."""
            status, _, body = call("POST", "/ra/api/v1/identity-proofs", NATURAL)
            if status != 201:
                return status
            request = {"profile": "person-lcp", "identity_proof": body["id"], "csr": csr_pem()}
            return call("POST", "/ca/api/v1/certificates", request)[0]

        assert issue() == 201
        proofs = [call("POST", "/ra/api/v1/identity-proofs", NATURAL)[2]["id"] for _ in range(4)]
        with moved_away(tokendir, tokendir.with_name("tokens.away")) as back:
            for proof in proofs:  # two workers: each finds its token gone by itself
                request = {"profile": "person-lcp", "identity_proof": proof, "csr": csr_pem()}
                status, headers, body = call("POST", "/ca/api/v1/certificates", request)
                assert status == 503, body
                assert headers["Content-Type"] == PROBLEM_JSON and int(headers["Retry-After"]) > 0
                assert body["detail"] == UNAVAILABLE
            wait_until(lambda: call("GET", "/readyz")[0] == 503, timeout=3)
            status, headers, body = call("GET", "/readyz")
            assert status == 503 and body["hsm"] == "down" and "Retry-After" in headers
            assert call("GET", "/healthz")[0] == 200
            back()
            # Each worker finds the token again by itself, at its first call after its
            # back-off: issuance works once four in a row (spread over both) succeed.
            ready = wait_until(lambda: call("GET", "/readyz")[0] == 200, timeout=HEAL_WITHIN)
            issuing = wait_until(lambda: all(issue() == 201 for _ in range(4)), timeout=HEAL_WITHIN)
        assert ready < HEAL_WITHIN and issuing < HEAL_WITHIN
        log = (tmp_path / "server.log").read_text()
        assert "answers again" in log
