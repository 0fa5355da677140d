"""Officer accounts (core.accounts.officers): argon2id + TOTP, replay refusal, lockout, disabled
accounts, audit events; `sceau officer add` as a user runs it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from sqlalchemy import select, text

from core.accounts.officers import (
    LoginRefusedError,
    Role,
    authenticate,
    create_officer,
    disable_officer,
)
from core.errors import SceauError
from core.store.models import AuditEvent, Officer
from tests.support.judges import BIN, run
from tests.support.officers import Person, new_person
from tests.support.pki import Pki

LIMITS = {"max_failed": 5, "lockout_minutes": 15}


def code_at(person: Person, when: datetime) -> str:
    return pyotp.TOTP(person.secret).at(when)


def login_at(
    pki: Pki, person: Person, when: datetime, *, password: str = "", code: str = ""
) -> Role:
    account = authenticate(
        pki.ctx.db,
        pki.ctx.sealer,
        person.name,
        password or person.password,
        code or code_at(person, when),
        now=when,
        **LIMITS,
    )
    return account.role


def actions(pki: Pki, actor: str) -> list[str]:
    with pki.ctx.db.read() as session:
        return list(
            session.scalars(
                select(AuditEvent.action).where(AuditEvent.actor == actor).order_by(AuditEvent.seq)
            )
        )


def test_password_and_totp(pki: Pki) -> None:
    alice = new_person(pki, Role.RA_OFFICER)
    now = datetime.now(UTC)
    assert login_at(pki, alice, now) is Role.RA_OFFICER
    assert actions(pki, f"officer:{alice.name}") == ["officer.login"]
    with pytest.raises(LoginRefusedError) as refused:
        login_at(pki, alice, now + timedelta(seconds=30), password="not-the-password")
    assert refused.value.detail == "wrong name, password or code"
    with pytest.raises(LoginRefusedError):
        login_at(pki, alice, now + timedelta(seconds=30), code="000000x")
    # Nothing secret is stored in clear: argon2id hash, sealed TOTP secret.
    with pki.ctx.db.read() as session:
        row = session.execute(
            text("select * from officers where name = :n"), {"n": alice.name}
        ).one()
    dump = repr(tuple(row))
    assert alice.password not in dump and alice.secret not in dump
    assert alice.secret.encode() not in b"".join(v for v in row if isinstance(v, bytes))
    assert str(row.password_hash).startswith("$argon2id$")


def test_replayed_code_is_refused(pki: Pki) -> None:
    bob = new_person(pki, Role.RA_OFFICER)
    now = datetime.now(UTC)
    code = code_at(bob, now)
    login_at(pki, bob, now, code=code)
    with pytest.raises(LoginRefusedError):
        login_at(pki, bob, now + timedelta(seconds=1), code=code)
    # An older step inside the window is refused too: steps only move forward.
    with pytest.raises(LoginRefusedError):
        login_at(pki, bob, now, code=code_at(bob, now - timedelta(seconds=30)))
    # The next step works.
    login_at(pki, bob, now + timedelta(seconds=30))
    with pki.ctx.db.read() as session:
        failures = session.scalars(
            select(AuditEvent.details).where(
                AuditEvent.actor == f"officer:{bob.name}",
                AuditEvent.action == "officer.login_failed",
            )
        ).all()
    assert [f["reason"] for f in failures] == ["replayed code", "replayed code"]


def test_brute_force_locks_the_account(pki: Pki) -> None:
    carol = new_person(pki, Role.AUDITOR)
    now = datetime.now(UTC)
    for attempt in range(5):
        with pytest.raises(LoginRefusedError) as refused:
            login_at(pki, carol, now + timedelta(seconds=attempt), password=f"guess-{attempt}")
    assert "locked" in refused.value.detail
    # Locked: even the right password and code are refused, without being checked.
    with pytest.raises(LoginRefusedError) as refused:
        login_at(pki, carol, now + timedelta(minutes=1))
    assert "locked" in refused.value.detail
    trail = actions(pki, f"officer:{carol.name}")
    assert trail.count("officer.login_failed") == 6 and trail.count("officer.locked") == 1
    # After the lockout, the right credentials work again.
    assert login_at(pki, carol, now + timedelta(minutes=16)) is Role.AUDITOR


def test_wrong_codes_count_like_wrong_passwords(pki: Pki) -> None:
    dave = new_person(pki, Role.RA_OFFICER)
    now = datetime.now(UTC)
    for attempt in range(5):
        with pytest.raises(LoginRefusedError):
            login_at(pki, dave, now + timedelta(seconds=attempt), code="123456")
    with pki.ctx.db.read() as session:
        row = session.scalars(select(Officer).where(Officer.name == dave.name)).one()
    assert row.locked_until is not None and row.locked_until > now


def test_unknown_and_disabled_accounts(pki: Pki) -> None:
    now = datetime.now(UTC)
    with pytest.raises(LoginRefusedError) as refused:
        authenticate(pki.ctx.db, pki.ctx.sealer, "nobody", "x", "123456", now=now, **LIMITS)
    assert refused.value.detail == "wrong name, password or code"
    erin = new_person(pki, Role.ADMIN)
    disable_officer(pki.ctx.db, erin.name, now=now, actor="test")
    with pytest.raises(LoginRefusedError) as refused:
        login_at(pki, erin, now)
    assert refused.value.detail == "wrong name, password or code"


@pytest.mark.parametrize("name", ["", "Alice", "a b", "<script>", "x" * 65, "1abc"])
def test_bad_names_are_refused(pki: Pki, name: str) -> None:
    with pytest.raises(SceauError, match="officer name"):
        create_officer(
            pki.ctx.db, pki.ctx.sealer, name, Role.AUDITOR, now=datetime.now(UTC), actor="test"
        )


@pytest.mark.slow  # `sceau officer add` as a process
def test_cli_officer_add(pki: Pki) -> None:
    if pki.backend != "sqlite":
        pytest.skip("one backend is enough for the command line")
    done = run(BIN / "sceau", "--home", pki.home, "officer", "add", "frank", "--role", "admin")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    password = next(line.split(": ", 1)[1] for line in lines if "password:" in line)
    uri = next(line.split(": ", 1)[1] for line in lines if "otpauth://" in line)
    assert uri.startswith("otpauth://totp/Sceau:frank?") and "issuer=Sceau" in uri
    assert password not in done.stderr and uri not in done.stderr  # nothing secret logged
    person = Person("frank", Role.ADMIN, password, pyotp.parse_uri(uri).secret)
    assert login_at(pki, person, datetime.now(UTC)) is Role.ADMIN
    again = run(BIN / "sceau", "--home", pki.home, "officer", "add", "frank", "--role", "admin")
    assert again.returncode == 2 and "exists already" in again.stderr
    bad = run(BIN / "sceau", "--home", pki.home, "officer", "add", "gina", "--role", "root")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
