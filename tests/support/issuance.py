"""What a platform does through the API before the protocol under test: identity proofs
(approved by officers when the method needs them), certificates, revocations."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from registration.decisions import approve_proof
from tests.support.builders import NATURAL, csr_pem
from tests.support.clients import ApiClient
from tests.support.pki import Pki


def approved_proof(
    pki: Pki, api: ApiClient, body: dict[str, Any], method: str, approvals: int
) -> str:
    """A proof of ``body`` by ``method``, approved by ``approvals`` officers: its id."""
    body = copy.deepcopy(body)
    body["method"] = method
    resp = api.post("/ra/api/v1/identity-proofs", body)
    assert resp.status_code == 201, resp.json
    now = datetime.now(UTC)
    for officer in ("alice", "bob")[:approvals]:
        approve_proof(pki.ctx.db, resp.json["id"], officer, now=now, max_age=timedelta(days=30))
    return str(resp.json["id"])


def issue(api: ApiClient, profile: str = "person-lcp") -> dict[str, Any]:
    """A certificate on a fresh CSR for a delegated natural-person proof: the API's answer
    (serial, certificate, chain as PEM...)."""
    proof = api.post("/ra/api/v1/identity-proofs", NATURAL)
    assert proof.status_code == 201, proof.json
    resp = api.post(
        "/ca/api/v1/certificates",
        {"profile": profile, "identity_proof": proof.json["id"], "csr": csr_pem()},
    )
    assert resp.status_code == 201, resp.json
    body: dict[str, Any] = resp.json
    return body


def revoke(api: ApiClient, serial: str, reason: str, invalidity: str | None = None) -> None:
    body = {"reason": reason} | ({"invalidity_date": invalidity} if invalidity else {})
    resp = api.post(f"/ca/api/v1/certificates/{serial}/revoke", body)
    assert resp.status_code == 200, resp.json
