"""Retention moves the clock: a record is kept for 7 years after its last certificate
expires (after its creation without one), then purged to a stub with one audit event; a
legal hold stops the purge. The subject-access export and the CLI commands."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path

import pytest
from sqlalchemy import select

from core.errors import SceauError
from core.store.models import AuditEvent, Certificate, EvidenceFile, IdentityProof, ProofTerm
from pki.proofs import add_years
from registration.export import build_export, to_zip, write_directory
from registration.retention import purge_expired, release_legal_hold, set_legal_hold
from sceau.cli import main
from tests.support.builders import NATURAL, NATURAL_FULL, csr_pem
from tests.support.clients import ApiClient
from tests.support.evidence import pdf_bytes, png_bytes, upload
from tests.support.pki import Pki

PROOFS = "/ra/api/v1/identity-proofs"


def _purge(pki: Pki, pid: str, now: datetime) -> list[str]:
    # Only this test's record: the session's database is shared with other tests.
    return purge_expired(pki.ctx.db, years=7, now=now, proof_ids=[pid])


def _proof(pki: Pki, pid: str) -> IdentityProof:
    with pki.ctx.db.read() as session:
        proof = session.get(IdentityProof, pid)
    assert proof is not None
    return proof


def _events(pki: Pki, action: str, pid: str) -> list[AuditEvent]:
    with pki.ctx.db.read() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == action)).all()
    return [e for e in events if e.details.get("proof") == pid]


def _pending_with_files(pki: Pki) -> tuple[ApiClient, str]:
    api = pki.client("person-lcp")
    pid = api.post(PROOFS, NATURAL_FULL).json["id"]
    assert upload(api, pid, png_bytes(b"front"), "image/png").status_code == 201
    assert upload(api, pid, pdf_bytes(b"mandate"), "application/pdf", "other").status_code == 201
    return api, pid


def test_kept_seven_years_after_last_certificate(pki: Pki) -> None:
    api = pki.client("person-lcp")
    pid = api.post(PROOFS, NATURAL).json["id"]
    issued = api.post(
        "/ca/api/v1/certificates",
        {"profile": "person-lcp", "identity_proof": pid, "csr": csr_pem()},
    )
    assert issued.status_code == 201, issued.json
    with pki.ctx.db.read() as session:
        not_after = session.scalar(select(Certificate.not_after).where(Certificate.proof_id == pid))
    assert not_after is not None
    proof = _proof(pki, pid)
    assert proof.retain_until == add_years(not_after, 7)
    created = proof.created_at
    # 7 years after creation the certificate's retention still runs: kept.
    assert _purge(pki, pid, add_years(created, 7) + timedelta(days=1)) == []
    assert _purge(pki, pid, add_years(not_after, 7) - timedelta(seconds=1)) == []
    assert _proof(pki, pid).status == "verified"
    # A retain_until lowered by hand does not erase a record a certificate relies on.
    with pki.ctx.db.write() as session:
        row = session.get(IdentityProof, pid)
        assert row is not None
        row.retain_until = created
    assert _purge(pki, pid, add_years(not_after, 7) - timedelta(days=1)) == []
    assert _proof(pki, pid).retain_until == add_years(not_after, 7)
    # One second past: purged, a stub and one audit event left.
    later = add_years(not_after, 7) + timedelta(seconds=1)
    assert _purge(pki, pid, later) == [pid]
    stub = _proof(pki, pid)
    assert stub.status == "purged" and stub.purged_at == later
    assert stub.sealed is None and stub.wrapped_key is None
    assert (stub.subject_kind, stub.method) == ("natural", "delegated")
    assert stub.created_at == created and stub.verified_at is not None
    events = _events(pki, "identity_proof.purged", pid)
    assert len(events) == 1 and events[0].actor == "system:retention"
    # Purging again changes nothing; the platform sees the stub.
    assert _purge(pki, pid, later + timedelta(days=400)) == []
    assert len(_events(pki, "identity_proof.purged", pid)) == 1
    seen = api.get(f"{PROOFS}/{pid}")
    assert seen.status_code == 200 and seen.json["status"] == "purged"
    assert "subject" not in seen.json and "document" not in seen.json


def test_purge_without_certificate_erases_files_and_terms(pki: Pki) -> None:
    _, pid = _pending_with_files(pki)
    created = _proof(pki, pid).created_at
    assert _purge(pki, pid, add_years(created, 7) - timedelta(seconds=1)) == []
    assert _purge(pki, pid, add_years(created, 7)) == [pid]
    with pki.ctx.db.read() as session:
        files = session.scalars(select(EvidenceFile).where(EvidenceFile.proof_id == pid)).all()
        terms = session.scalars(select(ProofTerm).where(ProofTerm.proof_id == pid)).all()
    assert len(files) == 2 and all(f.sealed is None and f.wrapped_key is None for f in files)
    assert terms == []
    assert _events(pki, "identity_proof.purged", pid)[0].details["files"] == 2
    with pytest.raises(SceauError, match="purged"):
        build_export(pki.ctx.db, pki.ctx.sealer, pid, actor="officer:o", now=datetime.now(UTC))


def test_legal_hold_stops_the_purge(pki: Pki) -> None:
    _, pid = _pending_with_files(pki)
    now = datetime.now(UTC)
    far = add_years(now, 9)
    set_legal_hold(pki.ctx.db, pid, "Tribunal judiciaire de Brest, RG 26/0042", actor="t", now=now)
    assert _purge(pki, pid, far) == []
    assert _proof(pki, pid).legal_hold is not None
    with pytest.raises(SceauError, match="reason"):
        set_legal_hold(pki.ctx.db, pid, "  ", actor="t", now=now)
    release_legal_hold(pki.ctx.db, pid, actor="t", now=now)
    with pytest.raises(SceauError, match="not on hold"):
        release_legal_hold(pki.ctx.db, pid, actor="t", now=now)
    assert _purge(pki, pid, far) == [pid]
    with pytest.raises(SceauError, match="already purged"):
        set_legal_hold(pki.ctx.db, pid, "too late", actor="t", now=now)
    assert len(_events(pki, "identity_proof.legal_hold", pid)) == 1
    assert len(_events(pki, "identity_proof.hold_released", pid)) == 1


def test_subject_access_export(pki: Pki, tmp_path: Path) -> None:
    _, pid = _pending_with_files(pki)
    export = build_export(pki.ctx.db, pki.ctx.sealer, pid, actor="officer:o", now=datetime.now(UTC))
    root = write_directory(export, tmp_path)
    record = json.loads((root / "record.json").read_text())
    assert record["identity_proof"]["id"] == pid
    assert record["record"]["document"]["number"] == "19QX77341"  # the person's own data
    assert record["record"]["subject"]["birth_place"] == "Quimperlé"
    names = [f["path"] for f in record["files"]]
    assert (root / names[0]).read_bytes() == png_bytes(b"front")
    assert (root / names[1]).read_bytes() == pdf_bytes(b"mandate")
    assert (root / "record.json").stat().st_mode & 0o077 == 0
    with pytest.raises(SceauError, match="exists already"):
        write_directory(export, tmp_path)
    archive = zipfile.ZipFile(BytesIO(to_zip(export)))
    assert sorted(archive.namelist()) == sorted(
        [f"{pid}/record.json", *(f"{pid}/{n}" for n in names)]
    )
    assert len(_events(pki, "identity_proof.exported", pid)) == 1


def test_cli_hold_release_export_purge(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, pid = _pending_with_files(pki)
    home = str(pki.home)
    assert main(["--home", home, "proof", "hold", pid, "--reason", "court order 7"]) == 0
    assert _proof(pki, pid).legal_hold == "court order 7"
    assert main(["--home", home, "proof", "release", pid]) == 0
    assert _proof(pki, pid).legal_hold is None
    assert main(["--home", home, "proof", "release", pid]) == 2
    assert "not on hold" in capsys.readouterr().err
    assert main(["--home", home, "proof", "export", pid, "--out", str(tmp_path)]) == 0
    assert (tmp_path / pid / "record.json").exists()
    assert main(["--home", home, "proof", "export", pid, "--out", str(tmp_path), "--zip"]) == 0
    assert zipfile.is_zipfile(tmp_path / f"{pid}.zip")
    assert main(["--home", home, "proof", "export", "PNOSUCH", "--out", str(tmp_path)]) == 2
    # Nothing is past retention today: the purge erases nothing of ours.
    assert main(["--home", home, "retention", "purge"]) == 0
    assert _proof(pki, pid).status == "pending"
