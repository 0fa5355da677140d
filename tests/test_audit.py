"""The audit chain detects every edit, deletion, insertion and reordering of its rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from core import audit
from core.store.db import Database, migrate
from core.store.models import AuditEvent


@pytest.fixture
def chain(tmp_path) -> Database:  # type: ignore[no-untyped-def]
    db = Database(f"sqlite:///{tmp_path / 'audit.db'}")
    migrate(db)
    with db.write() as session:
        audit.ensure_head(session)
    for n in range(1, 6):
        with db.write() as session:
            audit.append(
                session,
                actor="test",
                action="thing.done",
                details={"n": n},
                at=datetime(2026, 1, n, tzinfo=UTC),
            )
    yield db
    db.dispose()


def _verify(db: Database) -> audit.ChainBreak | None:
    with db.read() as session:
        _checked, broken = audit.verify_chain(session)
    return broken


def test_intact_chain(chain: Database) -> None:
    assert _verify(chain) is None


def _edit(s: Session) -> None:
    s.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(details={"n": 99}))


def _edit_actor(s: Session) -> None:
    s.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(actor="someone-else"))


def _delete_middle(s: Session) -> None:
    s.execute(delete(AuditEvent).where(AuditEvent.seq == 3))


def _delete_last(s: Session) -> None:
    s.execute(delete(AuditEvent).where(AuditEvent.seq == 5))


def _swap(s: Session) -> None:
    a, b = (s.get(AuditEvent, 2), s.get(AuditEvent, 3))
    assert a and b
    fields = ("at", "actor", "action", "details", "prev_hash", "hash")
    va, vb = ({f: getattr(a, f) for f in fields}, {f: getattr(b, f) for f in fields})
    for f in fields:
        setattr(a, f, vb[f])
        setattr(b, f, va[f])


def _insert(s: Session) -> None:
    # A forged event appended with a well-formed hash, but without moving the head.
    last = s.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
    assert last
    at = datetime(2026, 2, 1, tzinfo=UTC)
    forged = audit.chain_hash(last.hash, 6, at, "x", "y", {})
    s.add(
        AuditEvent(
            seq=6, at=at, actor="x", action="y", details={}, prev_hash=last.hash, hash=forged
        )
    )


@pytest.mark.parametrize(
    ("tamper", "first_bad"),
    [
        (_edit, 3),
        (_edit_actor, 2),
        (_delete_middle, 3),
        (_delete_last, 5),
        (_swap, 2),
        (_insert, 6),
    ],
)
def test_tampering_is_detected(
    chain: Database, tamper: Callable[[Session], None], first_bad: int
) -> None:
    with chain.write() as session:
        tamper(session)
    broken = _verify(chain)
    assert broken is not None and broken.seq == first_bad, broken
