"""Other tools judge our tokens: `openssl ts` (query and verify), pyHanko's timestamp
client and validator, against the WSGI application and a live `sceau serve`; pkilint
judges the TSU certificate."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from werkzeug.test import Client as WsgiClient

from core.http.service import provided
from pki.context import PkiContext
from pki.issuers import IssuerRegistry
from pki.profiles import ProfileKind
from pki.signers import current_signer
from tests.support.clients import http_request
from tests.support.judges import BIN, pkix_lint, run
from tests.support.pki import Pki, make_home
from tests.support.servers import SceauServer
from tests.support.tsa import QUERY, REPLY, FakeClock, Tsa, devserver_records, tsu
from tsa.app import create_app
from tsa.views import TsaService


@pytest.fixture
def wsgi(pki: Pki) -> Iterator[WsgiClient]:
    """A client of every service in one application (pki.app); the records of its tokens
    are written before the test ends (and the session's database goes away)."""
    yield WsgiClient(pki.app)
    assert devserver_records(pki).flush()


@pytest.fixture
def pems(pki: Pki, tmp_path: Path) -> tuple[Path, Path]:
    """The root (trust anchor) and the TSU certificate, as PEM files."""
    root, unit = tmp_path / "root.pem", tmp_path / "tsu.pem"
    root_der = pki.ctx.issuers.get("root").certificate
    root.write_bytes(x509.load_der_x509_certificate(root_der).public_bytes(Encoding.PEM))
    unit.write_bytes(
        x509.load_der_x509_certificate(tsu(pki).certificate).public_bytes(Encoding.PEM)
    )
    return root, unit


def openssl_query(data: Path, *args: str) -> bytes:
    return subprocess.run(
        ["openssl", "ts", "-query", "-data", str(data), *args], capture_output=True, check=True
    ).stdout


def openssl_verify(data: Path, reply: Path, pems: tuple[Path, Path]) -> str:
    root, unit = pems
    done = run(
        *("openssl", "ts", "-verify", "-data", data, "-in", reply),
        *("-CAfile", root, "-untrusted", unit),
    )
    return done.stdout + done.stderr


@pytest.mark.parametrize("digest", ["-sha256", "-sha384", "-sha512"])
@pytest.mark.parametrize(
    "flags",
    [
        pytest.param(["-cert"], id="nonce-cert"),
        pytest.param([], id="nonce-nocert"),
        pytest.param(["-cert", "-no_nonce"], id="nononce-cert"),
        pytest.param(["-no_nonce"], id="nononce-nocert"),
    ],
)
def test_openssl_verifies(
    wsgi: WsgiClient, pems: tuple[Path, Path], tmp_path: Path, digest: str, flags: list[str]
) -> None:
    """The issue's judge: openssl ts -query | POST /tsa | openssl ts -verify -data F."""
    data = tmp_path / "invoice.xml"
    data.write_bytes(os.urandom(3000))
    tsq = openssl_query(data, digest, *flags)
    answer = wsgi.post("/tsa", data=tsq, content_type=QUERY)
    assert answer.status_code == 200 and answer.mimetype == REPLY
    reply = tmp_path / "r.tsr"
    reply.write_bytes(answer.data)
    assert "Verification: OK" in openssl_verify(data, reply, pems)
    # The token answers this query (nonce, imprint, policy) and not another's.
    (tmp_path / "q.tsq").write_bytes(tsq)
    root, unit = pems
    done = run(
        *("openssl", "ts", "-verify", "-queryfile", tmp_path / "q.tsq", "-in", reply),
        *("-CAfile", root, "-untrusted", unit),
    )
    assert "Verification: OK" in done.stdout, done.stderr
    text = run("openssl", "ts", "-reply", "-in", reply, "-text").stdout
    assert "Status: Granted." in text and "Ordering: no" in text
    assert "Accuracy: 0x01 seconds" in text
    other = tmp_path / "other.xml"
    other.write_bytes(b"not the data")
    assert "Verification: OK" not in openssl_verify(other, reply, pems)


@pytest.fixture(scope="module")
def rsa_tsa(tmp_path_factory: pytest.TempPathFactory, softhsm_conf: Path) -> Iterator[Tsa]:
    """A PKI (SQLite) whose TSU key is RSA-3072: `sceau init`, [tsa] key_algorithm
    changed, `sceau init` again, as an operator would."""
    home = tmp_path_factory.mktemp("home-rsa-tsu")
    make_home(home, softhsm_conf, None, "test-rsa-tsu")
    # Signer key labels have a one-second resolution (pki.signers): a second ceremony within
    # the same second would find the first key under the new label and reuse it.
    time.sleep(1.0 - time.time() % 1.0 + 0.05)
    toml = home / "sceau.toml"
    toml.write_text(
        toml.read_text().replace('key_algorithm = "ec-p256"', 'key_algorithm = "rsa-3072"')
    )
    config, _ = make_home(home, softhsm_conf, None, "test-rsa-tsu")
    ctx = PkiContext.open(config)
    app = create_app(ctx, clock=FakeClock())
    service = provided(TsaService, app)
    yield Tsa(app, WsgiClient(app), service, FakeClock())
    service.authority.records.close()
    ctx.db.dispose()


@pytest.mark.slow  # a second key ceremony of its own, a second apart
def test_openssl_verifies_rsa_tsu(rsa_tsa: Tsa, tmp_path: Path) -> None:
    ctx = rsa_tsa.service.authority
    signer = current_signer(ctx.db, ProfileKind.TSU, "root", datetime.now(UTC))
    assert signer is not None and signer.key_algorithm == "rsa-3072"
    root_der = IssuerRegistry(ctx.db).get("root").certificate
    pems = (tmp_path / "root.pem", tmp_path / "tsu.pem")
    for path, der in zip(pems, (root_der, signer.certificate), strict=True):
        path.write_bytes(x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM))
    data = tmp_path / "invoice.xml"
    data.write_bytes(os.urandom(1000))
    for args in (["-sha256", "-cert"], ["-sha512", "-no_nonce"]):
        answer = rsa_tsa.post(openssl_query(data, *args))
        (tmp_path / "r.tsr").write_bytes(answer.data)
        assert "Verification: OK" in openssl_verify(data, tmp_path / "r.tsr", pems)


