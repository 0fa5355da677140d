"""CSC API v2 remote signing as a platform calls it: a credential (key generated in the
HSM, on an officer-approved proof), OTPs from the file outbox, authorize, signHash, and
the audit count of signing calls."""

from __future__ import annotations

import base64
from typing import Any

from core.store.models import AuditEvent
from tests.support.builders import LEGAL, NATURAL
from tests.support.clients import ApiClient
from tests.support.issuance import approved_proof
from tests.support.pki import Pki
from tests.support.rows import count_rows

ECDSA_SHA256 = "1.2.840.10045.4.3.2"


def credential(pki: Pki, api: ApiClient, profile: str) -> dict[str, Any]:
    if profile.startswith("seal"):
        pid = approved_proof(pki, api, LEGAL, "registry", 2)
    else:
        pid = approved_proof(pki, api, NATURAL, "face-to-face", 1)
    resp = api.post("/ca/api/v1/certificates", {"profile": profile, "identity_proof": pid})
    assert resp.status_code == 201, resp.json
    return dict(resp.json)


def sign_hash(api: ApiClient, credential_id: str, hashes: list[bytes], **extra: Any) -> Any:
    body = {
        "credentialID": credential_id,
        "hashes": [base64.b64encode(h).decode() for h in hashes],
        "signAlgo": ECDSA_SHA256,
        **extra,
    }
    return api.post("/csc/v2/signatures/signHash", body)


def signed_calls(pki: Pki) -> int:
    """signHash calls so far, as the audit log counts them."""
    return count_rows(pki.ctx.db, AuditEvent, AuditEvent.action == "signing.sign_hash")


def otp(pki: Pki, api: ApiClient, credential_id: str) -> str:
    sent = api.post("/csc/v2/credentials/sendOTP", {"credentialID": credential_id})
    assert sent.status_code == 200, sent.json
    path = pki.home / pki.config.signing.otp_outbox / f"{credential_id}.otp"
    assert path.stat().st_mode & 0o077 == 0
    return path.read_text()


def authorize(api: ApiClient, credential_id: str, hashes: list[bytes], code: str) -> Any:
    return api.post(
        "/csc/v2/credentials/authorize",
        {
            "credentialID": credential_id,
            "numSignatures": len(hashes),
            "hashes": [base64.b64encode(h).decode() for h in hashes],
            "OTP": code,
        },
    )
