"""The platform API end to end: proofs, issuance, fetch, revocation.

Judged by OpenSSL and pkilint."""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from core import audit
from core.store.models import Certificate
from registration.decisions import approve_proof
from tests.support.builders import LEGAL, NATURAL, csr_pem, rsa_key
from tests.support.judges import etsi_lint, openssl_verify, write_pems
from tests.support.pki import Pki


def proof_id(api: Any, body: dict[str, Any] = NATURAL) -> str:
    resp = api.post("/ra/api/v1/identity-proofs", body)
    assert resp.status_code == 201, resp.json
    return str(resp.json["id"])


def test_person_lcp_end_to_end(pki: Pki, tmp_path: Path) -> None:
    api = pki.client("person-lcp", "seal-lcp")
    proof = api.post("/ra/api/v1/identity-proofs", NATURAL)
    assert proof.status_code == 201
    assert proof.json["status"] == "verified"
    assert "number" not in proof.json["document"]

    resp = api.post(
        "/ca/api/v1/certificates",
        {
            "profile": "person-lcp",
            "identity_proof": proof.json["id"],
            "csr": csr_pem(cn="Mallory Forged"),
        },
    )
    assert resp.status_code == 201, resp.json
    body = resp.json
    assert resp.headers["Location"] == f"/ca/api/v1/certificates/{body['serial']}"

    verified = openssl_verify(tmp_path, body)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    leaf = x509.load_pem_x509_certificate(body["certificate"].encode())
    # The subject comes from the proof, never from the CSR.
    assert "Mallory" not in leaf.subject.rfc4514_string()
    assert leaf.subject.get_attributes_for_oid(x509.NameOID.GIVEN_NAME)[0].value == "Jeanne"
    assert leaf.serial_number.bit_length() >= 64
    linted = etsi_lint(write_pems(tmp_path, body)[0], "NCP-NATURAL-PERSON-CERTIFICATE")
    assert linted.returncode == 0, linted.stdout

    fetched = api.get(f"/ca/api/v1/certificates/{body['serial']}")
    assert fetched.status_code == 200
    assert fetched.json["status"] == "issued"
    assert fetched.json["certificate"] == body["certificate"]
    der = api.get(
        f"/ca/api/v1/certificates/{body['serial']}", headers={"Accept": "application/pkix-cert"}
    )
    assert der.status_code == 200
    assert der.mimetype == "application/pkix-cert"
    assert x509.load_der_x509_certificate(der.data) == leaf

    revoked = api.post(
        f"/ca/api/v1/certificates/{body['serial']}/revoke",
        {"reason": "keyCompromise", "invalidity_date": "2026-01-02T03:04:05Z"},
    )
    assert revoked.status_code == 200, revoked.json
    assert revoked.json["status"] == "revoked"
    assert revoked.json["revocation"]["reason"] == "keyCompromise"
    again = api.post(f"/ca/api/v1/certificates/{body['serial']}/revoke", {"reason": "superseded"})
    assert again.status_code == 409
    assert again.json["type"] == "urn:sceau:problem:conflict"
    assert api.get(f"/ca/api/v1/certificates/{body['serial']}").json["revocation"]["reason"] == (
        "keyCompromise"
    )

    with pki.ctx.db.read() as session:
        checked, broken = audit.verify_chain(session)
    assert broken is None and checked > 0


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(lambda: ec.generate_private_key(ec.SECP384R1()), id="ec-p384"),
        pytest.param(lambda: rsa_key(3072), id="rsa-3072"),
    ],
)
def test_other_subscriber_keys(pki: Pki, tmp_path: Path, key: Any) -> None:
    api = pki.client("person-lcp")
    resp = api.post(
        "/ca/api/v1/certificates",
        {"profile": "person-lcp", "identity_proof": proof_id(api), "csr": csr_pem(key())},
    )
    assert resp.status_code == 201, resp.json
    assert openssl_verify(tmp_path, resp.json).returncode == 0


