"""Every refused authorisation or signHash is an audit event (signing.refused: call,
credential, client, reason), signs nothing, and stores no hash, SAD or OTP value.

Bodies that cannot be read (not JSON, too deep, a lone surrogate...) and bodies their
request model refuses are answered in CSC's terms, never as a problem document or a 500."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asn1crypto import algos
from sqlalchemy import select, update

from core.store.models import AuditEvent, SignatureActivation
from signing.errors import CscError
from signing.requests import (
    AuthorizeRequest,
    CredentialInfoRequest,
    CscRequest,
    SignHashRequest,
)
from tests.support.pki import Pki
from tests.support.signing import (
    ECDSA_SHA256,
    authorize,
    credential,
    otp,
    sign_hash,
    signed_calls,
)


def events_after(pki: Pki, seq: int) -> list[AuditEvent]:
    with pki.ctx.db.read() as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.seq > seq).order_by(AuditEvent.seq)
            ).all()
        )


def last_seq(pki: Pki) -> int:
    with pki.ctx.db.read() as session:
        return int(session.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc())) or 0)


def test_refusals_are_audited_and_sign_nothing(pki: Pki) -> None:
    api = pki.client("person-qcp-n-qscd", "seal-lcp")
    qscd = credential(pki, api, "person-qcp-n-qscd")["credential_id"]
    seal_issued = credential(pki, api, "seal-lcp")
    seal = seal_issued["credential_id"]
    stranger = pki.client("seal-lcp")
    digest = hashlib.sha256(b"refused").digest()
    other = hashlib.sha256(b"other").digest()
    secrets_seen: list[str] = [base64.b64encode(digest).decode(), base64.b64encode(other).decode()]

    code = otp(pki, api, qscd)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    secrets_seen += [code, wrong]
    granted = authorize(api, qscd, [digest], code)
    assert granted.status_code == 200
    sad = granted.json["SAD"]
    secrets_seen.append(sad)
    assert sign_hash(api, qscd, [digest], SAD=sad).status_code == 200
    expiring = authorize(api, qscd, [other], otp(pki, api, qscd)).json["SAD"]
    secrets_seen.append(expiring)
    with pki.ctx.db.write() as session:
        session.execute(
            update(SignatureActivation)
            .where(SignatureActivation.credential_id == qscd, SignatureActivation.used_at.is_(None))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    mismatched = authorize(api, qscd, [digest], otp(pki, api, qscd)).json["SAD"]
    secrets_seen.append(mismatched)
    otp(pki, api, qscd)  # a live code for the wrong-OTP case

    revoked = credential(pki, api, "seal-lcp")
    assert (
        api.post(
            f"/ca/api/v1/certificates/{revoked['serial']}/revoke", {"reason": "superseded"}
        ).status_code
        == 200
    )

    before_signed = signed_calls(pki)
    seq = last_seq(pki)
    cases: list[tuple[str, Any, str, str]] = [
        ("wrong OTP", authorize(api, qscd, [digest], wrong), qscd, "The OTP is invalid"),
        ("replayed SAD", sign_hash(api, qscd, [digest], SAD=sad), qscd, "already used"),
        ("expired SAD", sign_hash(api, qscd, [other], SAD=expiring), qscd, "SAD expired"),
        (
            "mismatched SAD",
            sign_hash(api, qscd, [other], SAD=mismatched),
            qscd,
            "Hash is not authorized by the SAD",
        ),
        ("no SAD", sign_hash(api, qscd, [digest]), qscd, "parameter SAD"),
        (
            "revoked",
            sign_hash(api, revoked["credential_id"], [digest]),
            revoked["credential_id"],
            "revoked",
        ),
        ("foreign", sign_hash(stranger, seal, [digest]), seal, "Invalid parameter credentialID"),
        ("hash length", sign_hash(api, seal, [digest[:20]]), seal, "digest value length"),
        (
            "algorithm",
            sign_hash(api, seal, [digest], signAlgo="1.2.840.113549.1.1.11"),
            seal,
            "cannot do it",
        ),
    ]
    for name, resp, _cid, words in cases:
        assert resp.status_code in (400, 403), (name, resp.json)
        assert words in resp.json["error_description"], (name, resp.json)
    # Each refusal left exactly one signing.refused event, in order.
    events = [e for e in events_after(pki, seq) if e.action == "signing.refused"]
    assert len(events) == len(cases)
    for (name, _resp, cid, words), event in zip(cases, events, strict=True):
        assert event.details["credential"] == cid, name
        assert words in event.details["reason"], name
        assert event.details["client"] in (api.name, stranger.name), name
        assert event.details["call"] in ("signatures/signHash", "credentials/authorize"), name
    assert events[-3].actor == f"client:{stranger.name}"
    # No value of a hash, SAD or OTP in any event of the chain.
    with pki.ctx.db.read() as session:
        everything = json.dumps(
            [e.details for e in session.scalars(select(AuditEvent)).all()], sort_keys=True
        )
    for secret in secrets_seen:
        assert secret not in everything
    assert signed_calls(pki) == before_signed


# Every CSC call, and whether its refusals are audit events (those that authorise or sign).
CALLS = [
    ("info", False),
    ("credentials/list", False),
    ("credentials/info", False),
    ("credentials/sendOTP", True),
    ("credentials/authorize", True),
    ("signatures/signHash", True),
]
NOT_JSON = "body is not valid JSON: "


@pytest.mark.parametrize(
    ("body", "content_type", "description"),
    [
        pytest.param(
            b"[" * 5000, "application/json", "JSON nested deeper than 32 levels", id="deep"
        ),
        pytest.param(
            b'{"credentialID": "\\ud800"}',
            "application/json",
            "JSON string with a lone UTF-16 surrogate",
            id="lone-surrogate",
        ),
        pytest.param(
            b'{"credentialID": "\xed\xa0\x80"}',
            "application/json",
            "body is not UTF-8",
            id="utf8-surrogate",
        ),
        pytest.param(b'{"credentialID": "cred-', "application/json", NOT_JSON, id="truncated"),
        pytest.param(b"{not json", "application/json", NOT_JSON, id="not-json"),
        pytest.param(b'{"numSignatures": NaN}', "application/json", NOT_JSON, id="nan"),
        pytest.param(
            b'{"numSignatures": 1' + b"0" * 50 + b"}",
            "application/json",
            NOT_JSON,
            id="long-number",
        ),
        pytest.param(
            b'["credentialID"]', "application/json", "body must be a JSON object", id="array"
        ),
        pytest.param(b'"cred-1"', "application/json", "body must be a JSON object", id="string"),
        pytest.param(
            b'{"credentialID": "cred-1"}',
            "text/plain",
            "send Content-Type: application/json",
            id="content-type",
        ),
    ],
)
def test_unreadable_bodies_are_csc_refusals(
    pki: Pki, body: bytes, content_type: str, description: str
) -> None:
    api = pki.client("seal-lcp")
    for call, audited in CALLS:
        seq = last_seq(pki)
        resp = api.http.post(
            f"/csc/v2/{call}",
            data=body,
            headers={"Authorization": f"Bearer {api.token}"},
            content_type=content_type,
        )
        assert resp.status_code == 400, (call, resp.data)
        assert resp.mimetype == "application/json", call  # not application/problem+json
        answer = resp.json
        assert answer is not None and answer["error"] == "invalid_request", call
        assert answer["error_description"].startswith(description), (call, answer)
        refused = [e for e in events_after(pki, seq) if e.action == "signing.refused"]
        if not audited:
            assert refused == [], call
            continue
        assert len(refused) == 1, call
        assert refused[0].details["call"] == call
        assert refused[0].details["reason"] == answer["error_description"]
        assert "credential" not in refused[0].details  # nothing could be read from the body


def test_refused_parameters_are_audited_with_the_claimed_credential(pki: Pki) -> None:
    """A body the request model refuses is one signing.refused event, naming the credential
    the body asked for when it named one as a string."""
    api = pki.client("seal-lcp")
    cid = credential(pki, api, "seal-lcp")["credential_id"]
    digest = base64.b64encode(hashlib.sha256(b"typed").digest()).decode()
    before = signed_calls(pki)
    cases: list[tuple[str, dict[str, Any], str | None, str]] = [
        (
            "signatures/signHash",
            {"credentialID": cid, "hashes": digest, "signAlgo": "1.2.840.10045.4.3.2"},
            cid,
            "Missing (or invalid type) array parameter hashes",
        ),
        (
            "signatures/signHash",
            {"credentialID": 7, "hashes": [digest], "signAlgo": "1.2.840.10045.4.3.2"},
            None,
            "Missing (or invalid type) string parameter credentialID",
        ),
        (
            "signatures/signHash",
            {"credentialID": cid, "hashes": [digest], "signAlgo": "1.2.840.10045.4.3.2", "SAD": 1},
            cid,
            "Missing (or invalid type) string parameter SAD",
        ),
        (
            "credentials/authorize",
            {"credentialID": cid, "numSignatures": True, "hashes": [digest], "OTP": "123456"},
            cid,
            "Missing (or invalid type) integer parameter numSignatures",
        ),
        (
            "credentials/sendOTP",
            {"credentialID": ""},
            None,
            "Missing (or invalid type) string parameter credentialID",
        ),
        (
            "credentials/sendOTP",
            {},
            None,
            "Missing (or invalid type) string parameter credentialID",
        ),
    ]
    for call, body, claimed, description in cases:
        seq = last_seq(pki)
        resp = api.post(f"/csc/v2/{call}", body)
        assert resp.status_code == 400, (call, body)
        assert resp.json == {"error": "invalid_request", "error_description": description}
        refused = [e for e in events_after(pki, seq) if e.action == "signing.refused"]
        assert len(refused) == 1, (call, body)
        assert refused[0].details.get("credential") == claimed
        assert refused[0].details["reason"] == description
    assert signed_calls(pki) == before


D32 = base64.b64encode(bytes(32)).decode()
D48 = base64.b64encode(bytes(48)).decode()
EC_KEY = "1.2.840.10045.2.1"
RSA_PSS = "1.2.840.113549.1.1.10"
SHA256 = "2.16.840.1.101.3.4.2.1"
SHA384 = "2.16.840.1.101.3.4.2.2"
SIGN = {"credentialID": "cred-1", "hashes": [D32], "signAlgo": ECDSA_SHA256}
AUTHORIZE = {"credentialID": "cred-1", "numSignatures": 1, "hashes": [D32], "OTP": "123456"}


def pss_params(hash_name: str, salt: int) -> str:
    """RSASSA-PSS-params (RFC 8017 A.2.3), base64: ``hash_name`` with MGF1 over it."""
    hash_id = {"algorithm": hash_name}
    mgf = {"algorithm": "mgf1", "parameters": hash_id}
    params = algos.RSASSAPSSParams(
        {"hash_algorithm": hash_id, "mask_gen_algorithm": mgf, "salt_length": salt}
    )
    return base64.b64encode(params.dump()).decode()


PSS_384 = pss_params("sha384", 48)
PSS_384_SALT_20 = pss_params("sha384", 20)
SALT = "only MGF1 with the same hash, salt length = hash length and trailer 1"


@pytest.mark.parametrize(
    ("model", "body", "description"),
    [
        pytest.param(
            SignHashRequest,
            {**SIGN, "hashes": []},
            "Missing (or invalid type) array parameter hashes",
            id="no-hash",
        ),
        pytest.param(
            SignHashRequest,
            {**SIGN, "hashes": [D32] * 101},
            "Too many hashes: at most 100 per call",
            id="101-hashes",
        ),
        pytest.param(
            SignHashRequest,
            {**SIGN, "hashes": [3]},
            "Invalid Base64 hashes string parameter",
            id="hash-number",
        ),
        pytest.param(
            SignHashRequest,
            {**SIGN, "hashes": ["é"]},
            "Invalid Base64 hashes string parameter",
            id="hash-non-ascii",
        ),
        pytest.param(
            SignHashRequest,
            {**SIGN, "signAlgo": 1},
            "Missing (or invalid type) string parameter signAlgo",
            id="algo-number",
        ),
        pytest.param(
            SignHashRequest,
            {**SIGN, "signAlgo": "1.2.3"},
            "Invalid parameter signAlgo",
            id="algo-unknown",
        ),
        pytest.param(
            SignHashRequest,
            {**SIGN, "signAlgo": EC_KEY},
            "Missing (or invalid type) string parameter hashAlgorithmOID",
            id="key-oid-no-hash",
        ),
        pytest.param(
            SignHashRequest,
            {**SIGN, "signAlgo": EC_KEY, "hashAlgo": "1.3.14.3.2.26"},
            "Invalid parameter hashAlgorithmOID: SHA-256, SHA-384 or SHA-512",
            id="v1-sha1",
        ),
        pytest.param(
            SignHashRequest,
            {**SIGN, "hashAlgorithmOID": SHA384},
            "Invalid parameter hashAlgorithmOID: it contradicts signAlgo",
            id="contradiction",
        ),
        pytest.param(
            SignHashRequest,
            {**SIGN, "hashAlgorithmOID": 1},
            "Missing (or invalid type) string parameter hashAlgorithmOID",
            id="hash-oid-number",
        ),
        pytest.param(
            SignHashRequest,
            {**SIGN, "signAlgoParams": 5},
            "Missing (or invalid type) string parameter signAlgoParams",
            id="params-number",
        ),
        pytest.param(
            SignHashRequest,
            {**SIGN, "signAlgoParams": "MAA="},
            "Invalid parameter signAlgoParams: this signAlgo takes none",
            id="params-for-ecdsa",
        ),
        pytest.param(
            SignHashRequest,
            {**SIGN, "signAlgo": RSA_PSS, "signAlgoParams": "BAEA"},
            "Invalid parameter signAlgoParams: not RSASSA-PSS-params",
            id="pss-garbage",
        ),
        pytest.param(
            SignHashRequest,
            {**SIGN, "signAlgo": RSA_PSS, "signAlgoParams": "MAA="},  # all defaults: SHA-1
            "Invalid parameter signAlgoParams: SHA-256, SHA-384 or SHA-512",
            id="pss-sha1",
        ),
        pytest.param(
            SignHashRequest,
            {**SIGN, "signAlgo": RSA_PSS, "signAlgoParams": PSS_384_SALT_20, "hashes": [D48]},
            f"Invalid parameter signAlgoParams: {SALT}",
            id="pss-salt",
        ),
        pytest.param(
            SignHashRequest,
            {**SIGN, "signAlgo": RSA_PSS, "signAlgoParams": PSS_384, "hashAlgorithmOID": SHA256},
            "Invalid parameter signAlgoParams: its hash contradicts the hash's",
            id="pss-hash",
        ),
        pytest.param(
            SignHashRequest,
            {**SIGN, "hashes": [D48]},
            "Invalid digest value length: sha256 hashes have 32 bytes, one has 48",
            id="length",
        ),
        pytest.param(
            SignHashRequest,
            {**SIGN, "operationMode": "A"},
            "Invalid parameter operationMode: only synchronous (S)",
            id="async",
        ),
        pytest.param(
            AuthorizeRequest,
            {**AUTHORIZE, "numSignatures": 1.0},
            "Missing (or invalid type) integer parameter numSignatures",
            id="count-float",
        ),
        pytest.param(
            AuthorizeRequest,
            {**AUTHORIZE, "numSignatures": 101},
            "Numbers of signatures is too high: multisign is 100",
            id="count-101",
        ),
        pytest.param(
            AuthorizeRequest,
            {**AUTHORIZE, "numSignatures": 0},
            "Invalid value for parameter numSignatures: it must count the hashes",
            id="count-0",
        ),
        pytest.param(
            AuthorizeRequest,
            {**AUTHORIZE, "OTP": 123456},
            "Missing (or invalid type) string parameter OTP",
            id="otp-number",
        ),
        pytest.param(
            CredentialInfoRequest,
            {"credentialID": "cred-1", "authInfo": 1},
            "Invalid parameter authInfo",
            id="auth-info-number",
        ),
        pytest.param(
            CredentialInfoRequest,
            {"credentialID": ["cred-1"]},
            "Missing (or invalid type) string parameter credentialID",
            id="id-array",
        ),
    ],
)
def test_request_models_refuse_in_csc_words(
    model: type[CscRequest], body: dict[str, Any], description: str
) -> None:
    with pytest.raises(CscError) as refused:
        model.parse(body)
    assert (refused.value.status, refused.value.error) == (400, "invalid_request")
    assert refused.value.description == description


def test_request_models_read_the_wire_format() -> None:
    """CSC v1 names, null as absent, unknown parameters ignored, PSS parameters read."""
    v1 = SignHashRequest.parse(
        {"credentialID": "cred-1", "hash": [D32], "hashAlgo": SHA256, "signAlgo": EC_KEY}
    )
    assert v1.hashes == (bytes(32),) and v1.scheme.hash.value == "sha256"
    assert v1.scheme.padding.value == "ecdsa" and v1.sad is None
    nulls = SignHashRequest.parse({**SIGN, "SAD": None, "signAlgoParams": None, "clientData": 1})
    assert nulls.sad is None and nulls.sign_algo_params is None
    pss = SignHashRequest.parse(
        {**SIGN, "signAlgo": RSA_PSS, "signAlgoParams": PSS_384, "hashes": [D48]}
    )
    assert (pss.scheme.hash.value, pss.scheme.padding.value) == ("sha384", "pss")
    info = CredentialInfoRequest.parse({"credentialID": "cred-1", "certificates": None})
    assert (info.certificates, info.cert_info) == ("single", False)
    granted = AuthorizeRequest.parse({**AUTHORIZE, "hashes": None, "hash": [D32]})
    assert granted.hashes == (bytes(32),) and granted.num_signatures == 1
    with pytest.raises(ValueError, match="frozen"):
        granted.otp = "654321"


def test_otp_brute_force_locks_the_code(pki: Pki) -> None:
    """After otp_max_attempts wrong codes even the right one is refused, nothing is
    authorised, and only a new sendOTP (a new random code) helps."""
    api = pki.client("person-qcp-n-qscd")
    cid = credential(pki, api, "person-qcp-n-qscd")["credential_id"]
    digests = [hashlib.sha256(b"brute").digest()]
    code = otp(pki, api, cid)
    seq = last_seq(pki)
    tries = 0
    for guess in range(10**6):
        attempt = f"{guess:06d}"
        if attempt == code:
            continue
        resp = authorize(api, cid, digests, attempt)
        tries += 1
        if resp.json["error"] != "invalid_otp":
            break
    assert tries == pki.config.signing.otp_max_attempts + 1
    assert (
        resp.json["error"] == "invalid_request" and "OTP locked" in resp.json["error_description"]
    )
    locked = authorize(api, cid, digests, code)
    assert locked.status_code == 400 and "OTP locked" in locked.json["error_description"]
    assert "SAD" not in locked.json
    refused = [e for e in events_after(pki, seq) if e.action == "signing.refused"]
    assert len(refused) == tries + 1
    with pki.ctx.db.read() as session:
        sads = session.scalars(
            select(SignatureActivation).where(SignatureActivation.credential_id == cid)
        ).all()
    assert sads == []
    assert authorize(api, cid, digests, otp(pki, api, cid)).status_code == 200
