"""Evidence files of identity proofs: images of the identity document, the company extract,
the mandate. JPEG, PNG or PDF, recognised by their bytes and structure, never by a name or
a declared type; each sealed on its own (core.hsm.envelope) with associated data naming its proof
and its row, so a file moved to another proof or row does not open.
"""

from __future__ import annotations

import logging
import re
import zlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from core.accounts.clients import Client
from core.errors import ErrorKind, HsmError, SceauError
from core.hsm.envelope import Sealed, Sealer
from core.hsm.keystore import HsmUnavailableError
from core.store.db import Database
from core.store.models import EvidenceFile
from pki.context import PkiContext
from pki.proofs import owned_proof
from registration.proofs import append_proof_event, proof_files

log = logging.getLogger(__name__)

JPEG, PNG, PDF = "image/jpeg", "image/png", "application/pdf"
MEDIA_TYPES = (JPEG, PNG, PDF)
KINDS = (
    "document-front",
    "document-back",
    "portrait",
    "company-extract",
    "mandate",
    "representative-document-front",
    "representative-document-back",
    "other",
)
MAX_FILES = 20  # per proof: a record, not a file store
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless...); C4, C8, CC are not.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# Active content a PDF viewer would run or launch: not evidence, refused.
_PDF_ACTIVE = re.compile(rb"/(JavaScript|JS|Launch|EmbeddedFile|RichMedia|XFA)\b")


@dataclass(frozen=True)
class Upload:
    """One evidence file as the platform sent it (``POST .../files``), nothing checked yet:
    the body is no JSON, so add_file checks the kind, the declared type and the bytes."""

    proof_id: str
    kind: str | None  # the ?kind= query parameter
    declared_type: str  # the Content-Type
    data: bytes


def evidence_aad(proof_id: str, file_id: int) -> str:
    return f"evidence:{proof_id}:{file_id}"


def _jpeg_ok(data: bytes) -> bool:
    """Segments well formed from SOI to SOS, a frame header before the scan, EOI at the end."""
    i, seen_frame = 2, False
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return False
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        if marker == 0xD9:  # EOI before any scan
            return False
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if length < 2 or i + 2 + length > len(data):
            return False
        if marker in _SOF:
            seen_frame = length >= 8
        if marker == 0xDA:  # start of scan: entropy-coded data runs to EOI
            return seen_frame and data[i + 2 + length :].rstrip(b"\x00").endswith(b"\xff\xd9")
        i += 2 + length
    return False


def _png_ok(data: bytes) -> bool:
    """Every chunk's length and CRC, IHDR first, IDAT present, nothing after IEND."""
    i, first, seen_data = len(_PNG_SIGNATURE), True, False
    while i + 12 <= len(data):
        length = int.from_bytes(data[i : i + 4], "big")
        kind = data[i + 4 : i + 8]
        end = i + 12 + length
        if length > 0x7FFFFFFF or end > len(data):
            return False
        body = data[i + 8 : i + 8 + length]
        if zlib.crc32(kind + body) != int.from_bytes(data[end - 4 : end], "big"):
            return False
        if first and (kind != b"IHDR" or length != 13 or b"\x00\x00\x00\x00" in body[:8]):
            return False
        first = False
        seen_data = seen_data or kind == b"IDAT"
        if kind == b"IEND":
            return seen_data and end == len(data)
        i = end
    return False


def _pdf_ok(data: bytes) -> bool:
    """Header, and a final ``startxref`` pointing at a cross-reference table or stream
    before ``%%EOF``: a truncated PDF loses its trailer."""
    if not re.match(rb"%PDF-[12]\.[0-9]\s", data[:9]):
        return False
    tail = data[-1024:]
    found = re.search(rb"startxref\s+([0-9]{1,12})\s+%%EOF\s*$", tail)
    if found is None:
        return False
    offset = int(found.group(1))
    if offset >= len(data):
        return False
    return re.match(rb"xref|[0-9]+\s+[0-9]+\s+obj", data[offset : offset + 32]) is not None


def detect_media_type(data: bytes) -> str:
    """The file's type from its content; a damaged or truncated file is refused."""
    if data.startswith(b"\xff\xd8\xff"):
        media, ok = JPEG, _jpeg_ok(data)
    elif data.startswith(_PNG_SIGNATURE):
        media, ok = PNG, _png_ok(data)
    elif data.startswith(b"%PDF-"):
        media, ok = PDF, _pdf_ok(data)
        if ok and _PDF_ACTIVE.search(data):
            raise SceauError(
                ErrorKind.INVALID,
                "the PDF holds active content (JavaScript, launch actions "
                "or embedded files): send a plain scan or extract",
            )
    else:
        raise SceauError(
            ErrorKind.UNSUPPORTED_MEDIA_TYPE,
            "the file's content is not JPEG, PNG or PDF (names and declared types do not count)",
        )
    if not ok:
        raise SceauError(ErrorKind.INVALID, f"the {media} file is truncated or damaged")
    return media


