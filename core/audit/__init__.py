"""Append-only, hash-chained audit log.

Each event's hash covers the previous hash and a canonical JSON of the event, so editing,
deleting, inserting or reordering any row breaks the chain from that row on. Appending
happens inside the caller's transaction: the event commits with the change it records,
or neither does.

Lock order. ``append`` updates the one head row, so every transaction that records an
event takes that lock. To never wait in a cycle (a deadlock on PostgreSQL), every such
transaction locks its own rows first and the head last: ``append`` is its last write, or
the rows it writes after ``append`` were locked before it (``SELECT ... FOR UPDATE`` or an
UPDATE). The orders in force: certificate, issuer status, head (revocation); certificate,
identity proof, credential, head (issuance); officer, head (login); identity proof, head
(decisions).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from core.store.models import AuditEvent, AuditHead

GENESIS = "0" * 64


def _canonical(seq: int, at: datetime, actor: str, action: str, details: dict[str, Any]) -> bytes:
    body = {
        "seq": seq,
        "at": at.isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "details": details,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(  # noqa: PLR0913 - the hashed fields of an event, in chain order
    prev_hash: str, seq: int, at: datetime, actor: str, action: str, details: dict[str, Any]
) -> str:
    digest = hashlib.sha256(bytes.fromhex(prev_hash))
    digest.update(_canonical(seq, at, actor, action, details))
    return digest.hexdigest()


def index_fields(details: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """The filter columns (profile, serial, proof) an event's details give: copies kept
    beside the hashed details so that the auditor's filters use an index."""

    def text(key: str, size: int) -> str | None:
        value = details.get(key)
        return value if isinstance(value, str) and len(value) <= size else None

    return text("profile", 64), text("serial", 40), text("proof", 64)


def ensure_head(session: Session) -> None:
    if session.get(AuditHead, 1) is None:
        session.add(AuditHead(id=1, seq=0, hash=GENESIS))
        session.flush()


# Core statements built once: building them per call (and the ORM's unit of work) cost
# several times the three statements themselves (tests/benchmarks/audit.py).
_HEAD = cast(Table, AuditHead.__table__)
_ADVANCE_HEAD = (
    update(_HEAD)
    .where(_HEAD.c.id == 1)
    .values(seq=_HEAD.c.seq + 1)
    .returning(_HEAD.c.seq, _HEAD.c.hash)
)
_SET_HEAD_HASH = update(_HEAD).where(_HEAD.c.id == 1).values(hash=bindparam("new_hash"))
_INSERT_EVENT = insert(cast(Table, AuditEvent.__table__))


def append(
    session: Session, *, actor: str, action: str, details: dict[str, Any], at: datetime
) -> AuditEvent:
    """Append one event in the session's transaction.

    The head row is updated before it is read (UPDATE ... RETURNING): the UPDATE takes the
    lock (a row lock on PostgreSQL, the write lock on SQLite), so a concurrent appender
    waits for our commit and then chains onto our event instead of onto the same parent.
    """
    conn = session.connection()
    head = conn.execute(_ADVANCE_HEAD).one()
    seq, prev = head.seq, head.hash
    details = json.loads(json.dumps(details))  # what the JSON column will give back
    digest = chain_hash(prev, seq, at, actor, action, details)
    profile, serial, proof_id = index_fields(details)
    row = {
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "details": details,
        "prev_hash": prev,
        "hash": digest,
        "profile": profile,
        "serial": serial,
        "proof_id": proof_id,
    }
    conn.execute(_INSERT_EVENT, row)
    conn.execute(_SET_HEAD_HASH, {"new_hash": digest})
    event = AuditEvent(**row)  # detached: for the caller to read
    return event


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    reason: str


def verify_chain(
    session: Session, batch: int = 5000, visit: Callable[[AuditEvent], None] | None = None
) -> tuple[int, ChainBreak | None]:
    """Walk the whole chain; return (events checked, first break or None). ``visit`` sees
    each event once it is checked, in order (the checkpoint verifier builds its Merkle
    roots there)."""
    prev, expected_seq, checked = GENESIS, 1, 0
    last_seq = 0
    while True:
        rows = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.seq > last_seq)
            .order_by(AuditEvent.seq)
            .limit(batch)
        ).all()
        if not rows:
            break
        for ev in rows:
            if ev.seq != expected_seq:
                return checked, ChainBreak(expected_seq, f"event {expected_seq} is missing")
            if ev.prev_hash != prev:
                return checked, ChainBreak(ev.seq, "prev_hash does not match the previous event")
            if chain_hash(prev, ev.seq, ev.at, ev.actor, ev.action, ev.details) != ev.hash:
                return checked, ChainBreak(ev.seq, "content does not match its hash")
            if (ev.profile, ev.serial, ev.proof_id) != index_fields(ev.details):
                # Not hashed, but an edited copy would hide the event from a filter.
                return checked, ChainBreak(ev.seq, "filter columns do not match its details")
            if visit is not None:
                visit(ev)
            prev, expected_seq, last_seq = ev.hash, ev.seq + 1, ev.seq
            checked += 1
    head = session.get(AuditHead, 1)
    if head is None:
        return checked, None if checked == 0 else ChainBreak(1, "the chain head is missing")
    if checked > head.seq:
        return checked, ChainBreak(head.seq + 1, "event beyond the recorded head (inserted)")
    if checked < head.seq:
        return checked, ChainBreak(checked + 1, "the chain ends before its head (deleted)")
    if head.hash != prev:
        return checked, ChainBreak(head.seq, "the last event differs from the recorded head")
    return checked, None