def test_seal_lcp_after_officer_approval(pki: Pki, tmp_path: Path) -> None:
    api = pki.client("seal-lcp")
    pid = proof_id(api, LEGAL)
    pending = api.post(
        "/ca/api/v1/certificates", {"profile": "seal-lcp", "identity_proof": pid, "csr": csr_pem()}
    )
    assert pending.status_code == 422
    assert "pending" in pending.json["detail"]

    approve_proof(pki.ctx.db, pid, "alice", now=datetime.now(UTC), max_age=timedelta(days=30))
    resp = api.post(
        "/ca/api/v1/certificates", {"profile": "seal-lcp", "identity_proof": pid, "csr": csr_pem()}
    )
    assert resp.status_code == 201, resp.json
    assert openssl_verify(tmp_path, resp.json).returncode == 0
    leaf = write_pems(tmp_path, resp.json)[0]
    linted = etsi_lint(leaf, "NCP-LEGAL-PERSON-CERTIFICATE")
    assert linted.returncode == 0, linted.stdout
    cert = x509.load_pem_x509_certificate(resp.json["certificate"].encode())
    org_id = cert.subject.get_attributes_for_oid(x509.ObjectIdentifier("2.5.4.97"))
    assert org_id[0].value == "NTRFR-732829320"


def test_ca_certificates_and_chain(pki: Pki, tmp_path: Path) -> None:
    from tests.support.judges import BIN, pkix_lint, run

    http = pki.client("person-lcp").http
    root = http.get("/certs/root.crt")
    assert root.status_code == 200 and root.mimetype == "application/pkix-cert"
    (tmp_path / "root.der").write_bytes(root.data)
    for issuer in ("persons", "seals"):
        resp = http.get(f"/certs/{issuer}.crt")
        assert resp.status_code == 200
        path = tmp_path / f"{issuer}.der"
        path.write_bytes(resp.data)
        assert pkix_lint(path).returncode == 0
        chain = run(
            BIN / "lint_pkix_signer_signee_cert_chain",
            "lint",
            "-s",
            "WARNING",
            tmp_path / "root.der",
            path,
        )
        assert chain.returncode == 0, chain.stdout
        run(
            "openssl", "x509", "-inform", "DER", "-in", path, "-out", tmp_path / "i.pem", check=True
        )
        run(
            "openssl",
            "x509",
            "-inform",
            "DER",
            "-in",
            tmp_path / "root.der",
            "-out",
            tmp_path / "r.pem",
            check=True,
        )
        ok = run(
            "openssl", "verify", "-x509_strict", "-CAfile", tmp_path / "r.pem", tmp_path / "i.pem"
        )
        assert ok.returncode == 0, ok.stderr
    assert pkix_lint(tmp_path / "root.der").returncode == 0
    assert http.get("/certs/nope.crt").status_code == 404


def _count(pki: Pki) -> int:
    with pki.ctx.db.read() as session:
        return session.query(Certificate).count()


BAD_REQUESTS = [
    pytest.param({"profile": "nope"}, 422, "unknown-profile", id="unknown-profile"),
    pytest.param({"profile": "seal-qcp-l-qscd"}, 403, "forbidden", id="profile-not-allowed"),
    pytest.param({"profile": "person-lcp", "csr": "garbage"}, 422, "bad-csr", id="garbage-csr"),
    pytest.param(
        {"profile": "person-lcp", "identity_proof": "PNOPE", "csr": None},
        404,
        "not-found",
        id="hsm-key-unknown-proof",
    ),
    pytest.param(
        {"profile": "person-lcp", "identity_proof": "PNOPE"}, 404, "not-found", id="unknown-proof"
    ),
    pytest.param({"profile": "person-lcp", "extra": 1}, 422, "invalid", id="unknown-field"),
    pytest.param({"profile": 7}, 422, "invalid", id="profile-not-string"),
    pytest.param({"profile": "person-lcp", "csr": "rsa2048"}, 422, "bad-key", id="rsa-2048"),
    pytest.param(
        {"profile": "person-lcp", "csr": "badsig"}, 422, "bad-csr", id="csr-bad-signature"
    ),
    pytest.param({"profile": "person-lcp", "csr": "truncated"}, 422, "bad-csr", id="csr-truncated"),
    pytest.param({"profile": "person-lcp", "csr": ""}, 422, "invalid", id="csr-empty"),
    pytest.param({"identity_proof": ["P1"]}, 422, "invalid", id="proof-not-string"),
]


