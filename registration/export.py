"""Subject-access export (GDPR art. 15): everything the RA holds on one identity-proof
record, as JSON plus the evidence files, for an officer to hand to the person.

Each export is recorded in the audit log. The output is written readable by its owner
only: it holds the decrypted document images.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from core.errors import ErrorKind, SceauError
from core.hsm.envelope import Sealer
from core.store.db import Database
from core.store.models import Certificate, EvidenceFile, IdentityProof
from registration.evidence import open_evidence
from registration.proofs import append_proof_event, open_proof, proof_files

FORMAT = "sceau-subject-access/1"
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf"}


@dataclass(frozen=True)
class SubjectExport:
    proof_id: str
    document: dict[str, Any]  # record.json
    files: list[tuple[str, bytes]]  # (path inside the export, content)

    def record_json(self) -> bytes:
        return json.dumps(self.document, indent=2, ensure_ascii=False, sort_keys=True).encode()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def file_name(file: EvidenceFile) -> str:
    return f"files/{file.id}-{file.kind}.{_EXTENSIONS.get(file.media_type, 'bin')}"


def build_export(
    db: Database, sealer: Sealer, proof_id: str, *, actor: str, now: datetime
) -> SubjectExport:
    """Decrypt the record and its files, and record the export in the audit log."""
    with db.read() as session:
        proof = session.get(IdentityProof, proof_id)
        if proof is None:
            raise SceauError(ErrorKind.NOT_FOUND, f"no identity proof {proof_id!r}")
        files = proof_files(session, proof_id)
        certificates = list(
            session.scalars(
                select(Certificate)
                .where(Certificate.proof_id == proof_id, Certificate.status != "failed")
                .order_by(Certificate.id)
            )
        )
    if proof.status == "purged":
        raise SceauError(
            ErrorKind.CONFLICT,
            f"identity proof {proof_id} was purged on {_iso(proof.purged_at)}: the RA holds "
            "no personal data of it any more",
        )
    record = open_proof(sealer, proof)
    contents = [(file_name(f), open_evidence(sealer, f)) for f in files]
    document = {
        "format": FORMAT,
        "exported_at": now.isoformat(),
        "identity_proof": {
            "id": proof.id,
            "status": proof.status,
            "subject_kind": proof.subject_kind,
            "method": proof.method,
            "submitted_by": proof.submitted_by,
            "created_at": proof.created_at.isoformat(),
            "verified_at": _iso(proof.verified_at),
            "decided_at": _iso(proof.decided_at),
            "rejection_reason": proof.rejection_reason,
            "approvals": proof.approvals,
            "retain_until": proof.retain_until.isoformat(),
        },
        "record": record,
        "files": [
            {
                "path": name,
                "kind": f.kind,
                "media_type": f.media_type,
                "size": f.size,
                "uploaded_at": f.created_at.isoformat(),
            }
            for f, (name, _) in zip(files, contents, strict=True)
        ],
        "certificates": [
            {
                "serial": c.serial,
                "profile": c.profile,
                "status": c.status,
                "subject": c.subject,
                "not_before": c.not_before.isoformat(),
                "not_after": c.not_after.isoformat(),
                "revoked_at": _iso(c.revoked_at),
            }
            for c in certificates
        ],
    }
    with db.write() as session:
        append_proof_event(
            session, "identity_proof.exported", proof_id, actor=actor, at=now, files=len(contents)
        )
    return SubjectExport(proof_id, document, contents)


def write_directory(export: SubjectExport, out: Path) -> Path:
    """``<out>/<proof id>/record.json`` and ``files/``; refuses to overwrite."""
    root = out / export.proof_id
    try:
        out.mkdir(parents=True, exist_ok=True)
        root.mkdir(mode=0o700)
        (root / "files").mkdir(mode=0o700)
    except FileExistsError:
        raise SceauError(
            ErrorKind.CONFLICT, f"{root} exists already: choose another --out"
        ) from None
    for name, content in [("record.json", export.record_json()), *export.files]:
        fd = os.open(root / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
    return root


def to_zip(export: SubjectExport) -> bytes:
    """The same content as one zip archive (for a download from the officer UI)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{export.proof_id}/record.json", export.record_json())
        for name, content in export.files:
            archive.writestr(f"{export.proof_id}/{name}", content)
    return buffer.getvalue()