def add_file(ctx: PkiContext, client: Client, upload: Upload, *, now: datetime) -> EvidenceFile:
    """Attach one evidence file to the client's own pending proof."""
    proof_id, data = upload.proof_id, upload.data
    max_bytes = ctx.config.registration.max_upload_bytes
    if upload.kind not in KINDS:
        raise SceauError(ErrorKind.INVALID, f"kind must be one of {', '.join(KINDS)}")
    if upload.declared_type not in MEDIA_TYPES:
        raise SceauError(
            ErrorKind.UNSUPPORTED_MEDIA_TYPE,
            f"send the file as the request body with Content-Type {', '.join(MEDIA_TYPES)}",
        )
    if len(data) > max_bytes:
        raise SceauError(ErrorKind.TOO_LARGE, f"file larger than {max_bytes} bytes")
    if not data:
        raise SceauError(ErrorKind.INVALID, "the file is empty")
    media = detect_media_type(data)
    if media != upload.declared_type:
        raise SceauError(
            ErrorKind.UNSUPPORTED_MEDIA_TYPE,
            f"declared {upload.declared_type} but the content is {media}",
        )
    with ctx.db.write() as session:
        proof = owned_proof(session, client.id, proof_id)
        if proof is None:
            raise SceauError(ErrorKind.NOT_FOUND, f"no identity proof {proof_id!r}")
        if proof.status != "pending":
            raise SceauError(
                ErrorKind.CONFLICT,
                f"identity proof {proof_id} is {proof.status}: files are added while it is "
                "pending an officer's decision",
            )
        count = session.scalar(
            select(func.count()).select_from(EvidenceFile).where(EvidenceFile.proof_id == proof_id)
        )
        if (count or 0) >= MAX_FILES:
            raise SceauError(ErrorKind.CONFLICT, f"a proof holds at most {MAX_FILES} files")
        row = EvidenceFile(
            proof_id=proof_id,
            kind=upload.kind,
            media_type=media,
            size=len(data),
            uploaded_by=client.actor,
            created_at=now,
        )
        session.add(row)
        session.flush()  # the row id is part of the associated data
        sealed = ctx.sealer.seal(evidence_aad(proof_id, row.id), data)
        row.sealed, row.wrapped_key = sealed.ciphertext, sealed.wrapped_key
        append_proof_event(
            session,
            "identity_proof.file_added",
            proof_id,
            actor=client.actor,
            at=now,
            file=row.id,
            kind=upload.kind,
            media_type=media,
            size=len(data),
        )
    return row


def open_evidence(sealer: Sealer, file: EvidenceFile) -> bytes:
    """The file's bytes. A purged file, or one altered or moved in the database, is a clear
    conflict (the cause is logged), never an internal error."""
    if file.sealed is None or file.wrapped_key is None:
        raise SceauError(
            ErrorKind.CONFLICT, f"evidence file {file.id} was purged at the end of retention"
        )
    try:
        return sealer.open(
            evidence_aad(file.proof_id, file.id), Sealed(file.wrapped_key, file.sealed)
        )
    except HsmUnavailableError:
        raise  # the token is away, the file may be fine: 503, not a conflict
    except HsmError as exc:
        log.error("evidence file %s of %s does not open: %s", file.id, file.proof_id, exc.detail)
        raise SceauError(
            ErrorKind.CONFLICT,
            f"evidence file {file.id} of identity proof {file.proof_id} does not open: it "
            "was altered or moved in the database (or the token refused)",
        ) from exc


def list_files(db: Database, proof_id: str) -> list[EvidenceFile]:
    """A proof's files, oldest first (metadata only: nothing is decrypted)."""
    with db.read() as session:
        return proof_files(session, proof_id)


def view_evidence(
    db: Database, sealer: Sealer, file_id: int, *, actor: str, now: datetime
) -> tuple[EvidenceFile, bytes]:
    """An officer views a file: decrypted, and the viewing recorded in the audit log."""
    with db.read() as session:
        file = session.get(EvidenceFile, file_id)
    if file is None:
        raise SceauError(ErrorKind.NOT_FOUND, f"no evidence file {file_id}")
    data = open_evidence(sealer, file)
    with db.write() as session:
        append_proof_event(
            session,
            "identity_proof.file_viewed",
            file.proof_id,
            actor=actor,
            at=now,
            file=file.id,
            kind=file.kind,
        )
    return file, data