def test_openssl_reads_a_rejection(wsgi: WsgiClient, tmp_path: Path) -> None:
    data = tmp_path / "f"
    data.write_bytes(b"x")
    tsq = openssl_query(data, "-sha1")
    answer = wsgi.post("/tsa", data=tsq, content_type=QUERY)
    reply = tmp_path / "r.tsr"
    reply.write_bytes(answer.data)
    text = run("openssl", "ts", "-reply", "-in", reply, "-text").stdout
    assert "Status: Rejected." in text and "unrecognized or unsupported algorithm" in text, text


def test_tsu_certificate_passes_pkilint(pki: Pki, tmp_path: Path) -> None:
    path = tmp_path / "tsu.der"
    path.write_bytes(tsu(pki).certificate)
    linted = pkix_lint(path)
    assert linted.returncode == 0, linted.stdout
    eku = asn1_x509.Certificate.load(tsu(pki).certificate).extended_key_usage_value
    assert eku is not None and eku.native == ["time_stamping"]


# -- a live server ------------------------------------------------------------------------------


@pytest.fixture
def live(pki: Pki, tmp_path: Path) -> Iterator[int]:
    """`sceau serve` on the test PKI's home, on a free loopback port: the port."""
    with SceauServer(pki.home, tmp_path / "serve.log", workers=1, threads=2) as server:
        yield server.port


# pyHanko as a signing platform uses a TSA: HTTPTimeStamper (which checks the nonce), then
# its validator, trusting our root only. In a process of its own: importing pyHanko
# registers its own ASN.1 types in asn1crypto's global tables (qcStatements among them),
# which would change how the rest of the test session encodes certificates.
PYHANKO_CLIENT = """
import asyncio, hashlib, json, sys
from asn1crypto import x509
from pyhanko.sign.timestamps import HTTPTimeStamper
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
from pyhanko_certvalidator import ValidationContext

url, root_path = sys.argv[1], sys.argv[2]
digest = hashlib.sha256(b"a PAdES signature value").digest()

async def main():
    token = await HTTPTimeStamper(url).async_timestamp(digest, "sha256")
    root = x509.Certificate.load(open(root_path, "rb").read())
    context = ValidationContext(trust_roots=[root], allow_fetching=False)
    status = await validate_tst_signed_data(token["content"], context, lambda _: digest)
    tst = token["content"]["encap_content_info"]["content"].parsed
    print(json.dumps({
        "intact": status["intact"],
        "valid": status["valid"],
        "trust_problem_indic": str(status["trust_problem_indic"]),
        "imprint_ok": tst["message_imprint"]["hashed_message"].native == digest,
    }))

asyncio.run(main())
"""


@pytest.mark.slow
def test_live_server_openssl_and_pyhanko(
    live: int, pki: Pki, pems: tuple[Path, Path], tmp_path: Path
) -> None:
    # As the check: openssl ts -query | curl --data-binary @- | openssl ts -verify.
    data = tmp_path / "contract.pdf"
    data.write_bytes(os.urandom(5000))
    tsq = openssl_query(data, "-sha256", "-cert")
    status, headers, reply = http_request(live, "POST", "/tsa", tsq, {"Content-Type": QUERY})
    assert (status, headers.get("Content-Type")) == (200, REPLY)
    (tmp_path / "r.tsr").write_bytes(reply)
    assert "Verification: OK" in openssl_verify(data, tmp_path / "r.tsr", pems)

    root = tmp_path / "root.der"
    root.write_bytes(pki.ctx.issuers.get("root").certificate)
    done = run(BIN / "python", "-c", PYHANKO_CLIENT, f"http://127.0.0.1:{live}/tsa", root)
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout.strip().splitlines()[-1])
    assert verdict == {
        "intact": True,
        "valid": True,
        "trust_problem_indic": "None",
        "imprint_ok": True,
    }, done.stderr
