"""Signed, timestamped Merkle checkpoints: `sceau audit verify` names the first event or
checkpoint that fails after each kind of tampering (edit, delete, reorder, insert, and a
truncation of the newest events with the head rewound), on SQLite and PostgreSQL; an
untouched log verifies, its timestamps with `openssl ts -verify` too; an export verifies
offline and its tampering is caught.

Tampering happens on a copy of the session's database (sqlite backup, or PostgreSQL
CREATE DATABASE ... TEMPLATE), so the other tests keep their log.
"""

from __future__ import annotations

import base64
import json
import secrets
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from werkzeug.test import Client as WsgiClient

from audit.checkpoints import Statement, verify_database
from audit.export import build_export, to_csv, to_jsonl, verify_export
from audit.queries import EventFilter
from core import audit
from core.store.db import Database
from core.store.models import AuditCheckpoint, AuditEvent, AuditHead
from sceau.cli import main
from tests.support.audit import append_events, checkpoint_maker
from tests.support.pki import Pki
from tests.support.postgres import PgCluster


@dataclass
class Logged:
    pki: Pki
    first: int  # seq of this module's first event
    checkpoints: list[int]  # tree sizes made here
    last: int  # seq of the newest event (after the last checkpoint: uncovered)


def _append(db: Database, n: int, at: datetime) -> int:
    return append_events(
        db,
        (
            (
                f"client:acme-{i % 3}",
                "certificate.issued" if i % 2 else "identity_proof.created",
                {
                    "profile": "person-lcp" if i % 3 else "seal-lcp",
                    "serial": format(0x7A000 + i, "x"),
                    "proof": f"prf{i:04d}",
                    "n": i,
                },
                at + timedelta(seconds=i),
            )
            for i in range(n)
        ),
    )


@pytest.fixture(scope="module")
def logged(pki: Pki) -> Iterator[Logged]:
    db = pki.ctx.db
    now = datetime.now(UTC)
    with checkpoint_maker(pki) as maker:
        first = _append(db, 1, now)
        _append(db, 9, now)
        one = maker.make(now)
        _append(db, 6, now)
        two = maker.make(now)
        last = _append(db, 3, now)
    assert one and two
    yield Logged(pki, first, [one.tree_size, two.tree_size], last)


@pytest.fixture
def copy(logged: Logged, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Database]:
    """A copy of the session's database, to tamper with."""
    pki = logged.pki
    if pki.backend == "sqlite":
        target = tmp_path / "copy.db"
        source = sqlite3.connect(pki.config.database.url.removeprefix("sqlite:///"))
        dest = sqlite3.connect(target)
        source.backup(dest)
        source.close()
        dest.close()
        url = f"sqlite:///{target}"
    else:
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        pki.ctx.db.engine.dispose()  # a template database must have no other connection
        url = cluster.create_database(
            f"tamper_{secrets.token_hex(4)}", template=str(pki.ctx.db.engine.url.database)
        )
    db = Database(url)
    yield db
    db.dispose()


def test_untouched_log_verifies(logged: Logged, capsys: pytest.CaptureFixture[str]) -> None:
    report = verify_database(logged.pki.ctx.db)
    assert report.failure is None, report.failure
    assert report.checkpoints >= 2 and report.events >= logged.last
    assert main(["audit", "verify", "--home", str(logged.pki.home)]) == 0
    out = capsys.readouterr().out
    assert "intact" in out and "audit key sceau-audit: SHA-256" in out


