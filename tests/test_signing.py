"""Remote signing over the CSC API v2 (``/csc/v2/``) with keys generated in our HSM.

Signatures judged by OpenSSL against the certificate's public key."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from core.store.models import Credential, SignatureActivation
from signing.custodian import credential_key_label
from signing.engine import SigningEngine
from signing.otp import FileOtpSender
from signing.requests import (
    AuthorizeRequest,
    CredentialInfoRequest,
    CredentialListRequest,
    CscRequest,
    SendOtpRequest,
    ServiceInfoRequest,
    SignHashRequest,
)
from tests.support.judges import run
from tests.support.pki import Pki
from tests.support.signing import (
    ECDSA_SHA256,
    authorize,
    credential,
    otp,
    sign_hash,
    signed_calls,
)

EC_PUBLIC_KEY = "1.2.840.10045.2.1"
SHA256 = "2.16.840.1.101.3.4.2.1"
SHA384 = "2.16.840.1.101.3.4.2.2"


def test_seal_signs_unattended_and_openssl_verifies(pki: Pki, tmp_path: Path) -> None:
    api = pki.client("seal-lcp")
    issued = credential(pki, api, "seal-lcp")
    cid = issued["credential_id"]
    assert api.post("/csc/v2/credentials/list", {}).json["credentialIDs"] == [cid]
    info = api.post(
        "/csc/v2/credentials/info", {"credentialID": cid, "certificates": "chain", "certInfo": True}
    )
    assert info.status_code == 200, info.json
    assert info.json["SCAL"] == "1" and info.json["authMode"] == "implicit"
    assert info.json["auth"] == {"mode": "implicit"} and "OTP" not in info.json
    assert info.json["signatureQualifier"] == "eu_eidas_aeseal"
    assert info.json["key"] == {
        "status": "enabled",
        "algo": [EC_PUBLIC_KEY, ECDSA_SHA256, "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4"],
        "len": 256,
        "curve": "1.2.840.10045.3.1.7",
    }
    assert info.json["cert"]["serialNumber"] == issued["serial"]
    certs = [base64.b64decode(c) for c in info.json["cert"]["certificates"]]
    assert len(certs) == 3 and info.json["cert"]["status"] == "valid"

    documents = [f"invoice {i}".encode() for i in range(3)]
    digests = [hashlib.sha256(d).digest() for d in documents]
    resp = sign_hash(api, cid, digests)
    assert resp.status_code == 200, resp.json
    signatures = [base64.b64decode(s) for s in resp.json["signatures"]]
    # A bare key OID with the hash named apart gives the same kind of signature.
    again = sign_hash(api, cid, digests[:1], signAlgo=EC_PUBLIC_KEY, hashAlgorithmOID=SHA256)
    assert again.status_code == 200, again.json
    signatures.append(base64.b64decode(again.json["signatures"][0]))
    documents.append(documents[0])

    (tmp_path / "leaf.der").write_bytes(certs[0])
    pub = run(
        "openssl", "x509", "-inform", "DER", "-in", tmp_path / "leaf.der", "-noout", "-pubkey"
    )
    (tmp_path / "pub.pem").write_text(pub.stdout)
    for i, (document, signature) in enumerate(zip(documents, signatures, strict=True)):
        (tmp_path / f"doc{i}").write_bytes(document)
        (tmp_path / f"sig{i}").write_bytes(signature)
        verified = run(
            "openssl",
            "dgst",
            "-sha256",
            "-verify",
            tmp_path / "pub.pem",
            "-signature",
            tmp_path / f"sig{i}",
            tmp_path / f"doc{i}",
        )
        assert verified.returncode == 0 and "Verified OK" in verified.stdout, verified.stderr
    (tmp_path / "digest").write_bytes(digests[1])
    raw = run(
        "openssl",
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        tmp_path / "pub.pem",
        "-in",
        tmp_path / "digest",
        "-sigfile",
        tmp_path / "sig1",
    )
    assert raw.returncode == 0, raw.stdout + raw.stderr


def test_bad_sign_requests_sign_nothing(pki: Pki) -> None:
    api = pki.client("seal-lcp", "person-qcp-n-qscd")
    cid = credential(pki, api, "seal-lcp")["credential_id"]
    qscd = credential(pki, api, "person-qcp-n-qscd")["credential_id"]
    other = pki.client("seal-lcp")
    digest = hashlib.sha256(b"x").digest()
    before = signed_calls(pki)
    cases = [
        (sign_hash(other, cid, [digest]), 400, "invalid_request", "credentialID"),
        (sign_hash(api, "cred-nope", [digest]), 400, "invalid_request", "credentialID"),
        (sign_hash(api, cid, [digest[:31]]), 400, "invalid_request", "digest value length"),
        (
            sign_hash(api, cid, [digest], hashAlgorithmOID=SHA384),
            400,
            "invalid_request",
            "contradicts",
        ),
        (sign_hash(api, cid, [digest] * 101), 400, "invalid_request", "Too many"),
        (sign_hash(api, cid, []), 400, "invalid_request", "hashes"),
        (
            sign_hash(api, cid, [digest], signAlgo="1.2.840.113549.1.1.11"),
            400,
            "invalid_request",
            "cannot",
        ),
        (sign_hash(api, cid, [digest], signAlgo="1.2.3"), 400, "invalid_request", "signAlgo"),
        (
            api.post(
                "/csc/v2/signatures/signHash",
                {"credentialID": cid, "hashes": ["%%"], "signAlgo": ECDSA_SHA256},
            ),
            400,
            "invalid_request",
            "Base64",
        ),
        # The platform's token alone never signs with a qualified key.
        (sign_hash(api, qscd, [digest]), 403, "access_denied", "SAD"),
        (
            api.http.post("/csc/v2/signatures/signHash", json={"credentialID": cid}),
            401,
            "invalid_token",
            "Bearer",
        ),
    ]
    for resp, status, error, words in cases:
        assert resp.status_code == status, resp.json
        assert resp.json["error"] == error
        assert words in resp.json["error_description"], resp.json
    assert other.post("/csc/v2/credentials/info", {"credentialID": cid}).status_code == 400
    assert other.post("/csc/v2/credentials/list", {}).json["credentialIDs"] == []
    assert signed_calls(pki) == before


def test_revocation_stops_signing_at_once(pki: Pki) -> None:
    api = pki.client("seal-lcp")
    issued = credential(pki, api, "seal-lcp")
    digest = hashlib.sha256(b"x").digest()
    assert sign_hash(api, issued["credential_id"], [digest]).status_code == 200
    revoked = api.post(
        f"/ca/api/v1/certificates/{issued['serial']}/revoke", {"reason": "keyCompromise"}
    )
    assert revoked.status_code == 200
    before = signed_calls(pki)
    resp = sign_hash(api, issued["credential_id"], [digest])
    assert resp.status_code == 400 and "revoked" in resp.json["error_description"]
    info = api.post("/csc/v2/credentials/info", {"credentialID": issued["credential_id"]})
    assert info.json["key"]["status"] == "disabled" and info.json["cert"]["status"] == "revoked"
    assert signed_calls(pki) == before


def test_info_and_openapi(pki: Pki) -> None:
    http = pki.client("seal-lcp").http
    info = http.post("/csc/v2/info", json={})
    assert info.status_code == 200 and info.json is not None
    assert info.json["specs"] == "2.0.0.2"
    assert http.get("/csc/v2/info").json == info.json  # no body: nothing to parse
    spec = http.get("/csc/v2/openapi.json")
    assert spec.status_code == 200 and spec.json is not None
    # Each request body is its model's JSON Schema, self-contained (no $defs to resolve).
    calls: list[tuple[str, type[CscRequest]]] = [
        ("info", ServiceInfoRequest),
        ("credentials/list", CredentialListRequest),
        ("credentials/info", CredentialInfoRequest),
        ("credentials/sendOTP", SendOtpRequest),
        ("credentials/authorize", AuthorizeRequest),
        ("signatures/signHash", SignHashRequest),
    ]
    for call, model in calls:
        body = spec.json["paths"][f"/csc/v2/{call}"]["post"]["requestBody"]
        schema = body["content"]["application/json"]["schema"]
        assert schema == model.model_json_schema() and "$defs" not in schema, call
        assert body["required"] is (call not in ("info", "credentials/list")), call
    sign = spec.json["paths"]["/csc/v2/signatures/signHash"]["post"]["requestBody"]
    assert sign["content"]["application/json"]["schema"]["required"] == [
        "credentialID",
        "hashes",
        "signAlgo",
    ]


def test_sole_control_for_qualified_keys(pki: Pki, tmp_path: Path) -> None:
    api = pki.client("person-qcp-n-qscd")
    issued = credential(pki, api, "person-qcp-n-qscd")
    cid = issued["credential_id"]
    info = api.post("/csc/v2/credentials/info", {"credentialID": cid}).json
    assert info["SCAL"] == "2" and info["authMode"] == "explicit"
    digests = [hashlib.sha256(b"contract").digest(), hashlib.sha256(b"annex").digest()]
    before = signed_calls(pki)

    code = otp(pki, api, cid)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    bad = authorize(api, cid, digests, wrong)
    assert bad.status_code == 400 and bad.json["error"] == "invalid_otp"
    granted = authorize(api, cid, digests, code)
    assert granted.status_code == 200, granted.json
    sad = granted.json["SAD"]
    assert granted.json["expiresIn"] == pki.config.signing.sad_ttl_seconds
    # The OTP works once.
    assert authorize(api, cid, digests, code).json["error"] == "invalid_otp"

    # The SAD is bound to the exact hashes and their count.
    assert sign_hash(api, cid, digests[:1], SAD=sad).status_code == 400
    assert sign_hash(api, cid, digests[::-1], SAD=sad).status_code == 400
    assert sign_hash(api, cid, digests, SAD="forged").status_code == 400
    assert signed_calls(pki) == before
    resp = sign_hash(api, cid, digests, SAD=sad)
    assert resp.status_code == 200, resp.json
    # ... and works once.
    replay = sign_hash(api, cid, digests, SAD=sad)
    assert replay.status_code == 400 and "already used" in replay.json["error_description"]
    assert signed_calls(pki) == before + 1

    cert = tmp_path / "leaf.pem"
    cert.write_text(issued["certificate"])
    pub = run("openssl", "x509", "-in", cert, "-noout", "-pubkey")
    (tmp_path / "pub.pem").write_text(pub.stdout)
    (tmp_path / "doc").write_bytes(b"contract")
    (tmp_path / "sig").write_bytes(base64.b64decode(resp.json["signatures"][0]))
    verified = run(
        "openssl",
        "dgst",
        "-sha256",
        "-verify",
        tmp_path / "pub.pem",
        "-signature",
        tmp_path / "sig",
        tmp_path / "doc",
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_otp_lockout_and_sad_expiry(pki: Pki) -> None:
    api = pki.client("person-qcp-n-qscd")
    cid = credential(pki, api, "person-qcp-n-qscd")["credential_id"]
    digests = [hashlib.sha256(b"x").digest()]
    code = otp(pki, api, cid)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(pki.config.signing.otp_max_attempts):
        assert authorize(api, cid, digests, wrong).json["error"] == "invalid_otp"
    locked = authorize(api, cid, digests, code)
    assert locked.status_code == 400 and "too many" in locked.json["error_description"]
    # Another client never sees the credential, OTP or not.
    assert authorize(pki.client("person-qcp-n-qscd"), cid, digests, code).status_code == 400

    sad = authorize(api, cid, digests, otp(pki, api, cid)).json["SAD"]
    with pki.ctx.db.write() as session:
        session.execute(
            update(SignatureActivation)
            .where(SignatureActivation.credential_id == cid)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    expired = sign_hash(api, cid, digests, SAD=sad)
    assert expired.status_code == 400 and "expired" in expired.json["error_description"]
    # A SCAL1 credential has no OTP to send.
    seal = pki.client("seal-lcp")
    seal_id = credential(pki, seal, "seal-lcp")["credential_id"]
    assert seal.post("/csc/v2/credentials/sendOTP", {"credentialID": seal_id}).status_code == 400


def test_retired_keys_are_destroyed_after_the_grace_period(pki: Pki) -> None:
    api = pki.client("seal-lcp")
    issued = credential(pki, api, "seal-lcp")
    kept = credential(pki, api, "seal-lcp")
    revoked = api.post(
        f"/ca/api/v1/certificates/{issued['serial']}/revoke", {"reason": "superseded"}
    )
    assert revoked.status_code == 200
    signing = pki.config.signing
    engine = SigningEngine(
        pki.ctx.db,
        pki.ctx.keys,
        pki.ctx.issuers,
        signing,
        FileOtpSender(pki.home / signing.otp_outbox),
        pki.ctx.sealer,
    )
    now = datetime.now(UTC)
    label = credential_key_label(issued["credential_id"])
    engine.destroy_retired_keys(now)
    assert pki.ctx.keys.has_key(label)  # within the grace period: kept, though unusable
    assert engine.destroy_retired_keys(now + timedelta(days=signing.key_grace_days, hours=1)) >= 1
    assert not pki.ctx.keys.has_key(label)
    assert pki.ctx.keys.has_key(credential_key_label(kept["credential_id"]))
    with pki.ctx.db.read() as session:
        row = session.get(Credential, issued["credential_id"])
        assert row is not None and row.status == "destroyed" and row.destroyed_at is not None
    listed = api.post("/csc/v2/credentials/list", {}).json["credentialIDs"]
    assert listed == [kept["credential_id"]]


def test_csc_conformance_of_info_and_parameters(pki: Pki) -> None:
    """CSC v2.0.0.2 11.5 credentials/info (certificates none/single/chain, auth and the
    v1 OTP object of a SCAL2 credential), and the v1 parameter names pyHanko sends."""
    api = pki.client("person-qcp-n-qscd", "seal-lcp")
    qscd = credential(pki, api, "person-qcp-n-qscd")["credential_id"]
    info = api.post("/csc/v2/credentials/info", {"credentialID": qscd}).json
    assert info["SCAL"] == "2" and info["authMode"] == "explicit"
    assert info["signatureQualifier"] == "eu_eidas_qes" and info["multisign"] == 100
    assert info["auth"]["mode"] == "explicit"
    assert [o["type"] for o in info["auth"]["objects"]] == ["OTP"]
    assert info["OTP"]["presence"] == "true" and info["OTP"]["type"] == "online"
    assert len(info["cert"]["certificates"]) == 1  # "single" is the default
    assert "subjectDN" not in info["cert"]  # certInfo defaults to false
    none = api.post("/csc/v2/credentials/info", {"credentialID": qscd, "certificates": "none"})
    assert "certificates" not in none.json["cert"] and none.json["cert"]["status"] == "valid"
    chain = api.post("/csc/v2/credentials/info", {"credentialID": qscd, "certificates": "chain"})
    assert len(chain.json["cert"]["certificates"]) == 3
    for body, words in [
        ({"certificates": "all"}, "Invalid parameter certificates"),
        ({"certInfo": "yes"}, "Invalid parameter certInfo"),
    ]:
        bad = api.post("/csc/v2/credentials/info", {"credentialID": qscd, **body})
        assert bad.status_code == 400 and bad.json["error_description"] == words, bad.json

    digest = hashlib.sha256(b"x").digest()
    for num, words in [
        ("1", "Missing (or invalid type) integer parameter numSignatures"),
        (101, "Numbers of signatures is too high"),
        (2, "Invalid value for parameter numSignatures"),
    ]:
        bad = api.post(
            "/csc/v2/credentials/authorize",
            {
                "credentialID": qscd,
                "numSignatures": num,
                "hashes": [base64.b64encode(digest).decode()],
                "OTP": "123456",
            },
        )
        assert bad.status_code == 400 and words in bad.json["error_description"], bad.json

    seal = credential(pki, api, "seal-lcp")["credential_id"]
    v1 = api.post(
        "/csc/v2/signatures/signHash",
        {
            "credentialID": seal,
            "hash": [base64.b64encode(digest).decode()],
            "hashAlgo": SHA256,
            "signAlgo": EC_PUBLIC_KEY,
        },
    )
    assert v1.status_code == 200 and len(v1.json["signatures"]) == 1, v1.json
    params = sign_hash(api, seal, [digest], signAlgoParams=base64.b64encode(b"\x30\x00").decode())
    assert params.status_code == 400 and "signAlgoParams" in params.json["error_description"]
    mode = sign_hash(api, seal, [digest], operationMode="A")
    assert mode.status_code == 400 and "operationMode" in mode.json["error_description"]
    service = api.post("/csc/v2/info", {}).json
    assert ECDSA_SHA256 in service["signAlgorithms"]["algos"]
