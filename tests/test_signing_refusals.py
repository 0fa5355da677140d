"""Every refused authorisation or signHash is an audit event (signing.refused: call,
credential, client, reason), signs nothing, and stores no hash, SAD or OTP value."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from core.store.models import AuditEvent, SignatureActivation
from tests.conftest import Pki
from tests.test_signing import authorize, credential, otp, sign_hash, signed_calls


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


def test_unparsable_body_is_audited(pki: Pki) -> None:
    api = pki.client("seal-lcp")
    seq = last_seq(pki)
    resp = api.http.post(
        "/csc/v2/signatures/signHash",
        data="{not json",
        headers={"Authorization": f"Bearer {api.token}"},
        content_type="application/json",
    )
    assert resp.status_code == 400 and resp.json is not None
    assert resp.json["error"] == "invalid_request"
    refused = [e for e in events_after(pki, seq) if e.action == "signing.refused"]
    assert len(refused) == 1 and refused[0].details["call"] == "signatures/signHash"
    assert "credential" not in refused[0].details


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