def test_openssl_verifies_checkpoint_timestamp(logged: Logged, tmp_path: Path) -> None:
    """The token over a checkpoint's signature verifies with `openssl ts -verify`, against
    the CA certificates as the repository serves them at /certs."""
    with logged.pki.ctx.db.read() as session:
        cp = session.scalars(
            select(AuditCheckpoint).where(AuditCheckpoint.tree_size == logged.checkpoints[-1])
        ).one()
    (tmp_path / "sig.bin").write_bytes(cp.signature)
    (tmp_path / "token.der").write_bytes(cp.timestamp_token)
    http = WsgiClient(logged.pki.app)
    root = http.get("/certs/root.crt")
    assert root.status_code == 200
    pem = x509.load_der_x509_certificate(root.data).public_bytes(Encoding.PEM)
    (tmp_path / "root.pem").write_bytes(pem)
    done = subprocess.run(
        [
            *("openssl", "ts", "-verify", "-token_in", "-in", str(tmp_path / "token.der")),
            *("-data", str(tmp_path / "sig.bin"), "-CAfile", str(tmp_path / "root.pem")),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "Verification: OK" in done.stdout, done.stdout + done.stderr
    statement = Statement.decode(cp.statement)
    assert statement.tree_size == cp.tree_size and statement.root_hash == cp.root_hash


def _edit(s: Session, lg: Logged) -> int:
    s.execute(update(AuditEvent).where(AuditEvent.seq == lg.first + 2).values(details={"n": 99}))
    return lg.first + 2


def _edit_filter_column(s: Session, lg: Logged) -> int:
    # Hides the event from the auditor's serial filter without touching the hashed details.
    s.execute(update(AuditEvent).where(AuditEvent.seq == lg.first + 4).values(serial="ff"))
    return lg.first + 4


def _delete(s: Session, lg: Logged) -> int:
    s.execute(delete(AuditEvent).where(AuditEvent.seq == lg.first + 3))
    return lg.first + 3


def _reorder(s: Session, lg: Logged) -> int:
    a, b = s.get(AuditEvent, lg.first + 5), s.get(AuditEvent, lg.first + 6)
    assert a and b
    fields = ("at", "actor", "action", "details", "prev_hash", "hash", "profile", "serial")
    va, vb = ({f: getattr(a, f) for f in fields}, {f: getattr(b, f) for f in fields})
    for f in fields:
        setattr(a, f, vb[f])
        setattr(b, f, va[f])
    return lg.first + 5


def _insert(s: Session, lg: Logged) -> int:
    # A forged event with a well-formed hash chained onto the newest, head not moved.
    head = s.get(AuditHead, 1)
    assert head
    at = datetime.now(UTC)
    forged = audit.chain_hash(head.hash, head.seq + 1, at, "x", "y", {})
    s.add(
        AuditEvent(
            seq=head.seq + 1,
            at=at,
            actor="x",
            action="y",
            details={},
            prev_hash=head.hash,
            hash=forged,
        )
    )
    return head.seq + 1


def _truncate(s: Session, lg: Logged) -> int:
    """Delete the newest events back to inside the last checkpoint, and rewind the head
    row to the new last event: the bare chain is whole again."""
    keep = lg.checkpoints[-1] - 2
    s.execute(delete(AuditEvent).where(AuditEvent.seq > keep))
    last = s.get(AuditEvent, keep)
    assert last
    s.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=keep, hash=last.hash))
    return keep + 1


def _rewrite_history(s: Session, lg: Logged) -> int:
    """Edit an event and recompute every later hash and the head: the chain verifies,
    the first checkpoint covering the edit does not."""
    rows = list(s.scalars(select(AuditEvent).order_by(AuditEvent.seq)))
    target = lg.first + 1
    prev = audit.GENESIS
    for ev in rows:
        if ev.seq == target:
            ev.details = {**ev.details, "n": 1000}
        if ev.seq >= target:
            ev.prev_hash = prev
            ev.hash = audit.chain_hash(prev, ev.seq, ev.at, ev.actor, ev.action, ev.details)
        prev = ev.hash
    s.execute(update(AuditHead).where(AuditHead.id == 1).values(hash=prev))
    return lg.checkpoints[0]


def _forge_checkpoint(s: Session, lg: Logged) -> int:
    cp = s.scalars(
        select(AuditCheckpoint).where(AuditCheckpoint.tree_size == lg.checkpoints[0])
    ).one()
    cp.root_hash = "00" * 32
    return lg.checkpoints[0]


def _swap_timestamp(s: Session, lg: Logged) -> int:
    one, two = (
        s.scalars(select(AuditCheckpoint).where(AuditCheckpoint.tree_size == size)).one()
        for size in lg.checkpoints
    )
    one.timestamp_token = two.timestamp_token
    return lg.checkpoints[0]


@pytest.mark.parametrize(
    ("tamper", "what"),
    [
        (_edit, "event"),
        (_edit_filter_column, "event"),
        (_delete, "event"),
        (_reorder, "event"),
        (_insert, "event"),
        (_truncate, "event"),
        (_rewrite_history, "checkpoint"),
        (_forge_checkpoint, "checkpoint"),
        (_swap_timestamp, "checkpoint"),
    ],
)
def test_tampering_is_named(
    logged: Logged,
    copy: Database,
    tamper: Callable[[Session, Logged], int],
    what: str,
) -> None:
    assert verify_database(copy).failure is None
    with copy.write() as session:
        expected = tamper(session, logged)
    failure = verify_database(copy).failure
    assert failure is not None, tamper.__name__
    assert (failure.what, failure.ident) == (what, expected), failure


