"""What failures leave behind is resolved: reservations that never became certificates
are marked abandoned with one certificate.failed event each (the TBS kept, status services
answering as for a serial never issued); subscriber keys that no record names are reported,
then destroyed after a grace period, each step audited."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from ca.leftovers import RESERVATION_GRACE, abandon_stale_reservations, stale_reservations
from core.hsm.algorithms import KeyAlgorithm
from core.store.models import AuditEvent, Certificate
from pki.status import CertState, DatabaseStatusSource
from signing.custodian import KEY_PREFIX, ORPHAN_GRACE, orphan_keys, sweep_orphan_keys
from tests.support.builders import LEGAL
from tests.support.issuance import approved_proof, issue
from tests.support.judges import BIN, run
from tests.support.pki import Pki


def _reserve(pki: Pki, serial: int, at: datetime) -> int:
    """A reservation as the pipeline leaves it when it dies before the signature."""
    with pki.ctx.db.read() as session:
        template = session.scalars(
            select(Certificate).where(Certificate.status == "issued")
        ).first()
    assert template is not None
    with pki.ctx.db.write() as session:
        row = Certificate(
            issuer_id=template.issuer_id,
            serial=format(serial, "x"),
            profile=template.profile,
            status="reserved",
            proof_id=template.proof_id,
            client_id=template.client_id,
            subject=template.subject,
            tbs=template.tbs,
            der=None,
            not_before=template.not_before,
            not_after=template.not_after,
            created_at=at,
            crl_shard=None,
        )
        session.add(row)
        session.flush()
        return row.id


def test_stale_reservations_are_abandoned_once(pki: Pki) -> None:
    issue(pki.client("person-lcp"))  # a template row
    now = datetime.now(UTC).replace(microsecond=0)
    old = _reserve(pki, 0x5CEA0001 + int(now.timestamp()), now - RESERVATION_GRACE * 2)
    fresh = _reserve(pki, 0x5CEA0002 + int(now.timestamp()), now - timedelta(seconds=5))
    assert old in {r.id for r in stale_reservations(pki.ctx.db, now=now)}
    assert fresh not in {r.id for r in stale_reservations(pki.ctx.db, now=now)}
    assert abandon_stale_reservations(pki.ctx.db, now=now) >= 1
    assert abandon_stale_reservations(pki.ctx.db, now=now) == 0  # nothing twice
    with pki.ctx.db.read() as session:
        abandoned = session.get(Certificate, old)
        kept = session.get(Certificate, fresh)
        events = [
            e
            for e in session.scalars(
                select(AuditEvent).where(AuditEvent.action == "certificate.failed")
            )
            if abandoned is not None and e.details.get("serial") == abandoned.serial
        ]
    assert abandoned is not None and kept is not None
    assert (abandoned.status, kept.status) == ("abandoned", "reserved")
    assert abandoned.tbs  # kept for the auditor
    assert len(events) == 1 and "abandoned" in events[0].details["reason"]
    status = DatabaseStatusSource(pki.ctx.db).status(abandoned.issuer_id, int(abandoned.serial, 16))
    assert status.state is CertState.NOT_ISSUED


def test_keys_no_record_names_are_reported_then_destroyed(pki: Pki) -> None:
    """A subscriber key in the token without its credential row (left by an older release,
    or a row removed behind our back): reported once, destroyed after the grace period."""
    label = f"{KEY_PREFIX}cred-orphan{secrets.token_hex(6)}"
    pki.ctx.keys.generate(label, KeyAlgorithm.EC_P256)
    now = datetime.now(UTC)
    assert label in {k.label for k in orphan_keys(pki.ctx.db, pki.ctx.keys, now=now)}
    # The keys of issued credentials are never orphans.
    api = pki.client("seal-lcp")
    named = api.post(
        "/ca/api/v1/certificates",
        {"profile": "seal-lcp", "identity_proof": approved_proof(pki, api, LEGAL, "registry", 1)},
    ).json["credential_id"]
    assert f"{KEY_PREFIX}{named}" not in {
        k.label for k in orphan_keys(pki.ctx.db, pki.ctx.keys, now=now)
    }
    assert sweep_orphan_keys(pki.ctx.db, pki.ctx.keys, now=now) == []  # reported, kept
    assert pki.ctx.keys.has_key(label)
    later = now + ORPHAN_GRACE + timedelta(minutes=1)
    destroyed = sweep_orphan_keys(pki.ctx.db, pki.ctx.keys, now=later)
    assert label in {k.label for k in destroyed}
    assert not pki.ctx.keys.has_key(label)
    with pki.ctx.db.read() as session:
        events = [
            e.action
            for e in session.scalars(
                select(AuditEvent).where(AuditEvent.action.like("credential.orphan_key%"))
            )
            if e.details["key"] == label
        ]
    assert events == ["credential.orphan_key", "credential.orphan_key_destroyed"]


@pytest.mark.slow
def test_the_operator_lists_and_resolves_leftovers(pki: Pki) -> None:
    if pki.backend != "sqlite":
        pytest.skip("one backend is enough for the command line")
    label = f"{KEY_PREFIX}cred-orphan{secrets.token_hex(6)}"
    pki.ctx.keys.generate(label, KeyAlgorithm.EC_P256)
    listed = run(BIN / "sceau", "--home", pki.home, "leftovers", "list")
    assert listed.returncode == 0, listed.stderr
    assert f"key {label} in the token" in listed.stdout
    resolved = run(BIN / "sceau", "--home", pki.home, "leftovers", "resolve")
    assert resolved.returncode == 0, resolved.stderr
    assert "unrecorded keys destroyed" in resolved.stdout
    assert label not in run(BIN / "sceau", "--home", pki.home, "leftovers", "list").stdout
