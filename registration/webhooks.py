"""Signed webhook callbacks that tell a platform an officer decided one of its proofs.

The decision and its delivery row commit in the same transaction (:func:`queue_decision`);
a scheduled job then POSTs each due delivery, signed with the client's webhook secret, and
retries failures with a doubling delay. The platform may also just poll the proof.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import secrets
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core import audit
from core.config import RegistrationConfig
from core.errors import ErrorKind, SceauError
from core.hsm.envelope import Sealed, Sealer
from core.store.db import Database
from core.store.models import ApiClient, IdentityProof, WebhookDelivery

log = logging.getLogger(__name__)

EVENT = "identity_proof.decided"
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix that makes leaked secrets greppable


def decision_payload(proof: IdentityProof) -> bytes:
    """The exact body POSTed (and signed): no personal data, only the decision."""
    body = {
        "event": EVENT,
        "id": proof.id,
        "status": proof.status,
        "decided_at": proof.decided_at.isoformat() if proof.decided_at else None,
        "rejection_reason": proof.rejection_reason,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def queue_decision(session: Session, proof: IdentityProof, *, now: datetime) -> None:
    """Enqueue the decision callback of ``proof`` in the caller's transaction, when the
    platform registered a ``webhook_url`` for it; nothing otherwise."""
    if not proof.webhook_url:
        return
    session.add(
        WebhookDelivery(
            proof_id=proof.id,
            url=proof.webhook_url,
            payload=decision_payload(proof),
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )


def secret_aad(client_id: int) -> str:
    return f"webhook-secret:{client_id}"


def create_webhook_secret(
    db: Database, sealer: Sealer, client_name: str, *, actor: str, now: datetime
) -> str:
    """Give a client a new webhook secret (replacing any earlier one); returned once, kept
    sealed. Proofs may carry a ``webhook_url`` only once their client has one."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    with db.write() as session:
        client = session.scalars(select(ApiClient).where(ApiClient.name == client_name)).first()
        if client is None:
            raise SceauError(ErrorKind.NOT_FOUND, f"no API client {client_name!r}")
        rotated = client.webhook_secret_sealed is not None
        sealed = sealer.seal(secret_aad(client.id), secret.encode())
        client.webhook_secret_sealed, client.webhook_secret_wrapped = (
            sealed.ciphertext,
            sealed.wrapped_key,
        )
        audit.append(
            session,
            actor=actor,
            action="client.webhook_secret",
            at=now,
            details={"client": client_name, "rotated": rotated},
        )
    return secret


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA256 over "<t>.<body>">``: the platform recomputes it and
    refuses stale timestamps, so a captured callback cannot be replayed later."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A callback goes to the registered URL only, never where a redirect points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(url: str, body: bytes, signature: str, timeout: float) -> str | None:
    """POST one callback; None on a 2xx answer, else why it failed (for last_error)."""
    if not url.startswith(("https://", "http://")):  # registration.requests allows no other
        return "not an http(s) URL"
    req = urllib.request.Request(  # noqa: S310 - scheme checked just above
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "Sceau-webhook/1",
            "Sceau-Signature": signature,
        },
    )
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"[:300]
    return None if 200 <= status < 300 else f"HTTP {status}"


def _client_secret(sealer: Sealer, session: Session, proof_id: str) -> str | None:
    proof = session.get(IdentityProof, proof_id)
    client = session.get(ApiClient, proof.client_id) if proof and proof.client_id else None
    if client is None or client.webhook_secret_sealed is None:
        return None
    wrapped = client.webhook_secret_wrapped or b""
    return sealer.open(
        secret_aad(client.id), Sealed(wrapped, client.webhook_secret_sealed)
    ).decode()


def deliver_due(  # noqa: PLR0913 - keyword-only tuning of one delivery round
    db: Database,
    sealer: Sealer,
    settings: RegistrationConfig,
    *,
    now: datetime,
    timeout: float = 5.0,
    limit: int = 50,
) -> int:
    """POST every due callback once; a failure is retried after webhook_retry_seconds,
    doubling each time, until webhook_max_attempts. Returns how many were delivered.
    No transaction is open while a platform is being called."""
    with db.read() as session:
        due = list(
            session.scalars(
                select(WebhookDelivery)
                .where(
                    WebhookDelivery.delivered_at.is_(None),
                    WebhookDelivery.attempts < settings.webhook_max_attempts,
                    WebhookDelivery.next_attempt_at <= now,
                )
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                .limit(limit)
            )
        )
    delivered = 0
    for delivery in due:
        error: str | None
        try:
            with db.read() as session:
                secret = _client_secret(sealer, session, delivery.proof_id)
        except SceauError as exc:
            secret, error = None, f"webhook secret does not open: {exc.detail}"
        else:
            error = None if secret else "the client has no webhook secret"
        if secret is not None:
            sent_at = datetime.now(UTC)
            header = signature_header(secret, delivery.payload, int(sent_at.timestamp()))
            error = post(delivery.url, delivery.payload, header, timeout)
        attempts = delivery.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "last_error": error}
        if error is None:
            values["delivered_at"] = now
            delivered += 1
        else:
            delay = settings.webhook_retry_seconds * 2 ** (attempts - 1)
            values["next_attempt_at"] = now + timedelta(seconds=delay)
            log.warning(
                "webhook for %s, attempt %d/%d: %s",
                delivery.proof_id,
                attempts,
                settings.webhook_max_attempts,
                error,
            )
        with db.write() as session:
            session.execute(
                update(WebhookDelivery).where(WebhookDelivery.id == delivery.id).values(**values)
            )
    return delivered
