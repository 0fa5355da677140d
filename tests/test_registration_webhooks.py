"""Decision callbacks: queued with the decision, POSTed signed with the client's webhook
secret to a real local HTTP server, retried with a doubling delay, never raising."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from core.config import RegistrationConfig
from core.store.models import IdentityProof, WebhookDelivery
from registration.webhooks import create_webhook_secret, deliver_due, queue_decision
from tests.support.builders import NATURAL_FULL
from tests.support.pki import Pki

PROOFS = "/ra/api/v1/identity-proofs"


class Platform:
    """A platform's callback endpoint: records each request, answers from a script."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[int] = []
        self.delay = 0.0
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                platform.received.append((dict(self.headers), body))
                time.sleep(platform.delay)
                status = platform.answers.pop(0) if platform.answers else 200
                self.send_response(status)
                if status in (301, 302, 307):
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sceau-hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def platform() -> Iterator[Platform]:
    server = Platform()
    yield server
    server.server.shutdown()
    server.server.server_close()


def _decided_proof(pki: Pki, url: str) -> tuple[str, str, datetime]:
    """A proof with a webhook, then rejected as an officer would (status, reason, queue)."""
    api = pki.client("person-lcp")
    now = datetime.now(UTC)
    secret = create_webhook_secret(pki.ctx.db, pki.ctx.sealer, api.name, actor="t", now=now)
    body = copy.deepcopy(NATURAL_FULL)
    body["webhook_url"] = url
    resp = api.post(PROOFS, body)
    assert resp.status_code == 201, resp.json
    pid = str(resp.json["id"])
    with pki.ctx.db.write() as session:
        proof = session.get(IdentityProof, pid)
        assert proof is not None
        proof.status, proof.decided_at = "rejected", now
        proof.rejection_reason = "photo <b>blurred</b>"
        queue_decision(session, proof, now=now)
    return pid, secret, now


def _delivery(pki: Pki, pid: str) -> WebhookDelivery:
    with pki.ctx.db.read() as session:
        row = session.scalars(select(WebhookDelivery).where(WebhookDelivery.proof_id == pid)).one()
    return row


def _settings(pki: Pki, **changes: Any) -> RegistrationConfig:
    return dataclasses.replace(pki.config.registration, **changes)


def test_signed_delivery_after_a_retry(pki: Pki, platform: Platform) -> None:
    pid, secret, now = _decided_proof(pki, platform.url)
    settings = _settings(pki, webhook_retry_seconds=30, webhook_max_attempts=5)
    platform.answers = [503]
    assert deliver_due(pki.ctx.db, pki.ctx.sealer, settings, now=now) == 0
    first = _delivery(pki, pid)
    assert first.attempts == 1 and first.last_error == "HTTP 503" and first.delivered_at is None
    assert first.next_attempt_at == now + timedelta(seconds=30)
    # Not due yet: nothing sent.
    deliver_due(pki.ctx.db, pki.ctx.sealer, settings, now=now + timedelta(seconds=29))
    assert len(platform.received) == 1
    assert deliver_due(pki.ctx.db, pki.ctx.sealer, settings, now=now + timedelta(seconds=30)) >= 1
    done = _delivery(pki, pid)
    assert done.delivered_at is not None and done.attempts == 2 and done.last_error is None
    headers, body = platform.received[-1]
    assert headers["Content-Type"] == "application/json"
    parts = dict(p.split("=", 1) for p in headers["Sceau-Signature"].split(","))
    stamp, mac = parts["t"], parts["v1"]
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, expected)
    assert abs(int(stamp) - time.time()) < 60
    payload = json.loads(body)
    assert payload == {
        "event": "identity_proof.decided",
        "id": pid,
        "status": "rejected",
        "decided_at": now.isoformat(),
        "rejection_reason": "photo <b>blurred</b>",
    }
    assert b"Zephyrin" not in body and b"19QX77341" not in body
    # Delivered once: later runs leave it alone.
    deliver_due(pki.ctx.db, pki.ctx.sealer, settings, now=now + timedelta(hours=1))
    assert len(platform.received) == 2


def test_gives_up_after_max_attempts_with_doubling_delay(pki: Pki, platform: Platform) -> None:
    pid, _, now = _decided_proof(pki, platform.url)
    settings = _settings(pki, webhook_retry_seconds=10, webhook_max_attempts=3)
    platform.answers = [500, 302, 404, 500]
    at, delays = now, []
    for _ in range(3):
        deliver_due(pki.ctx.db, pki.ctx.sealer, settings, now=at)
        row = _delivery(pki, pid)
        delays.append((row.next_attempt_at - at).total_seconds())
        at = row.next_attempt_at
    assert delays == [10, 20, 40]
    row = _delivery(pki, pid)
    assert row.attempts == 3 and row.delivered_at is None and row.last_error == "HTTP 404"
    deliver_due(pki.ctx.db, pki.ctx.sealer, settings, now=at + timedelta(days=1))
    assert len(platform.received) == 3  # the redirect was not followed; no fourth try


def test_unreachable_and_slow_platforms_never_raise(pki: Pki, platform: Platform) -> None:
    settings = _settings(pki, webhook_retry_seconds=1, webhook_max_attempts=2)
    closed, _, _ = _decided_proof(pki, "http://127.0.0.1:9/closed")
    slow, _, now = _decided_proof(pki, platform.url)  # the later one: both due at ``now``
    platform.delay = 1.5
    deliver_due(pki.ctx.db, pki.ctx.sealer, settings, now=now, timeout=0.5)
    assert "Error" in (_delivery(pki, closed).last_error or "")
    assert "timed out" in (_delivery(pki, slow).last_error or "")


def test_no_webhook_url_queues_nothing(pki: Pki) -> None:
    api = pki.client("person-lcp")
    pid = api.post(PROOFS, NATURAL_FULL).json["id"]
    with pki.ctx.db.write() as session:
        proof = session.get(IdentityProof, pid)
        assert proof is not None
        queue_decision(session, proof, now=datetime.now(UTC))
    with pki.ctx.db.read() as session:
        rows = session.scalars(select(WebhookDelivery).where(WebhookDelivery.proof_id == pid))
        assert rows.all() == []
