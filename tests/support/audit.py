"""Audit log content for the auditor's tests: events appended one transaction each, as
services append them, and checkpoints signed by the test PKI's audit key and timestamped
by its TSA in process (as the TSA service's job makes them)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from audit.checkpoints import CheckpointMaker
from core import audit
from core.store.db import Database
from sceau.timestamping import LocalTimestamper
from tests.support.pki import Pki
from tsa.authority import TimestampAuthority

Event = tuple[str, str, dict[str, Any], datetime]  # actor, action, details, at


def append_events(db: Database, events: Iterable[Event]) -> int:
    """Append each event in a write transaction of its own: the seq of the last one (0 if
    none)."""
    seq = 0
    for actor, action, details, at in events:
        with db.write() as session:
            seq = audit.append(session, actor=actor, action=action, details=details, at=at).seq
    return seq


@contextlib.contextmanager
def checkpoint_maker(pki: Pki, db: Database | None = None) -> Iterator[CheckpointMaker]:
    """A checkpoint maker over ``db`` (the PKI's own by default); the timestamps' records
    are written when the block ends."""
    db = db or pki.ctx.db
    authority = TimestampAuthority.from_config(pki.config, db, pki.ctx.keys, pki.ctx.profiles)
    try:
        yield CheckpointMaker(
            db, pki.ctx.keys, LocalTimestamper(authority), key_label=pki.config.audit.key_label
        )
    finally:
        authority.records.close()
