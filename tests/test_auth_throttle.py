"""Failed API tokens are throttled per client address: 401 up to the limit, then 429 with
Retry-After for that address only, counted in metrics, one audit event per burst."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from werkzeug.test import Client as WsgiClient

from core.accounts.throttle import FailureThrottle
from core.http.service import provided
from core.store.models import AuditEvent
from sceau.services import build
from tests.support.pki import Pki

LIMIT = 5
WRONG = {"Authorization": "Bearer sceau_not-a-token"}


def _throttled_ca(pki: Pki) -> WsgiClient:
    app = build("ca", pki.ctx)
    provided(FailureThrottle, app).limit = LIMIT
    return WsgiClient(app)


def _get(http: WsgiClient, headers: dict[str, str], peer: str = "127.0.0.1") -> Any:
    """GET a certificate as a client at ``peer`` (by default nginx on this host)."""
    return http.get(
        "/ca/api/v1/certificates/01", headers=headers, environ_base={"REMOTE_ADDR": peer}
    )


def _bursts(pki: Pki) -> list[AuditEvent]:
    with pki.ctx.db.read() as session:
        return list(
            session.scalars(select(AuditEvent).where(AuditEvent.action == "client.auth_throttled"))
        )


def test_wrong_tokens_are_throttled_per_address(pki: Pki) -> None:
    http = _throttled_ca(pki)
    api = pki.client("person-lcp")
    attacker = {"X-Forwarded-For": "198.51.100.7", **WRONG}  # as nginx on this host adds it
    before = len(_bursts(pki))
    codes = [_get(http, attacker).status_code for _ in range(8)]
    assert codes == [401] * LIMIT + [429] * 3
    refused = _get(http, attacker)
    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    assert refused.json["type"] == "urn:sceau:problem:too-many-requests"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # Even the right token is refused from that address until the minute has passed...
    right = {"Authorization": f"Bearer {api.token}", "X-Forwarded-For": "198.51.100.7"}
    assert _get(http, right).status_code == 429
    # ... while another address is not affected.
    other = {"Authorization": f"Bearer {api.token}", "X-Forwarded-For": "203.0.113.9"}
    assert _get(http, other).status_code == 404
    bursts = _bursts(pki)[before:]
    assert len(bursts) == 1
    assert bursts[0].details["from"] == "198.51.100.7"
    assert WRONG["Authorization"].split()[1] not in str(bursts[0].details)
    metrics = http.get("/metrics").data.decode()
    assert "sceau_auth_throttled_total" in metrics
    assert "sceau_auth_failures_total" in metrics


def test_forwarded_for_counts_only_behind_a_local_proxy(pki: Pki) -> None:
    """A client that is not the proxy on this host cannot choose its address."""
    http = _throttled_ca(pki)
    for n in range(LIMIT):
        spoofed = {"X-Forwarded-For": f"198.51.100.{n}", **WRONG}
        assert http.get("/ca/openapi.json").status_code == 200
        response = _get(http, spoofed, peer="192.0.2.50")
        assert response.status_code == 401
    spoofed = {"X-Forwarded-For": "198.51.100.99", **WRONG}
    response = _get(http, spoofed, peer="192.0.2.50")
    assert response.status_code == 429