def _bad_csr(kind: str) -> str:
    if kind == "rsa2048":
        return csr_pem(rsa_key(2048))
    good = csr_pem()
    der = x509.load_pem_x509_csr(good.encode()).public_bytes(Encoding.DER)
    # "badsig": bits flipped inside the signature value; otherwise the DER is cut in half.
    der = der[:-4] + bytes(b ^ 0x55 for b in der[-4:]) if kind == "badsig" else der[: len(der) // 2]
    return (
        "-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(der).decode()
        + ("-----END CERTIFICATE REQUEST-----\n")
    )


@pytest.mark.parametrize(("override", "status", "kind"), BAD_REQUESTS)
def test_bad_issuance_requests(pki: Pki, override: dict[str, Any], status: int, kind: str) -> None:
    api = pki.client("person-lcp", "seal-lcp")
    body: dict[str, Any] = {
        "profile": "person-lcp",
        "identity_proof": proof_id(api),
        "csr": csr_pem(),
    }
    body.update(override)
    if body.get("csr") in {"rsa2048", "badsig", "truncated"}:
        body["csr"] = _bad_csr(body["csr"])
    if body.get("csr") is None:
        del body["csr"]
    before = _count(pki)
    resp = api.post("/ca/api/v1/certificates", body)
    assert resp.status_code == status, resp.json
    assert resp.mimetype == "application/problem+json"
    assert resp.json["type"] == f"urn:sceau:problem:{kind}"
    assert resp.json["detail"]
    assert _count(pki) == before


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        pytest.param({"reason": "bored"}, "reason: must be one of unspecified", id="reason"),
        pytest.param({"reason": None}, "reason", id="reason-null"),
        pytest.param({"because": "x"}, "unknown field because", id="unknown-field"),
        pytest.param({"invalidity_date": 1767323045}, "invalidity_date", id="date-number"),
        pytest.param({"invalidity_date": "2026-01-02T03:04:05"}, "time zone", id="date-no-zone"),
        pytest.param({"invalidity_date": "2999-01-01T00:00:00Z"}, "future", id="date-future"),
    ],
)
def test_bad_revocation_requests(pki: Pki, body: dict[str, Any], detail: str) -> None:
    api = pki.client("person-lcp")
    issued = api.post(
        "/ca/api/v1/certificates",
        {"profile": "person-lcp", "identity_proof": proof_id(api), "csr": csr_pem()},
    )
    assert issued.status_code == 201, issued.json
    path = f"/ca/api/v1/certificates/{issued.json['serial']}"
    resp = api.post(f"{path}/revoke", body)
    assert resp.status_code == 422, resp.json
    assert resp.json["type"] == "urn:sceau:problem:invalid"
    assert detail in resp.json["detail"]
    assert api.get(path).json["status"] == "issued"


def test_http_level_bad_input(pki: Pki) -> None:
    api = pki.client("person-lcp")
    path = "/ca/api/v1/certificates"
    cases = [
        (api.http.post(path, data="{}", content_type="application/json"), 401),
        (
            api.http.post(
                path,
                data="{}",
                content_type="application/json",
                headers={"Authorization": "Bearer sceau_forged"},
            ),
            401,
        ),
        (
            api.http.post(
                path,
                data="{}",
                content_type="application/json",
                headers={"Authorization": "Basic Zm9vOmJhcg=="},
            ),
            401,
        ),
        (api.post(path, "x", content_type="text/plain"), 415),
        (
            api.http.post(
                path,
                data="{not json",
                content_type="application/json",
                headers={"Authorization": f"Bearer {api.token}"},
            ),
            400,
        ),
        (
            api.http.post(
                path,
                data="[1, 2]",
                content_type="application/json",
                headers={"Authorization": f"Bearer {api.token}"},
            ),
            400,
        ),
        (
            api.http.post(
                path,
                data=b"{" + b" " * 70000 + b"}",
                content_type="application/json",
                headers={"Authorization": f"Bearer {api.token}"},
            ),
            413,
        ),
        (api.get("/ca/api/v1/certificates/zz-not-hex"), 404),
        (api.get("/ca/api/v1/certificates/0123abcd"), 404),
        (api.post("/ca/api/v1/certificates/0123abcd/revoke", {}), 404),
        (api.http.get(path), 405),
        (api.http.get("/ca/api/v1/nothing-here"), 404),
    ]
    for resp, status in cases:
        assert resp.status_code == status, (resp.request.path, resp.json)
        assert resp.mimetype == "application/problem+json"
    assert cases[0][0].headers["WWW-Authenticate"].startswith("Bearer")


