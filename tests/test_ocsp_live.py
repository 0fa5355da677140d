"""OpenSSL against a running `sceau serve` (gunicorn, two workers), on SQLite and PostgreSQL:
good then revoked within a second over POST and GET, SHA-1 and SHA-256 CertIDs, nonces,
never-issued serials, the root's answers for the issuing CAs, unknown issuers; pkilint on
what came over the wire."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.accounts.clients import create_client
from core.store.db import Database
from pki.profiles import ProfileSet
from tests.conftest import make_home
from tests.helpers import BIN, NATURAL, csr_pem, run
from tests.test_ocsp import pkilint

HOST = "127.0.0.1"


@dataclass
class Live:
    port: int
    token: str
    tmp: Path
    root: Path  # PEM files
    persons: Path

    def call(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
        try:
            conn.request(method, path, body=body or None, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def api(self, path: str, body: dict[str, Any]) -> Any:
        status, _, data = self.call(
            "POST",
            path,
            json.dumps(body).encode(),
            {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        assert status in {200, 201}, data
        return json.loads(data)

    def issue(self) -> Path:
        """A fresh person-lcp certificate, as a PEM file."""
        proof = self.api("/ra/api/v1/identity-proofs", NATURAL)
        issued = self.api(
            "/ca/api/v1/certificates",
            {"profile": "person-lcp", "identity_proof": proof["id"], "csr": csr_pem()},
        )
        path = self.tmp / f"leaf-{issued['serial']}.pem"
        path.write_text(issued["certificate"])
        return path

    def openssl_ocsp(self, *args: str | Path) -> str:
        """`openssl ocsp` against the server (POST); stdout and stderr together."""
        url = f"http://{HOST}:{self.port}/ocsp"
        done = run("openssl", "ocsp", *args, "-url", url, "-CAfile", self.root)
        return done.stdout + done.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        conn = http.client.HTTPConnection(HOST, port, timeout=2)
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
        conn.close()
        time.sleep(0.2)
    pytest.fail(f"sceau serve did not answer:\n{log.read_text()}")


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, softhsm_conf: Path
) -> Iterator[Live]:
    backend: str = request.param
    tmp = tmp_path_factory.mktemp(f"ocsp-live-{backend}")
    url = None
    if backend == "postgresql":
        url = request.getfixturevalue("pg_cluster").create_database(f"ocsp_{secrets.token_hex(4)}")
    config, _ = make_home(tmp / "home", softhsm_conf, url, f"ocsp-live-{backend}")
    db = Database(config.database.url)
    try:
        token = create_client(
            db, ProfileSet.load(), "ocsp-live", ["person-lcp"], now=datetime.now(UTC), actor="test"
        )
    finally:
        db.dispose()
    port = _free_port()
    log = tmp / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [BIN / "sceau", "--home", config.home, "serve", "--port", str(port), "--workers", "2"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopping it reaches the workers
            env={**os.environ, "SOFTHSM2_CONF": str(config.home / "softhsm2.conf")},
        )
    try:
        _wait_healthy(proc, port, log)
        live = Live(port, token, tmp, tmp / "root.pem", tmp / "persons.pem")
        for name, path in (("root", live.root), ("persons", live.persons)):
            status, _, der = live.call("GET", f"/certs/{name}.crt")
            assert status == 200
            cert = x509.load_der_x509_certificate(der)
            path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        yield live
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _get(live: Live, request: Path, encode: str = "standard") -> tuple[dict[str, str], Path]:
    """Fetch the response to a DER request file over GET (RFC 6960 appendix A.1)."""
    der = request.read_bytes()
    text = base64.b64encode(der).decode()
    if encode == "urlsafe":
        text = base64.urlsafe_b64encode(der).decode().rstrip("=")
    elif encode == "percent":
        text = quote(text, safe="")
    status, headers, body = live.call("GET", f"/ocsp/{text}")
    assert status == 200
    assert headers["Content-Type"] == "application/ocsp-response"
    path = request.with_suffix(f".{encode}.resp.der")
    path.write_bytes(body)
    return headers, path


def _respin(live: Live, response: Path, leaf: Path) -> str:
    done = run(
        "openssl",
        "ocsp",
        "-respin",
        response,
        "-issuer",
        live.persons,
        "-cert",
        leaf,
        "-CAfile",
        live.root,
    )
    return done.stdout + done.stderr


def test_good_then_revoked_within_a_second_over_post_and_get(live: Live) -> None:
    leaf = live.issue()
    request = live.tmp / f"{leaf.stem}.req.der"
    out = live.openssl_ocsp("-issuer", live.persons, "-cert", leaf, "-no_nonce", "-reqout", request)
    assert "Response verify OK" in out and f"{leaf}: good" in out, out
    for encode in ("standard", "urlsafe", "percent"):
        headers, response = _get(live, request, encode)
        out = _respin(live, response, leaf)
        assert "Response verify OK" in out and f"{leaf}: good" in out, out
        assert headers["Cache-Control"].endswith(", public, no-transform, must-revalidate")
        assert {"ETag", "Last-Modified", "Expires"} <= set(headers)
        assert pkilint(live.tmp, response.read_bytes()) == ""
    for _ in range(8):  # both workers now hold "good" in memory
        _get(live, request)

    live.api(f"/ca/api/v1/certificates/{x509_serial(leaf)}/revoke", {"reason": "keyCompromise"})
    revoked = time.monotonic()
    # Until ten answers in a row (POST and GET, whichever worker takes them) say revoked,
    # with the reason, each verified by OpenSSL.
    streak = 0
    while streak < 10:
        assert time.monotonic() - revoked < 1.0, "still good one second after revocation"
        posted = live.openssl_ocsp("-issuer", live.persons, "-cert", leaf, "-no_nonce")
        fetched = _respin(live, _get(live, request)[1], leaf)
        for out in (posted, fetched):
            assert "Response verify OK" in out, out
            ok = f"{leaf}: revoked" in out and "Reason: keyCompromise" in out
            streak = streak + 1 if ok else 0


def x509_serial(pem: Path) -> str:
    return format(x509.load_pem_x509_certificate(pem.read_bytes()).serial_number, "x")


def test_sha256_certids_and_nonces(live: Live) -> None:
    leaf = live.issue()
    response = live.tmp / "nonce.resp.der"
    # OpenSSL sends a nonce unless told not to, and checks it comes back.
    out = live.openssl_ocsp(
        "-sha256", "-issuer", live.persons, "-cert", leaf, "-respout", response, "-resp_text"
    )
    assert "Response verify OK" in out and f"{leaf}: good" in out, out
    assert "Hash Algorithm: sha256" in out and "OCSP Nonce" in out, out
    assert "WARNING" not in out, out
    assert pkilint(live.tmp, response.read_bytes()) == ""
    out = live.openssl_ocsp("-sha256", "-no_nonce", "-issuer", live.persons, "-cert", leaf)
    assert "Response verify OK" in out and f"{leaf}: good" in out, out


def test_never_issued_serials(live: Live) -> None:
    serial = hex(x509.random_serial_number())
    response = live.tmp / "never.resp.der"
    out = live.openssl_ocsp(
        "-issuer", live.persons, "-serial", serial, "-respout", response, "-resp_text"
    )
    assert "Response verify OK" in out, out
    assert f"{serial}: revoked" in out and "Reason: certificateHold" in out, out
    assert "Revocation Time: Jan  1 00:00:00 1970 GMT" in out, out
    assert pkilint(live.tmp, response.read_bytes()) == ""


def test_the_root_answers_for_the_issuing_ca(live: Live) -> None:
    out = live.openssl_ocsp("-sha256", "-issuer", live.root, "-cert", live.persons)
    assert "Response verify OK" in out and f"{live.persons}: good" in out, out


def test_unknown_issuers_are_unauthorized(live: Live) -> None:
    leaf = live.issue()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Another CA")])
    now = datetime.now(UTC)
    other = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path = live.tmp / "other.pem"
    path.write_bytes(other.public_bytes(serialization.Encoding.PEM))
    out = live.openssl_ocsp("-issuer", path, "-cert", leaf)
    assert "Responder Error: unauthorized (6)" in out, out
