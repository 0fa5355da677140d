"""OpenSSL against a running `sceau serve` (gunicorn, two workers), on SQLite and PostgreSQL:
good then revoked within a second over POST and GET, SHA-1 and SHA-256 CertIDs, nonces,
never-issued serials, the root's answers for the issuing CAs, unknown issuers; pkilint on
what came over the wire."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from core.accounts.clients import create_client
from core.store.db import Database
from pki.profiles import ProfileSet
from tests.support.builders import NATURAL, csr_pem, foreign_ca
from tests.support.clients import http_request
from tests.support.judges import lint_ocsp, run
from tests.support.ocsp import get_path
from tests.support.pki import BACKENDS, backend_home
from tests.support.servers import SceauServer

# A live server on each backend: the whole module is slow.
pytestmark = pytest.mark.slow


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
        return http_request(self.port, method, path, body or None, headers)

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
        url = f"http://127.0.0.1:{self.port}/ocsp"
        done = run("openssl", "ocsp", *args, "-url", url, "-CAfile", self.root)
        return done.stdout + done.stderr


@pytest.fixture(scope="module", params=BACKENDS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, softhsm_conf: Path
) -> Iterator[Live]:
    config = backend_home(request, tmp_path_factory, softhsm_conf, "ocsp-live")
    tmp = config.home  # the PEM files and the server's log go beside the home's own files
    db = Database(config.database.url)
    try:
        token = create_client(
            db, ProfileSet.load(), "ocsp-live", ["person-lcp"], now=datetime.now(UTC), actor="test"
        )
    finally:
        db.dispose()
    env = {"SOFTHSM2_CONF": str(config.home / "softhsm2.conf")}
    with SceauServer(config.home, tmp / "server.log", workers=2, env=env) as server:
        live = Live(server.port, token, tmp, tmp / "root.pem", tmp / "persons.pem")
        for name, path in (("root", live.root), ("persons", live.persons)):
            status, _, der = live.call("GET", f"/certs/{name}.crt")
            assert status == 200
            cert = x509.load_der_x509_certificate(der)
            path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        yield live


def _get(live: Live, request: Path, encode: str = "standard") -> tuple[dict[str, str], Path]:
    """Fetch the response to a DER request file over GET (RFC 6960 appendix A.1)."""
    status, headers, body = live.call("GET", get_path(request.read_bytes(), encode))
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
        assert lint_ocsp(live.tmp, response.read_bytes()) == ""
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
    assert lint_ocsp(live.tmp, response.read_bytes()) == ""
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
    assert lint_ocsp(live.tmp, response.read_bytes()) == ""


def test_the_root_answers_for_the_issuing_ca(live: Live) -> None:
    out = live.openssl_ocsp("-sha256", "-issuer", live.root, "-cert", live.persons)
    assert "Response verify OK" in out and f"{live.persons}: good" in out, out


def test_unknown_issuers_are_unauthorized(live: Live) -> None:
    leaf = live.issue()
    other = foreign_ca("Another CA")
    path = live.tmp / "other.pem"
    path.write_bytes(other.public_bytes(serialization.Encoding.PEM))
    out = live.openssl_ocsp("-issuer", path, "-cert", leaf)
    assert "Responder Error: unauthorized (6)" in out, out
