"""Personal data and evidence at rest: the raw database holds none of it in clear, and a
sealed record altered or moved to another row does not open (HsmError), reported as a
clear problem, never an internal error."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from sqlalchemy import MetaData, select, text, update

from core.errors import ErrorKind, HsmError, SceauError
from core.hsm.envelope import Sealed
from core.store.models import EvidenceFile, IdentityProof
from pki.proofs import open_record
from registration.evidence import evidence_aad, list_files, open_evidence
from registration.proofs import open_proof
from tests.support.builders import LEGAL_FULL, NATURAL_FULL
from tests.support.clients import ApiClient
from tests.support.evidence import jpeg_bytes, pdf_bytes, png_bytes, upload
from tests.support.pki import Pki

PROOFS = "/ra/api/v1/identity-proofs"
IMAGE_MARKER = b"DOCUMENT-IMAGE-MARKER-5511"


def _create(api: ApiClient, body: dict[str, Any]) -> str:
    resp = api.post(PROOFS, body)
    assert resp.status_code == 201, resp.json
    return str(resp.json["id"])


def _forms(value: str) -> list[bytes]:
    """How a value could sit in a column: UTF-8, JSON-escaped, case-folded, base64."""
    forms = {value, value.lower(), value.upper(), json.dumps(value)[1:-1]}
    out = [f.encode() for f in forms]
    out.append(base64.b64encode(value.encode()))
    return out


def _raw_rows(pki: Pki) -> list[tuple[str, str, bytes]]:
    """Every column of every row of every table, as bytes, read with plain SQL."""
    meta = MetaData()
    meta.reflect(pki.ctx.db.engine)
    cells = []
    with pki.ctx.db.engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)).mappings():
                for column, value in row.items():
                    if value is None:
                        continue
                    raw = value if isinstance(value, bytes | memoryview) else str(value).encode()
                    cells.append((table.name, column, bytes(raw)))
    return cells


def test_raw_tables_hold_no_personal_data(pki: Pki) -> None:
    person, company = pki.client("person-lcp"), pki.client("seal-lcp")
    natural = _create(person, NATURAL_FULL)
    legal = _create(company, LEGAL_FULL)
    images = [
        jpeg_bytes(IMAGE_MARKER),
        png_bytes(IMAGE_MARKER),
        pdf_bytes(IMAGE_MARKER),
    ]
    for data, media in zip(images, ["image/jpeg", "image/png", "application/pdf"], strict=True):
        assert upload(person, natural, data, media).status_code == 201
        assert upload(company, legal, data, media, "company-extract").status_code == 201
    subject, rep = NATURAL_FULL["subject"], LEGAL_FULL["representative"]
    secrets = [
        subject["given_name"],
        subject["surname"],
        f"{subject['given_name']} {subject['surname']}",
        subject["email"],
        subject["birth_date"],
        subject["birth_date"].replace("-", ""),
        "Quimperl",  # birth place (before the accent, however it is escaped)
        "+33612345678",
        NATURAL_FULL["document"]["number"],
        LEGAL_FULL["document"]["number"],
        "Kervella",
        rep["email"],
        rep["birth_date"],
        rep["document"]["number"],
        "12 rue de Siam",
    ]
    cells = _raw_rows(pki)
    assert {t for t, _, _ in cells} >= {"identity_proofs", "evidence_files", "proof_terms"}
    for table, column, raw in cells:
        for value in secrets:
            for form in _forms(value):
                assert form not in raw, f"{value!r} in clear in {table}.{column}"
        assert IMAGE_MARKER not in raw, f"document image bytes in {table}.{column}"
        for image in images:
            assert image[:64] not in raw, f"document image in {table}.{column}"
    # ...and yet the RA reads everything back.
    with pki.ctx.db.read() as session:
        proof = session.get(IdentityProof, natural)
        assert proof is not None
    assert open_record(pki.ctx.sealer, proof)["document"]["number"] == "19QX77341"
    assert sorted(
        open_evidence(pki.ctx.sealer, f) for f in list_files(pki.ctx.db, natural)
    ) == sorted(images)


def _set(pki: Pki, proof_id: str, **values: Any) -> None:
    with pki.ctx.db.write() as session:
        session.execute(update(IdentityProof).where(IdentityProof.id == proof_id).values(**values))


def _row(pki: Pki, proof_id: str) -> IdentityProof:
    with pki.ctx.db.read() as session:
        proof = session.get(IdentityProof, proof_id)
    assert proof is not None
    return proof


@pytest.mark.parametrize("how", ["ciphertext-byte", "wrapped-key-byte", "moved-from-other-row"])
def test_tampered_record_does_not_open(pki: Pki, how: str) -> None:
    api = pki.client("person-lcp")
    victim, donor = _create(api, NATURAL_FULL), _create(api, NATURAL_FULL)
    original = _row(pki, victim)
    assert original.sealed is not None and original.wrapped_key is not None
    if how == "ciphertext-byte":
        changed = bytearray(original.sealed)
        changed[len(changed) // 2] ^= 0x01
        _set(pki, victim, sealed=bytes(changed))
    elif how == "wrapped-key-byte":
        changed = bytearray(original.wrapped_key)
        changed[-1] ^= 0x80
        _set(pki, victim, wrapped_key=bytes(changed))
    else:
        other = _row(pki, donor)
        _set(pki, victim, sealed=other.sealed, wrapped_key=other.wrapped_key)
    tampered = _row(pki, victim)
    with pytest.raises(HsmError):
        open_record(pki.ctx.sealer, tampered)
    with pytest.raises(SceauError) as caught:
        open_proof(pki.ctx.sealer, tampered)
    assert caught.value.kind is ErrorKind.CONFLICT and victim in caught.value.detail
    resp = api.get(f"{PROOFS}/{victim}")
    assert resp.status_code == 409 and resp.mimetype == "application/problem+json"
    assert "does not open" in resp.json["detail"]
    # The donor, untouched, still opens; the victim opens again once restored.
    assert api.get(f"{PROOFS}/{donor}").status_code == 200
    _set(pki, victim, sealed=original.sealed, wrapped_key=original.wrapped_key)
    assert api.get(f"{PROOFS}/{victim}").status_code == 200


def test_evidence_moved_between_rows_does_not_open(pki: Pki) -> None:
    api = pki.client("person-lcp")
    pid = _create(api, NATURAL_FULL)
    assert upload(api, pid, png_bytes(b"one"), "image/png").status_code == 201
    assert upload(api, pid, png_bytes(b"two"), "image/png").status_code == 201
    first, second = list_files(pki.ctx.db, pid)
    with pki.ctx.db.write() as session:
        session.execute(
            update(EvidenceFile)
            .where(EvidenceFile.id == second.id)
            .values(sealed=first.sealed, wrapped_key=first.wrapped_key)
        )
    moved = list_files(pki.ctx.db, pid)[1]
    assert moved.sealed is not None and moved.wrapped_key is not None
    with pytest.raises(HsmError):
        pki.ctx.sealer.open(evidence_aad(pid, moved.id), Sealed(moved.wrapped_key, moved.sealed))
    with pytest.raises(SceauError) as caught:
        open_evidence(pki.ctx.sealer, moved)
    assert caught.value.kind is ErrorKind.CONFLICT and "does not open" in caught.value.detail
    assert open_evidence(pki.ctx.sealer, first) == png_bytes(b"one")


def test_raw_sql_sees_only_ciphertext(pki: Pki) -> None:
    """The same check through a plain SQL string, as a database reader would."""
    api = pki.client("person-lcp")
    body = copy.deepcopy(NATURAL_FULL)
    pid = _create(api, body)
    with pki.ctx.db.engine.connect() as conn:
        row = (
            conn.execute(text("SELECT * FROM identity_proofs WHERE id = :id"), {"id": pid})
            .mappings()
            .one()
        )
    dumped = repr(dict(row)).encode()
    assert b"19QX77341" not in dumped and b"Zephyrin" not in dumped
