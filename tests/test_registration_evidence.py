"""Evidence uploads: JPEG, PNG and PDF recognised by content, sealed per file, readable by
the officer side (open_evidence, view_evidence); everything else refused with nothing
stored."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from core.store.models import AuditEvent, EvidenceFile
from registration.evidence import MAX_FILES, list_files, open_evidence, view_evidence
from tests.support.builders import NATURAL, NATURAL_FULL
from tests.support.clients import ApiClient
from tests.support.evidence import jpeg_bytes, pdf_bytes, png_bytes, upload
from tests.support.pki import Pki

PROOFS = "/ra/api/v1/identity-proofs"


def _pending(pki: Pki) -> tuple[ApiClient, str]:
    api = pki.client("person-lcp")
    resp = api.post(PROOFS, NATURAL_FULL)
    assert resp.status_code == 201, resp.json
    return api, str(resp.json["id"])


def _file_count(pki: Pki) -> int:
    with pki.ctx.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(EvidenceFile)) or 0)


def test_upload_three_kinds_and_read_back(pki: Pki) -> None:
    api, pid = _pending(pki)
    sent = {
        "document-front": (jpeg_bytes(b"front"), "image/jpeg"),
        "document-back": (png_bytes(b"back"), "image/png"),
        "other": (pdf_bytes(b"extract"), "application/pdf"),
    }
    for kind, (data, media) in sent.items():
        resp = upload(api, pid, data, media, kind)
        assert resp.status_code == 201, resp.json
        assert resp.json["media_type"] == media and resp.json["size"] == len(data)
    listed = api.get(f"{PROOFS}/{pid}").json["files"]
    assert [f["kind"] for f in listed] == list(sent)
    files = list_files(pki.ctx.db, pid)
    for row in files:
        assert open_evidence(pki.ctx.sealer, row) == sent[row.kind][0]
    # The officer side: each viewing is in the audit log.
    now = datetime.now(UTC)
    row, data = view_evidence(pki.ctx.db, pki.ctx.sealer, files[0].id, actor="officer:o1", now=now)
    assert data == sent["document-front"][0]
    with pki.ctx.db.read() as session:
        viewed = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "identity_proof.file_viewed")
        ).all()
    assert any(e.details == {"proof": pid, "file": row.id, "kind": row.kind} for e in viewed)


def _bad_uploads() -> list[Any]:
    html = b"<html><script>alert(1)</script></html>"
    cases = [
        ("pdf-named-jpeg", pdf_bytes(), "image/jpeg", "document-front", 415),
        ("png-as-pdf", png_bytes(), "application/pdf", "document-front", 415),
        ("html-as-png", html, "image/png", "document-front", 415),
        ("exe-as-jpeg", b"MZ\x90\x00" + b"\x00" * 60, "image/jpeg", "document-front", 415),
        ("svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml", "other", 415),
        ("gif", b"GIF89a\x01\x00\x01\x00", "image/gif", "other", 415),
        ("octet-stream", png_bytes(), "application/octet-stream", "other", 415),
        ("multipart", png_bytes(), "multipart/form-data; boundary=x", "other", 415),
        ("truncated-jpeg", jpeg_bytes()[:-40], "image/jpeg", "document-front", 422),
        ("truncated-png", png_bytes()[:-12], "image/png", "document-front", 422),
        ("truncated-pdf", pdf_bytes()[:-30], "application/pdf", "other", 422),
        ("bad-png-crc", png_bytes()[:-5] + b"\x00" + png_bytes()[-4:], "image/png", "other", 422),
        ("jpeg-header-only", b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg", "other", 422),
        (
            "pdf-javascript",
            pdf_bytes(extra=b"/OpenAction << /S /JavaScript /JS (app.alert(1)) >> "),
            "application/pdf",
            "other",
            422,
        ),
        ("empty", b"", "image/png", "other", 422),
        ("no-kind", png_bytes(), "image/png", "", 422),
        ("bad-kind", png_bytes(), "image/png", "<script>", 422),
    ]
    return [pytest.param(*case[1:], id=case[0]) for case in cases]


@pytest.mark.parametrize(("data", "media", "kind", "status"), _bad_uploads())
def test_bad_uploads_refused(pki: Pki, data: bytes, media: str, kind: str, status: int) -> None:
    api, pid = _pending(pki)
    before = _file_count(pki)
    resp = upload(api, pid, data, media, kind)
    assert resp.status_code == status, resp.json
    assert resp.mimetype == "application/problem+json" and resp.json["detail"]
    assert _file_count(pki) == before


def test_size_limits(pki: Pki) -> None:
    api, pid = _pending(pki)
    limit = pki.config.registration.max_upload_bytes
    before = _file_count(pki)
    # A PNG just over the limit: refused from its Content-Length, before it is read.
    big = png_bytes() + b"\x00" * (limit + 1 - len(png_bytes()))
    resp = upload(api, pid, big, "image/png")
    assert resp.status_code == 413 and resp.mimetype == "application/problem+json"
    assert str(limit) in resp.json["detail"]
    # A large, valid PDF well above the JSON routes' limit is accepted here.
    padded = pdf_bytes(marker=b"x" * 200_000)
    assert upload(api, pid, padded, "application/pdf", "other").status_code == 201
    # ...while the other routes keep [service] max_body_bytes.
    body = copy.deepcopy(NATURAL_FULL)
    body["subject"]["birth_place"] = "x" * (pki.config.service.max_body_bytes + 1)
    assert api.post(PROOFS, body).status_code == 413
    assert _file_count(pki) == before + 1


def test_upload_rules(pki: Pki) -> None:
    api, pid = _pending(pki)
    other = pki.client("person-lcp")
    png = png_bytes()
    # Only the owning client, only its pending proofs, with a valid token.
    assert upload(other, pid, png, "image/png").status_code == 404
    assert upload(api, "PNOSUCHPROOF", png, "image/png").status_code == 404
    no_auth = api.http.post(
        f"{PROOFS}/{pid}/files?kind=other", data=png, headers={"Content-Type": "image/png"}
    )
    assert no_auth.status_code == 401
    verified = api.post(PROOFS, NATURAL).json["id"]  # delegated: verified at once
    refused = upload(api, verified, png, "image/png")
    assert refused.status_code == 409 and "pending" in refused.json["detail"]
    for _ in range(MAX_FILES):
        assert upload(api, pid, png, "image/png", "other").status_code == 201
    assert upload(api, pid, png, "image/png", "other").status_code == 409
