"""Identity-proof records through the platform API: natural and legal persons with all their
attributes, the representative and the mandate, the eID level; bad input refused and
nothing stored."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from core.hsm.envelope import Sealer
from core.store.models import IdentityProof, ProofTerm
from registration.webhooks import create_webhook_secret
from tests.support.builders import LEGAL_FULL, NATURAL_FULL
from tests.support.pki import Pki

PROOFS = "/ra/api/v1/identity-proofs"


def _count(pki: Pki) -> int:
    with pki.ctx.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(IdentityProof)) or 0)


def _terms(pki: Pki, proof_id: str) -> set[str]:
    with pki.ctx.db.read() as session:
        return set(session.scalars(select(ProofTerm.term).where(ProofTerm.proof_id == proof_id)))


def test_natural_person_full_record(pki: Pki) -> None:
    api = pki.client("person-lcp")
    resp = api.post(PROOFS, NATURAL_FULL)
    assert resp.status_code == 201, resp.json
    body = resp.json
    assert body["status"] == "pending" and body["method"] == "face-to-face"
    assert body["subject"]["birth_date"] == "1987-04-23"
    assert body["subject"]["birth_place"] == "Quimperlé"
    assert body["subject"]["mobile"] == "+33612345678"  # spaces dropped, E.164
    assert body["subject"]["nationality"] == "FR"
    assert body["document"]["issuing_authority"] == "Préfecture du Finistère"
    assert "number" not in body["document"]  # stays with the RA
    assert body["files"] == [] and body["decided_at"] is None
    again = api.get(f"{PROOFS}/{body['id']}")
    assert again.status_code == 200 and again.json == body
    sealer: Sealer = pki.ctx.sealer
    terms = _terms(pki, body["id"])
    # Officers find the record by full name, surname or e-mail, in any case or accents.
    assert sealer.term("name", "apolline  ZEPHYRIN-QUESNEL") in terms
    assert sealer.term("surname", "Zéphyrin-Quesnel") in terms
    assert sealer.term("email", "APOLLINE.ZQ@example.org") in terms


def test_legal_person_with_representative_and_mandate(pki: Pki) -> None:
    api = pki.client("seal-lcp")
    resp = api.post(PROOFS, LEGAL_FULL)
    assert resp.status_code == 201, resp.json
    body = resp.json
    assert body["subject"]["registered_address"] == "12 rue de Siam, 29200 Brest"
    rep = body["representative"]
    assert rep["given_name"] == "Maëlys" and rep["role"] == "gérante"
    assert rep["mandate"] == {"type": "registry-listing", "reference": "RCS Brest 732 829 320"}
    assert "number" not in rep["document"] and rep["document"]["type"] == "id-card"
    terms = _terms(pki, body["id"])
    sealer = pki.ctx.sealer
    assert sealer.term("organization_identifier", "NTRFR-732829320") in terms
    assert sealer.term("organization_name", "boulangerie kervella sarl") in terms
    assert sealer.term("name", "Maelys Kervella") in terms  # the representative too


def test_eid_method_records_its_level(pki: Pki) -> None:
    api = pki.client("person-lcp")
    body = copy.deepcopy(NATURAL_FULL)
    body["method"] = "eid"
    body["eid"] = {"scheme": "FranceConnect+", "level": "high"}
    resp = api.post(PROOFS, body)
    assert resp.status_code == 201, resp.json
    assert resp.json["eid"] == {"scheme": "FranceConnect+", "level": "high"}


def test_markup_is_kept_as_data(pki: Pki) -> None:
    api = pki.client("person-lcp")
    body = copy.deepcopy(NATURAL_FULL)
    script = '<script>alert("x")</script>'
    body["subject"]["given_name"] = script
    body["subject"]["birth_place"] = "<img src=x onerror=alert(1)>"
    resp = api.post(PROOFS, body)
    assert resp.status_code == 201, resp.json
    assert resp.mimetype == "application/json"
    assert resp.json["subject"]["given_name"] == script  # the UI escapes when it renders


def _mutations() -> list[Any]:
    def natural(fn: Any) -> dict[str, Any]:
        body = copy.deepcopy(NATURAL_FULL)
        fn(body)
        return body

    def legal(fn: Any) -> dict[str, Any]:
        body = copy.deepcopy(LEGAL_FULL)
        fn(body)
        return body

    rep = "representative"
    cases = [
        ("unknown-top", natural(lambda b: b.update(nickname="x"))),
        ("unknown-subject", natural(lambda b: b["subject"].update(ssn="1870423"))),
        ("unknown-document", natural(lambda b: b["document"].update(mrz="P<FRA"))),
        ("birth-future", natural(lambda b: b["subject"].update(birth_date="2999-01-01"))),
        ("birth-format", natural(lambda b: b["subject"].update(birth_date="1987-4-23"))),
        ("birth-compact", natural(lambda b: b["subject"].update(birth_date="19870423"))),
        ("birth-type", natural(lambda b: b["subject"].update(birth_date=19870423))),
        ("mobile", natural(lambda b: b["subject"].update(mobile="06 12 34 56 78"))),
        ("nationality", natural(lambda b: b["subject"].update(nationality="fr"))),
        ("control-char", natural(lambda b: b["subject"].update(surname="Dupont\x00"))),
        ("c1-control", natural(lambda b: b["subject"].update(surname="Du\x85pont"))),
        ("bidi-override", natural(lambda b: b["subject"].update(surname="Dupont\u202egpj.exe"))),
        ("rep-on-natural", natural(lambda b: b.update(representative=LEGAL_FULL[rep]))),
        ("eid-without-level", natural(lambda b: b.update(method="eid"))),
        (
            "eid-low",
            natural(lambda b: b.update(method="eid", eid={"scheme": "x", "level": "low"})),
        ),
        ("eid-on-f2f", natural(lambda b: b.update(eid={"scheme": "x", "level": "high"}))),
        ("webhook-http", natural(lambda b: b.update(webhook_url="http://platform.example/h"))),
        ("webhook-js", natural(lambda b: b.update(webhook_url="javascript:alert(1)"))),
        ("webhook-creds", natural(lambda b: b.update(webhook_url="https://u:p@host.example/"))),
        ("webhook-type", natural(lambda b: b.update(webhook_url=["https://a.example"]))),
        ("webhook-port", natural(lambda b: b.update(webhook_url="https://a.example:99999/"))),
        ("birth-unix-time", natural(lambda b: b["subject"].update(birth_date="545011200"))),
        ("mobile-letters", natural(lambda b: b["subject"].update(mobile="+33 6 CALL ME"))),
        ("email-control", natural(lambda b: b["subject"].update(email="a\x07b@example.org"))),
        ("name-blank", natural(lambda b: b["subject"].update(given_name="   "))),
        ("document-null", natural(lambda b: b.update(document=None))),
        ("mandate-missing", legal(lambda b: b[rep].pop("mandate"))),
        ("mandate-type", legal(lambda b: b[rep]["mandate"].update(type="handshake"))),
        ("rep-unknown", legal(lambda b: b[rep].update(salary="1"))),
        (
            "rep-document-expired",
            legal(lambda b: b[rep]["document"].update(expires_on="2020-01-01")),
        ),
        ("address-long", legal(lambda b: b["subject"].update(registered_address="x" * 300))),
        ("legal-birth", legal(lambda b: b["subject"].update(birth_date="1990-01-01"))),
        ("rep-not-object", legal(lambda b: b.update(representative="Maëlys"))),
        ("legal-no-identifier", legal(lambda b: b["subject"].pop("organization_identifier"))),
        ("rep-birth-future", legal(lambda b: b[rep].update(birth_date="2999-01-01"))),
    ]
    return [pytest.param(body, id=name) for name, body in cases]


@pytest.mark.parametrize("body", _mutations())
def test_bad_records_refused_and_nothing_stored(pki: Pki, body: dict[str, Any]) -> None:
    api = pki.client("person-lcp", "seal-lcp")
    before = _count(pki)
    resp = api.post(PROOFS, body)
    assert resp.status_code == 422, resp.json
    assert resp.mimetype == "application/problem+json"
    assert resp.json["type"] == "urn:sceau:problem:invalid"
    assert resp.json["detail"]
    assert _count(pki) == before


@pytest.mark.parametrize(
    ("base", "path", "value", "detail"),
    [
        pytest.param(
            NATURAL_FULL,
            ("subject", "ssn"),
            "1",
            "unknown field natural.subject.ssn",
            id="unknown-subject-field",
        ),
        pytest.param(
            NATURAL_FULL,
            ("document", "type"),
            "library-card",
            "natural.document.type: must be one of id-card, passport",
            id="document-type",
        ),
        pytest.param(
            LEGAL_FULL,
            ("subject", "organization_identifier"),
            "NTRFR-732829321",
            "legal.subject.organization_identifier: NTRFR- needs a valid SIREN",
            id="siren-check-digit",
        ),
        pytest.param(
            LEGAL_FULL,
            ("representative", "document", "expires_on"),
            "2020-01-01",
            "the identity document (representative.document) has expired",
            id="rep-document-expired",
        ),
        pytest.param(
            NATURAL_FULL,
            ("subject_kind",),
            "robot",
            "does not match any of the expected tags: 'natural', 'legal'",
            id="subject-kind",
        ),
    ],
)
def test_refusals_name_the_field(
    pki: Pki, base: dict[str, Any], path: tuple[str, ...], value: str, detail: str
) -> None:
    body = copy.deepcopy(base)
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    resp = pki.client("person-lcp", "seal-lcp").post(PROOFS, body)
    assert resp.status_code == 422, resp.json
    assert detail in resp.json["detail"]


def test_wrong_content_types(pki: Pki) -> None:
    api = pki.client("person-lcp")
    before = _count(pki)
    form = api.http.post(
        PROOFS,
        data={"subject_kind": "natural"},
        headers={"Authorization": f"Bearer {api.token}"},
    )
    assert form.status_code == 415 and form.mimetype == "application/problem+json"
    text = api.post(PROOFS, NATURAL_FULL, content_type="text/plain")
    assert text.status_code == 415
    assert _count(pki) == before


def test_webhook_url_needs_a_client_secret(pki: Pki) -> None:
    api = pki.client("person-lcp")
    body = copy.deepcopy(NATURAL_FULL)
    body["webhook_url"] = "https://platform.example/sceau-hook"
    refused = api.post(PROOFS, body)
    assert refused.status_code == 409
    assert "webhook-secret" in refused.json["detail"]
    secret = create_webhook_secret(
        pki.ctx.db, pki.ctx.sealer, api.name, actor="test", now=datetime.now(UTC)
    )
    assert secret.startswith("whsec_")
    accepted = api.post(PROOFS, body)
    assert accepted.status_code == 201, accepted.json
    assert accepted.json["webhook_url"] == body["webhook_url"]
