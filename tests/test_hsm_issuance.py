"""Issuance on a key generated in our HSM: no CSR, a credential for remote signing.

Judged by OpenSSL, pkilint and pkcs11-tool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from core.errors import HsmError
from core.store.models import ApiClient, Certificate, Credential
from signing.custodian import credential_key_label
from tests.support.builders import LEGAL, NATURAL
from tests.support.issuance import approved_proof
from tests.support.judges import etsi_lint, openssl_verify, private_key_blocks, write_pems
from tests.support.pki import Pki


# (profile, proof body, proofing method, officer approvals, pkilint ETSI type, SCAL)
@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            (
                "person-qcp-n-qscd",
                NATURAL,
                "face-to-face",
                1,
                "QCP-N-QSCD-EIDAS-FINAL-CERTIFICATE",
                2,
            ),
            id="person-qcp-n-qscd",
        ),
        pytest.param(
            # NCP: pkilint's type for this profile (its toml)
            ("seal-qcp-l-qscd", LEGAL, "registry", 2, "NCP-LEGAL-PERSON-CERTIFICATE", 2),
            id="seal-qcp-l-qscd",
        ),
        pytest.param(
            ("seal-lcp", LEGAL, "registry", 1, "NCP-LEGAL-PERSON-CERTIFICATE", 1), id="seal-lcp"
        ),
    ],
)
def test_issuance_on_hsm_key(
    pki: Pki, tmp_path: Path, case: tuple[str, dict[str, Any], str, int, str, int]
) -> None:
    profile, body, method, approvals, etsi_type, scal = case
    api = pki.client(profile)
    pid = approved_proof(pki, api, body, method, approvals)
    resp = api.post("/ca/api/v1/certificates", {"profile": profile, "identity_proof": pid})
    assert resp.status_code == 201, resp.json
    credential_id = resp.json["credential_id"]
    verified = openssl_verify(tmp_path, resp.json)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    linted = etsi_lint(write_pems(tmp_path, resp.json)[0], etsi_type)
    assert linted.returncode == 0, linted.stdout

    # The certificate is on the token's key, which the label derived from the id finds.
    label = credential_key_label(credential_id)
    leaf = x509.load_pem_x509_certificate(resp.json["certificate"].encode())
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert leaf.public_key().public_bytes(*spki) == pki.ctx.keys.public_key(label).public_bytes(
        *spki
    )
    block = private_key_blocks(pki.config.hsm)[label]
    assert "sensitive" in block and "never extractable" in block
    assert "extractable" not in block.replace("never extractable", "")

    with pki.ctx.db.read() as session:
        credential = session.get(Credential, credential_id)
        assert credential is not None
        assert credential.status == "active" and credential.scal == scal
        cert = session.get(Certificate, credential.certificate_id)
        assert cert is not None and cert.serial == resp.json["serial"]


def test_failed_issuance_destroys_the_key(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    api = pki.client("person-lcp")
    pid = approved_proof(pki, api, NATURAL, "delegated", 0)

    def refuse(*_args: Any) -> bytes:
        raise HsmError("the token refused to sign (test)")

    monkeypatch.setattr(pki.ctx.keys, "sign", refuse)
    resp = api.post("/ca/api/v1/certificates", {"profile": "person-lcp", "identity_proof": pid})
    assert resp.status_code >= 500, resp.json
    monkeypatch.undo()
    with pki.ctx.db.read() as session:
        client_id = session.scalars(select(ApiClient.id).where(ApiClient.name == api.name)).one()
        credentials = session.scalars(
            select(Credential).where(Credential.client_id == client_id)
        ).all()
    assert len(credentials) == 1
    assert credentials[0].status == "destroyed" and credentials[0].destroyed_at is not None
    assert not pki.ctx.keys.has_key(credentials[0].key_label)
    assert credentials[0].key_label not in private_key_blocks(pki.config.hsm)


def test_refused_proof_generates_no_key(pki: Pki) -> None:
    api = pki.client("person-lcp")
    before = set(private_key_blocks(pki.config.hsm))
    resp = api.post("/ca/api/v1/certificates", {"profile": "person-lcp", "identity_proof": "PNOPE"})
    assert resp.status_code == 404
    assert set(private_key_blocks(pki.config.hsm)) == before
