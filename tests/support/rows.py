"""Rows read and written straight in the test PKI's database, beside the services: what
no API call leaves behind, and counts the tests compare before and after."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select

from core.store.db import Database
from core.store.models import Certificate
from tests.support.pki import Pki


def count_rows(db: Database, model: type[Any], *where: ColumnElement[bool]) -> int:
    """How many rows of ``model`` match every condition in ``where``."""
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def insert_certificate(pki: Pki, *, since: datetime, days: int, **columns: Any) -> None:
    """A certificates row written straight to the database, as no API call leaves one (a
    reservation a crash left behind, a certificate long expired...): valid from ``since``
    for ``days``; ``columns`` gives the rest (issuer_id, serial, profile, status...)."""
    with pki.ctx.db.write() as session:
        session.add(
            Certificate(
                tbs=b"",
                not_before=since,
                not_after=since + timedelta(days=days),
                created_at=since,
                **columns,
            )
        )
