"""What an auditor asks of the log: filtered lists paged by seq, and issuance statistics.

Every filter has an index ending in seq (migration 0006), so a page is an index range
read from the cursor on (keyset pagination: ``seq < cursor ORDER BY seq DESC LIMIT n``),
never an OFFSET that would skip rows one by one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from core.store.models import AuditEvent

PAGE_SIZE = 50
ISSUED = "certificate.issued"


def normal_serial(text: str) -> str:
    """Serials are stored as lowercase hex without leading zeros; accept 0x, colons, case."""
    s = text.strip().lower().replace(":", "").replace(" ", "")
    s = s.removeprefix("0x").lstrip("0")
    return s or "0"


@dataclass(frozen=True)
class EventFilter:
    since: datetime | None = None  # at >= since
    until: datetime | None = None  # at < until
    actor: str | None = None
    action: str | None = None
    profile: str | None = None
    serial: str | None = None
    proof: str | None = None  # the identity proof (subject) id

    def conditions(self) -> list[ColumnElement[bool]]:
        c: list[ColumnElement[bool]] = []
        if self.since is not None:
            c.append(AuditEvent.at >= self.since)
        if self.until is not None:
            c.append(AuditEvent.at < self.until)
        if self.actor:
            c.append(AuditEvent.actor == self.actor)
        if self.action:
            c.append(AuditEvent.action == self.action)
        if self.profile:
            c.append(AuditEvent.profile == self.profile)
        if self.serial:
            c.append(AuditEvent.serial == normal_serial(self.serial))
        if self.proof:
            c.append(AuditEvent.proof_id == self.proof)
        return c

    def describe(self) -> dict[str, Any]:
        """The filter as JSON data (what an export and its audit event record)."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if value is not None and value != "":
                out[key] = value.isoformat() if isinstance(value, datetime) else value
        return out


def page(
    session: Session, flt: EventFilter, *, before: int | None = None, size: int = PAGE_SIZE
) -> tuple[list[AuditEvent], int | None]:
    """The newest ``size`` matching events below seq ``before``, and the next cursor."""
    query = select(AuditEvent).where(*flt.conditions())
    if before is not None:
        query = query.where(AuditEvent.seq < before)
    rows = list(session.scalars(query.order_by(AuditEvent.seq.desc()).limit(size + 1)))
    if len(rows) > size:
        return rows[:size], rows[size - 1].seq
    return rows, None


def matching(session: Session, flt: EventFilter, *, batch: int = 2000) -> Iterator[AuditEvent]:
    """Every matching event, oldest first, by keyset pages."""
    after = 0
    while True:
        rows = list(
            session.scalars(
                select(AuditEvent)
                .where(*flt.conditions(), AuditEvent.seq > after)
                .order_by(AuditEvent.seq)
                .limit(batch)
            )
        )
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1].seq


def issuance_stats(session: Session) -> list[tuple[str, str, int]]:
    """(month YYYY-MM, profile, certificates issued), from the certificate.issued events;
    the (action, profile, at) index answers it without reading the events."""
    if session.get_bind().dialect.name == "postgresql":
        month = func.to_char(func.timezone("UTC", AuditEvent.at), "YYYY-MM")
    else:
        month = func.substr(AuditEvent.at, 1, 7)  # stored as ISO text, UTC
    rows = session.execute(
        select(month.label("month"), AuditEvent.profile, func.count())
        .where(AuditEvent.action == ISSUED)
        .group_by("month", AuditEvent.profile)
        .order_by("month", AuditEvent.profile)
    ).all()
    return [(str(m), str(p or "-"), int(n)) for m, p, n in rows]
