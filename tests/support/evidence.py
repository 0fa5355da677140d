"""Evidence files built by hand (real PNG, JPEG and PDF structure; no imaging library) and
their upload to an identity proof."""

from __future__ import annotations

import struct
import zlib
from typing import Any

from tests.support.clients import ApiClient


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bytes(marker: bytes = b"") -> bytes:
    """A 1x1 grey PNG; ``marker`` goes in a tEXt chunk (to find it later in raw tables)."""
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    chunks = _chunk(b"IHDR", ihdr)
    if marker:
        chunks += _chunk(b"tEXt", b"Comment\x00" + marker)
    chunks += _chunk(b"IDAT", zlib.compress(b"\x00\x80")) + _chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def png(width: int = 48, height: int = 32, rgb: tuple[int, int, int] = (40, 90, 160)) -> bytes:
    """A ``width`` x ``height`` PNG of one colour, big enough to see on a screenshot."""
    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(row * height))
        + _chunk(b"IEND", b"")
    )


def jpeg_bytes(marker: bytes = b"") -> bytes:
    """An 8x8 grey baseline JPEG: one block, DC 0 and end-of-block, with one-code Huffman
    tables; ``marker`` goes in a COM segment."""

    def segment(code: int, body: bytes) -> bytes:
        return bytes([0xFF, code]) + struct.pack(">H", len(body) + 2) + body

    parts = [
        b"\xff\xd8",
        segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
        segment(0xFE, marker) if marker else b"",
        segment(0xDB, b"\x00" + b"\x01" * 64),
        segment(0xC0, b"\x08\x00\x08\x00\x08\x01\x01\x11\x00"),
        segment(0xC4, b"\x00" + b"\x01" + b"\x00" * 15 + b"\x00"),  # DC 0: "0" -> category 0
        segment(0xC4, b"\x10" + b"\x01" + b"\x00" * 15 + b"\x00"),  # AC 0: "0" -> EOB
        segment(0xDA, b"\x01\x01\x00\x00\x3f\x00"),
        b"\x3f",  # DC "0", EOB "0", padded with ones
        b"\xff\xd9",
    ]
    return b"".join(parts)


def pdf_bytes(marker: bytes = b"", extra: bytes = b"") -> bytes:
    """A one-page PDF with a correct cross-reference table."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R " + extra + b">>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
        b"<< /Producer (" + marker + b") >>",
    ]
    out = b"%PDF-1.7\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 4 0 R >>\n".encode()
    out += f"startxref\n{xref}\n%%EOF\n".encode()
    return out


def upload(
    api: ApiClient, proof_id: str, data: bytes, content_type: str, kind: str = "document-front"
) -> Any:
    return api.http.post(
        f"/ra/api/v1/identity-proofs/{proof_id}/files",
        query_string={"kind": kind},
        data=data,
        headers={"Authorization": f"Bearer {api.token}", "Content-Type": content_type},
    )
