"""A failure in the middle of issuance leaves an honest record; concurrency keeps serials
unique and the audit chain whole."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from core import audit
from core.errors import HsmError
from core.store.models import Certificate
from tests.support.builders import NATURAL, csr_pem
from tests.support.clients import ApiClient
from tests.support.pki import Pki


def _proof(api: Any) -> str:
    return str(api.post("/ra/api/v1/identity-proofs", NATURAL).json["id"])


def _issue_while_signing_raises(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> tuple[ApiClient, Any, list[Certificate]]:
    """A person-lcp request while the HSM's sign raises ``error``: the client, the answer
    and the certificate rows left for the proof."""
    api = pki.client("person-lcp")
    pid = _proof(api)

    def broken_sign(*_a: Any, **_k: Any) -> bytes:
        raise error

    monkeypatch.setattr(pki.ctx.keys, "sign", broken_sign)
    resp = api.post(
        "/ca/api/v1/certificates",
        {"profile": "person-lcp", "identity_proof": pid, "csr": csr_pem()},
    )
    with pki.ctx.db.read() as session:
        rows = session.query(Certificate).filter_by(proof_id=pid).all()
    return api, resp, rows


def test_hsm_failure_marks_the_reservation_failed(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, resp, rows = _issue_while_signing_raises(
        pki, monkeypatch, HsmError("token 'test' unreachable")
    )
    assert resp.status_code == 503
    assert resp.json["type"] == "urn:sceau:problem:hsm"
    assert [(r.status, r.der) for r in rows] == [("failed", None)]


def test_crash_after_reservation_leaves_a_visible_reserved_row(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, resp, rows = _issue_while_signing_raises(
        pki, monkeypatch, RuntimeError("process killed between reservation and signature")
    )
    assert resp.status_code == 500
    assert "request_id" in resp.json and "process killed" not in resp.json["detail"]
    (row,) = rows
    # The TBS is kept: an operator can see exactly what was about to be signed.
    assert row.status == "reserved" and row.der is None and row.tbs
    serial = row.serial
    assert api.get(f"/ca/api/v1/certificates/{serial}").status_code == 404


def test_concurrent_issuance(pki: Pki) -> None:
    api = pki.client("person-lcp")
    pid = _proof(api)
    csrs = [csr_pem() for _ in range(24)]

    def issue(csr: str) -> tuple[int, str]:
        resp = api.post(
            "/ca/api/v1/certificates", {"profile": "person-lcp", "identity_proof": pid, "csr": csr}
        )
        return resp.status_code, resp.json.get("serial", "")

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(issue, csrs))
    assert all(status == 201 for status, _ in results), results
    assert len({serial for _, serial in results}) == len(csrs)
    with pki.ctx.db.read() as session:
        assert audit.verify_chain(session)[1] is None