def test_proof_rules(pki: Pki) -> None:
    api = pki.client("person-lcp", "seal-lcp")
    bad = []
    for mutate, status in [
        (lambda b: b.update(subject_kind="robot"), 422),
        (lambda b: b.update(method="telepathy"), 422),
        (lambda b: b["subject"].pop("surname"), 422),
        (lambda b: b["subject"].update(country="France"), 422),
        (lambda b: b["subject"].update(email="not-an-email"), 422),
        (lambda b: b["document"].update(expires_on="2001-01-01"), 422),
        (lambda b: b["document"].update(expires_on="soon"), 422),
        (lambda b: b["document"].update(type="library-card"), 422),
        (lambda b: b.update(extra=True), 422),
        (lambda b: b["subject"].update(given_name="x" * 500), 422),
    ]:
        body = copy.deepcopy(NATURAL)
        mutate(body)
        resp = api.post("/ra/api/v1/identity-proofs", body)
        bad.append((resp.status_code, status, resp.json))
    for got, want, payload in bad:
        assert got == want, payload
    # A legal person cannot be vouched for by the platform: no profile accepts it.
    delegated_legal = copy.deepcopy(LEGAL)
    delegated_legal["method"] = "delegated"
    assert api.post("/ra/api/v1/identity-proofs", delegated_legal).status_code == 403
    for identifier in ("NTRFR-732829321", "VATFR-00732829320", "XYZFR-1", "NTRDE-732829320"):
        body = copy.deepcopy(LEGAL)
        body["subject"]["organization_identifier"] = identifier
        assert api.post("/ra/api/v1/identity-proofs", body).status_code == 422, identifier
    body = copy.deepcopy(LEGAL)
    body["subject"]["organization_identifier"] = "VATFR-44732829320"
    assert api.post("/ra/api/v1/identity-proofs", body).status_code == 201


def test_proof_belongs_to_its_client(pki: Pki) -> None:
    alice, bob = pki.client("person-lcp"), pki.client("person-lcp")
    pid = proof_id(alice)
    assert bob.get(f"/ra/api/v1/identity-proofs/{pid}").status_code == 404
    assert alice.get(f"/ra/api/v1/identity-proofs/{pid}").status_code == 200
    resp = bob.post(
        "/ca/api/v1/certificates",
        {"profile": "person-lcp", "identity_proof": pid, "csr": csr_pem()},
    )
    assert resp.status_code == 404


def test_profile_and_proof_must_match(pki: Pki) -> None:
    api = pki.client("person-lcp", "seal-lcp", "person-qcp-n-qscd")
    natural = proof_id(api)
    resp = api.post(
        "/ca/api/v1/certificates",
        {"profile": "seal-lcp", "identity_proof": natural, "csr": csr_pem()},
    )
    assert resp.status_code == 422 and "legal" in resp.json["detail"]
    # A qualified profile keeps the key in our HSM: a CSR is refused, clearly.
    resp = api.post(
        "/ca/api/v1/certificates",
        {"profile": "person-qcp-n-qscd", "identity_proof": natural, "csr": csr_pem()},
    )
    assert resp.status_code == 422 and "HSM" in resp.json["detail"]
