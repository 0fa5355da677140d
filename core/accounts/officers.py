"""Officer and auditor accounts: argon2id password plus TOTP at every login.

Shared by the officer UI (/ra/admin) and the auditor UI (/audit). The TOTP secret is sealed
(core.hsm.envelope, associated data ``officer:<name>``), so a database copy cannot mint codes. A
code is accepted once only: the last accepted time step is kept and anything at or before it
is refused (RFC 6238 §5.2). Wrong passwords and wrong codes count alike towards a lockout.

Every outcome (success, failure, lockout, refusal of a locked or disabled account) is an
audit event in the same transaction as the counter it changes.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit
from core.errors import ErrorKind, SceauError
from core.hsm.envelope import Sealed, Sealer
from core.store.db import Database
from core.store.models import Officer

NAME = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")
TOTP_ISSUER = "Sceau"
TOTP_STEP = 30  # seconds, RFC 6238 default; authenticator apps assume it
# One step either side: a phone clock a little off still works (RFC 6238 §5.2 advises one).
TOTP_WINDOW = 1
MAX_PASSWORD = 1024  # argon2 takes any length; this only bounds the work a request can ask

# argon2id with the library defaults (RFC 9106 second recommended option: 64 MiB, t=3).
_HASHER = PasswordHasher()
# Verified when the name is unknown, so that the answer takes as long as for a real account.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


class Role(StrEnum):
    RA_OFFICER = "ra-officer"  # reviews, approves, rejects proofs; revokes certificates
    AUDITOR = "auditor"  # reads everything, changes nothing
    ADMIN = "admin"  # everything an ra-officer does, plus accounts and legal holds


@dataclass(frozen=True)
class OfficerAccount:
    id: int
    name: str
    role: Role

    @property
    def actor(self) -> str:
        return f"officer:{self.name}"


@dataclass(frozen=True)
class NewOfficer:
    name: str
    role: Role
    password: str  # shown once, never stored
    provisioning_uri: str  # otpauth://totp/... for the authenticator app, shown once


class LoginRefusedError(SceauError):
    """A failed login. ``detail`` is what the person is told: it never says which of
    name, password or code was wrong (except for a lockout, which they must know of)."""

    def __init__(self, detail: str = "wrong name, password or code") -> None:
        super().__init__(ErrorKind.UNAUTHENTICATED, detail)


def totp_aad(name: str) -> str:
    return f"officer:{name}"


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise SceauError(
            ErrorKind.INVALID,
            "officer name: 1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter",
        )
    return name


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise SceauError(
            ErrorKind.INVALID, f"role must be one of {', '.join(r.value for r in Role)}"
        ) from None


def create_officer(  # noqa: PLR0913 - every write is dated and attributed: now, actor keyword-only
    db: Database, sealer: Sealer, name: str, role: Role, *, now: datetime, actor: str
) -> NewOfficer:
    """Create an account with a random password and TOTP secret, returned once."""
    check_name(name)
    password = secrets.token_urlsafe(18)  # 144 bits: nobody guesses it, a manager keeps it
    totp_secret = pyotp.random_base32()  # 160 bits, RFC 4226 §4 recommendation
    sealed = sealer.seal(totp_aad(name), totp_secret.encode())
    try:
        with db.write() as session:
            session.add(
                Officer(
                    name=name,
                    role=role.value,
                    password_hash=_HASHER.hash(password),
                    totp_sealed=sealed.ciphertext,
                    totp_wrapped_key=sealed.wrapped_key,
                    totp_last_step=None,
                    failed_logins=0,
                    created_at=now,
                )
            )
            session.flush()
            audit.append(
                session,
                actor=actor,
                action="officer.created",
                at=now,
                details={"officer": name, "role": role.value},
            )
    except IntegrityError as exc:
        raise SceauError(ErrorKind.CONFLICT, f"an officer named {name!r} exists already") from exc
    uri = pyotp.TOTP(totp_secret, interval=TOTP_STEP).provisioning_uri(
        name=name, issuer_name=TOTP_ISSUER
    )
    return NewOfficer(name, role, password, uri)


def _password_ok(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _totp_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step ``code`` belongs to, within the window around ``now``, or None."""
    if not re.fullmatch(r"\d{6}", code):
        return None
    totp = pyotp.TOTP(secret, interval=TOTP_STEP)
    current = totp.timecode(now)
    for step in range(current - TOTP_WINDOW, current + TOTP_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _login_failed(
    session: Session, row: Officer | None, now: datetime, details: dict[str, Any]
) -> None:
    """An ``officer.login_failed`` event, by the account tried (anonymous when no account
    has the name given)."""
    actor = totp_aad(row.name) if row is not None else "anonymous"
    audit.append(session, actor=actor, action="officer.login_failed", at=now, details=details)


def _fail(  # noqa: PLR0913 - the lockout policy's two figures, keyword-only
    session: Session, row: Officer, reason: str, *, now: datetime, max_failed: int, lockout: int
) -> str:
    """Count a failure; lock the account when the count reaches ``max_failed``."""
    row.failed_logins += 1
    _login_failed(session, row, now, {"reason": reason, "failed_logins": row.failed_logins})
    if row.failed_logins >= max_failed:
        row.locked_until = now + timedelta(minutes=lockout)
        row.failed_logins = 0
        audit.append(
            session,
            actor=totp_aad(row.name),
            action="officer.locked",
            at=now,
            details={"until": row.locked_until.isoformat(), "after_failures": max_failed},
        )
        return "too many failed attempts: this account is locked for a while"
    return "wrong name, password or code"


def authenticate(  # noqa: PLR0913 - both factors and the lockout policy, keyword-only
    db: Database,
    sealer: Sealer,
    name: str,
    password: str,
    code: str,
    *,
    now: datetime,
    max_failed: int,
    lockout_minutes: int,
    client_address: str = "",
) -> OfficerAccount:
    """Check name, password and TOTP code; return the account or raise LoginRefusedError.

    The failure is committed (counter, lockout, audit event) before the exception leaves,
    so a refused attempt is never rolled back with it.
    """
    name = name.strip()[:64]
    code = code.strip().replace(" ", "")[:16]
    password = password[:MAX_PASSWORD]
    refusal: str | None = None
    account: OfficerAccount | None = None
    with db.write() as session:
        # The row lock makes attempts on one account take turns: each sees the count and
        # the lockout the one before it wrote, so a parallel burst cannot check more than
        # max_failed passwords (PostgreSQL; SQLite's one writer already serialises them).
        # Lock order: the officer row, then the audit head (core.audit).
        row = session.scalars(select(Officer).where(Officer.name == name).with_for_update()).first()
        if row is None:
            _password_ok(_DUMMY_HASH, password)  # same cost as a real check
            _login_failed(
                session,
                None,
                now,
                {"reason": "unknown account", "claimed_name": name, "from": client_address},
            )
            refusal = "wrong name, password or code"
        elif row.disabled_at is not None:
            _login_failed(session, row, now, {"reason": "account disabled", "from": client_address})
            refusal = "wrong name, password or code"
        elif row.locked_until is not None and row.locked_until > now:
            # Not even the password is checked: a locked account gives a guesser nothing.
            _login_failed(session, row, now, {"reason": "account locked", "from": client_address})
            refusal = "too many failed attempts: this account is locked for a while"
        elif not _password_ok(row.password_hash, password):
            refusal = _fail(
                session,
                row,
                "wrong password",
                now=now,
                max_failed=max_failed,
                lockout=lockout_minutes,
            )
        else:
            secret = sealer.open(
                totp_aad(row.name), Sealed(row.totp_wrapped_key, row.totp_sealed)
            ).decode()
            step = _totp_step(secret, code, now)
            reason = "wrong code"
            if step is not None:
                # Conditional UPDATE: of two logins racing with one code, one wins.
                taken = session.execute(
                    update(Officer)
                    .where(
                        Officer.id == row.id,
                        or_(Officer.totp_last_step.is_(None), Officer.totp_last_step < step),
                    )
                    .values(totp_last_step=step)
                    .execution_options(synchronize_session=False)
                )
                if taken.rowcount == 1:  # type: ignore[attr-defined]
                    row.totp_last_step = step
                    row.failed_logins = 0
                    row.locked_until = None
                    if _HASHER.check_needs_rehash(row.password_hash):
                        row.password_hash = _HASHER.hash(password)
                    audit.append(
                        session,
                        actor=totp_aad(row.name),
                        action="officer.login",
                        at=now,
                        details={"role": row.role, "from": client_address},
                    )
                    account = OfficerAccount(row.id, row.name, Role(row.role))
                else:
                    reason = "replayed code"
            if account is None:
                refusal = _fail(
                    session, row, reason, now=now, max_failed=max_failed, lockout=lockout_minutes
                )
    if account is None:
        raise LoginRefusedError(refusal or "wrong name, password or code")
    return account


def load_account(session: Session, officer_id: int) -> OfficerAccount | None:
    """The enabled account behind a session, or None (disabled or deleted since)."""
    row = session.get(Officer, officer_id)
    if row is None or row.disabled_at is not None:
        return None
    return OfficerAccount(row.id, row.name, Role(row.role))


def disable_officer(db: Database, name: str, *, now: datetime, actor: str) -> None:
    with db.write() as session:
        row = session.scalars(select(Officer).where(Officer.name == name)).first()
        if row is None:
            raise SceauError(ErrorKind.NOT_FOUND, f"no officer named {name!r}")
        row.disabled_at = now
        audit.append(
            session, actor=actor, action="officer.disabled", at=now, details={"officer": name}
        )
