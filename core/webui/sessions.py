"""Server-side officer sessions: the browser holds a random token, the database its SHA-256.

A session ends when idle longer than ``idle`` or older than ``absolute``, whichever comes
first; both are checked here at every request, so a stolen cookie stops working on time
whatever the browser does with its expiry.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete

from core import audit
from core.accounts.officers import OfficerAccount, load_account
from core.store.db import Database
from core.store.models import OfficerSession

# last_seen_at is written at most this often: a page with a few images is one write.
TOUCH_EVERY = timedelta(seconds=30)


@dataclass(frozen=True)
class ActiveSession:
    token: str  # the cookie value, kept only in memory for this request
    account: OfficerAccount
    expires_at: datetime

    @property
    def csrf_token(self) -> str:
        """Per session, derived from the cookie value: a database reader cannot forge it,
        and it needs no column of its own."""
        return hmac.new(self.token.encode(), b"sceau-csrf", hashlib.sha256).hexdigest()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(
    db: Database, account: OfficerAccount, *, now: datetime, absolute: timedelta
) -> ActiveSession:
    token = secrets.token_urlsafe(32)
    with db.write() as session:
        session.add(
            OfficerSession(
                token_hash=token_hash(token),
                officer_id=account.id,
                created_at=now,
                last_seen_at=now,
                expires_at=now + absolute,
            )
        )
    return ActiveSession(token, account, now + absolute)


def resume_session(
    db: Database, token: str, *, now: datetime, idle: timedelta
) -> ActiveSession | None:
    """The live session behind a cookie value, or None (unknown, expired, idle, disabled).
    A dead session's row is deleted on the way."""
    if not token or len(token) > 128:
        return None
    digest = token_hash(token)
    with db.read() as session:
        row = session.get(OfficerSession, digest)
        if row is None:
            return None
        account = load_account(session, row.officer_id)
        expires_at, last_seen = row.expires_at, row.last_seen_at
    if account is None or now >= expires_at or now - last_seen >= idle:
        with db.write() as session:
            session.execute(delete(OfficerSession).where(OfficerSession.token_hash == digest))
        return None
    if now - last_seen >= TOUCH_EVERY:
        with db.write() as session:
            live = session.get(OfficerSession, digest)
            if live is not None:
                live.last_seen_at = now
    return ActiveSession(token, account, expires_at)


def close_session(db: Database, active: ActiveSession, *, now: datetime) -> None:
    with db.write() as session:
        session.execute(
            delete(OfficerSession).where(OfficerSession.token_hash == token_hash(active.token))
        )
        audit.append(
            session, actor=active.account.actor, action="officer.logout", at=now, details={}
        )
