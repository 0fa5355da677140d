"""Signed webhook callbacks that tell a platform an officer decided one of its proofs.

The decision and its delivery row commit in the same transaction (:func:`queue_decision`);
a scheduled job then POSTs each due delivery, signed with the client's webhook secret, and
retries failures with a doubling delay. The platform may also just poll the proof.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy.orm import Session

from ca.store.models import IdentityProof, WebhookDelivery

EVENT = "identity_proof.decided"


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