def test_cli_names_truncation(
    logged: Logged, copy: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with copy.write() as session:
        expected = _truncate(session, logged)
    home = tmp_path / "home"
    home.mkdir()
    for name in ("sceau.toml", "secrets.toml", "softhsm2.conf"):
        source = logged.pki.home / name
        if source.exists():
            (home / name).write_bytes(source.read_bytes())
            (home / name).chmod(source.stat().st_mode & 0o777)
    toml = (home / "sceau.toml").read_text()
    toml = toml.replace(logged.pki.config.database.url, copy.url)
    (home / "sceau.toml").write_text(toml)
    assert main(["audit", "verify", "--home", str(home)]) == 1
    out = capsys.readouterr().out
    assert f"BROKEN at event {expected}: missing: checkpoint" in out, out


# --- exports -------------------------------------------------------------------------------


def _export(logged: Logged, fmt: str) -> str:
    flt = EventFilter(actor="client:acme-1")
    with logged.pki.ctx.db.read() as session:
        records = build_export(session, flt, now=datetime.now(UTC))
    return "".join(to_jsonl(records)) if fmt == "jsonl" else to_csv(records)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_verifies_offline(logged: Logged, fmt: str, tmp_path: Path) -> None:
    text = _export(logged, fmt)
    report = verify_export(text)
    assert report.failure is None, report.failure
    assert report.events >= 6 and report.checkpoints >= 1 and report.uncovered >= 1
    path = tmp_path / f"export.{fmt}"
    path.write_text(text)
    assert main(["audit", "verify", "--export", str(path)]) == 0


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def _join(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def test_export_tampering_is_named(logged: Logged) -> None:
    records = _lines(_export(logged, "jsonl"))
    events = [r for r in records if r["record"] == "event" and r["checkpoint"]]
    target = events[1]

    edited = [dict(r) for r in records]
    for r in edited:
        if r.get("seq") == target["seq"]:
            r["details"] = {**r["details"], "n": -1}
    assert str(verify_export(_join(edited)).failure).startswith(f"event {target['seq']}:")

    # A consistent forgery (hash recomputed) is not in the signed checkpoint.
    forged = [dict(r) for r in records]
    for r in forged:
        if r.get("seq") == target["seq"]:
            r["actor"] = "officer:mallory"
            at = datetime.fromisoformat(r["at"])
            r["hash"] = audit.chain_hash(
                r["prev_hash"], r["seq"], at, r["actor"], r["action"], r["details"]
            )
    failure = verify_export(_join(forged)).failure
    assert failure is not None and failure.ident == target["seq"]
    assert "not included" in failure.reason

    dropped = [r for r in records if r.get("seq") != target["seq"]]
    failure = verify_export(_join(dropped)).failure
    assert failure is not None and "announces" in failure.reason

    bad_sig = [dict(r) for r in records]
    for r in bad_sig:
        if r["record"] == "checkpoint":
            sig = bytearray(base64.b64decode(r["signature"]))
            sig[-1] ^= 1
            r["signature"] = base64.b64encode(bytes(sig)).decode()
            size = r["tree_size"]
            break
    failure = verify_export(_join(bad_sig)).failure
    assert failure is not None and (failure.what, failure.ident) == ("checkpoint", size)


@pytest.mark.parametrize(
    "text", ["", "not json", '{"record": "event"}\n', "record,seq\nheader,1\n"]
)
def test_unreadable_export_is_refused(text: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    assert main(["audit", "verify", "--export", str(path)]) == 2


def test_configuration_change_is_audited(pki: Pki) -> None:
    import dataclasses

    from core.audit.config_audit import record_config

    db, config = pki.ctx.db, pki.config
    record_config(db, config, now=datetime.now(UTC), actor="test")  # the CA app did it already
    assert not record_config(db, config, now=datetime.now(UTC), actor="test")
    changed = dataclasses.replace(config, crl=dataclasses.replace(config.crl, shards=3))
    assert record_config(db, changed, now=datetime.now(UTC), actor="system:test")
    with db.read() as session:
        ev = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "config.loaded")
            .order_by(AuditEvent.seq.desc())
        ).first()
    assert ev is not None and ev.actor == "system:test" and ev.details["changed"] == ["crl.shards"]
    text = json.dumps(ev.details)
    assert config.hsm.user_pin not in text and "user_pin" not in text
    assert record_config(db, config, now=datetime.now(UTC), actor="system:test")  # and back
