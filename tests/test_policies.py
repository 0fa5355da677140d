"""Policy documents: they state what the software enforces, and the repository serves them
at the URLs certificates carry.

The documents' generated tables are compared with the profiles and the configuration: a
changed profile or default makes the check fail until `sceau policies render` is run.
"""

from __future__ import annotations

import base64
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from asn1crypto import x509 as ax509
from werkzeug.test import Client as WsgiClient

from core.config import CrlConfig, OcspConfig, RegistrationConfig, SigningConfig, TsaConfig
from crl import policy_facts as pf
from crl.policies import publish
from crl.policy_facts import (
    FIGURE,
    Facts,
    PolicyDataError,
    document_paths,
    prose,
    render,
    render_all,
    stale_documents,
)
from pki.profiles import PROFILES_DIR, ProfileSet
from pki.qcstatements import OID_QC_PDS, OID_QC_STATEMENTS, PdsLocations, QCStatementList
from sceau.cli import main as cli_main
from tests.support.builders import LEGAL, NATURAL, csr_pem
from tests.support.issuance import approved_proof
from tests.support.pki import Pki
from tsa import authority as tsa_authority
from tsa.token import BTSP_POLICY

CP_CPS = ("cps-persons", "cps-seals", "cps-root", "tsa-policy")


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A copy of the documents, to be edited or refreshed without touching the repository."""
    out = tmp_path / "docs"
    out.mkdir()
    for path in document_paths().values():
        shutil.copy(path, out / path.name)
    return out


@pytest.fixture
def profiles_copy(tmp_path: Path) -> Path:
    out = tmp_path / "profiles"
    shutil.copytree(PROFILES_DIR, out)
    return out


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


# -- documents and data agree -----------------------------------------------------------


def test_documents_match_profiles_and_configuration_defaults() -> None:
    assert stale_documents(Facts.defaults()) == [], "run `sceau policies render`"
    assert set(document_paths()) >= {*CP_CPS, "pds-en", "pds-fr"}


@pytest.mark.parametrize(
    ("profile", "old", "new", "expect_stale"),
    [
        ("person-lcp", "validity_days = 1095", "validity_days = 730", {"cps-persons"}),
        (
            "seal-qcp-l-qscd",
            "approvals_required = 2",
            "approvals_required = 3",
            {"cps-seals", "pds-en", "pds-fr"},
        ),
        (
            "person-qcp-n-qscd",
            'identity_methods = ["face-to-face", "remote-video", "eid"]',
            'identity_methods = ["face-to-face"]',
            {"cps-persons", "pds-en", "pds-fr"},
        ),
        (
            "person-lcp",
            'key_algorithms = ["ec-p256", "ec-p384", "rsa-3072", "rsa-4096"]',
            'key_algorithms = ["ec-p256", "rsa-3072"]',
            {"cps-persons"},
        ),
        (
            "seal-lcp",
            'policy_oids = ["0.4.0.2042.1.3"]',
            'policy_oids = ["0.4.0.2042.1.1"]',
            {"cps-seals"},
        ),
        ("seal-qcp-l-qscd", 'key_origins = ["hsm"]', 'key_origins = ["hsm"]  # as before', set()),
        ("root-ca", "validity_days = 7305", "validity_days = 7300", set(CP_CPS) - {"tsa-policy"}),
        ("tsu", "validity_days = 1095", "validity_days = 730", {"tsa-policy"}),
    ],
)
def test_a_changed_profile_makes_the_documents_stale(
    profiles_copy: Path, profile: str, old: str, new: str, expect_stale: set[str]
) -> None:
    _edit(profiles_copy / f"{profile}.toml", old, new)
    facts = Facts.defaults(ProfileSet.load(profiles_copy))
    stale = set(stale_documents(facts))
    assert stale >= expect_stale
    if not expect_stale:
        assert stale == set()  # an edit that changes nothing enforced changes nothing


@pytest.mark.parametrize(
    ("field", "value", "must_mention"),
    [
        ("registration", RegistrationConfig(retention_years=10), "10 years after the last"),
        ("registration", RegistrationConfig(proof_max_age_days=30), "for 30 days after"),
        ("registration", RegistrationConfig(max_failed_logins=3), "after 3 wrong"),
        ("crl", CrlConfig(next_update_hours=48), "thisUpdate + 2 days"),
        ("crl", CrlConfig(publish_interval_seconds=600), "every 10 minutes"),
        ("ocsp", OcspConfig(response_validity_hours=12), "| 12 hours |"),
        ("tsa", TsaConfig(accuracy_ms=500), "| 500 ms |"),
        ("tsa", TsaConfig(policy_oid="1.2.3.4"), "`1.2.3.4`"),
        ("signing", SigningConfig(otp_ttl_seconds=120), "| 2 minutes |"),
        ("signing", SigningConfig(sad_ttl_seconds=90), "| 90 seconds |"),
    ],
)
def test_a_changed_configuration_default_makes_the_documents_stale(
    docs: Path, field: str, value: Any, must_mention: str
) -> None:
    facts = replace(Facts.defaults(), **{field: value})
    assert stale_documents(facts, docs), "the documents ignore this setting"
    # Refreshing writes the new figure where a reader finds it; then nothing is stale.
    render_all(facts, docs)
    assert stale_documents(facts, docs) == []
    assert any(must_mention in p.read_text() for p in docs.glob("*.md")), must_mention


def test_an_edited_table_is_caught(docs: Path) -> None:
    _edit(docs / "cps-persons.md", "| 1 distinct RA officer |", "| no approval |")
    assert stale_documents(Facts.defaults(), docs) == ["cps-persons"]
    assert render_all(Facts.defaults(), docs) == ["cps-persons"]
    assert stale_documents(Facts.defaults(), docs) == []


def test_retention_figure_comes_from_the_registration_configuration() -> None:
    years = RegistrationConfig().retention_years
    for name in ("cps-persons", "cps-seals", "pds-en"):
        text = document_paths()[name].read_text()
        assert f"{years} years after the last certificate relying on them expires" in text


def test_prose_states_no_figure_outside_generated_tables() -> None:
    for name, path in document_paths().items():
        found = FIGURE.findall(prose(path.read_text()))
        assert not found, f"{name}: figures outside generated blocks: {found}"


def test_cp_cps_follow_the_rfc_3647_outline() -> None:
    titles = [
        "Introduction",
        "Publication and repository responsibilities",
        "Identification and authentication",
        "life-cycle operational requirements",
        "Facility, management, and operational controls",
        "Technical security controls",
        "profiles",
        "Compliance audit and other assessments",
        "Other business and legal matters",
    ]
    for name in CP_CPS:
        text = document_paths()[name].read_text()
        headings = re.findall(r"^## (\d)\. (.+)$", text, re.M)
        assert [int(n) for n, _ in headings] == list(range(1, 10)), name
        for (_, heading), title in zip(headings, titles, strict=True):
            assert title.lower() in heading.lower(), (name, heading)
        assert re.search(r"\*\*Version:\*\* \d+\.\d+", text), name
        assert re.search(r"\*\*Date:\*\* \d{4}-\d\d-\d\d", text), name
        assert "| Document OID |" in text, name
    # The subscriber documents carry every RFC 3647 second-level subsection of sections 1-6.
    persons = document_paths()["cps-persons"].read_text()
    for sub in ["1.1", "1.6", "2.4", "3.4", "4.12", "5.8", "6.8", "7.3", "9.17"]:
        assert re.search(rf"(^### {re.escape(sub)} |\*\*{re.escape(sub)} )", persons, re.M), sub


def test_every_block_in_the_documents_renders_and_bad_markers_are_refused() -> None:
    with pytest.raises(PolicyDataError, match="unknown generated block"):
        render("<!-- BEGIN GENERATED: nonsense -->\n<!-- END GENERATED -->", Facts.defaults())
    with pytest.raises(PolicyDataError, match="not closed"):
        render("<!-- BEGIN GENERATED: status -->\nno end", Facts.defaults())
    with pytest.raises(PolicyDataError, match="malformed"):
        render("<!-- BEGIN GENERATED: Status! -->", Facts.defaults())
    with pytest.raises(PolicyDataError, match="no subscriber profile"):
        render("<!-- BEGIN GENERATED: keys nobody -->\n<!-- END GENERATED -->", Facts.defaults())


def test_copied_constants_match_the_services() -> None:
    # crl/ may not import tsa/: the TSA policy it restates is checked here.
    assert pf.BTSP_POLICY == BTSP_POLICY


@pytest.mark.parametrize(
    ("arc", "policy_oid"), [("", ""), ("1.2.250.1.999", ""), ("1.2.250.1.999", "1.2.3.4.5")]
)
def test_tsa_policy_oid_is_the_one_tokens_state(pki: Pki, arc: str, policy_oid: str) -> None:
    config = replace(
        pki.config,
        ca=replace(pki.config.ca, policy_arc=arc),
        tsa=replace(pki.config.tsa, policy_oid=policy_oid),
    )
    assert Facts.of(config, pki.ctx.profiles).tsa_policy() == tsa_authority.tsa_policy(config)


def test_cli_render_check(monkeypatch: pytest.MonkeyPatch, docs: Path, capsys: Any) -> None:
    monkeypatch.setattr(pf, "DOCS_DIR", docs)
    monkeypatch.setattr(pf.document_paths, "__defaults__", (docs,))
    monkeypatch.setattr(pf.stale_documents, "__defaults__", (docs,))
    monkeypatch.setattr(pf.render_all, "__defaults__", (docs,))
    assert cli_main(["policies", "render", "--check"]) == 0
    _edit(docs / "tsa-policy.md", "| 1000 ms |", "| 10 ms |")
    assert cli_main(["policies", "render", "--check"]) == 1
    assert "tsa-policy.md" in capsys.readouterr().out
    assert cli_main(["policies", "render"]) == 0
    assert cli_main(["policies", "render", "--check"]) == 0


# -- published by the repository service ------------------------------------------------


def _document_urls(pem: str) -> list[str]:
    """The CPS URIs and QcPDS URLs a certificate carries."""
    cert = ax509.Certificate.load(base64.b64decode("".join(pem.strip().splitlines()[1:-1])))
    urls: list[str] = []
    for ext in cert["tbs_certificate"]["extensions"]:
        if ext["extn_id"].native == "certificate_policies":
            for info in ext["extn_value"].parsed:
                for q in info["policy_qualifiers"] or []:
                    if q["policy_qualifier_id"].native == "certification_practice_statement":
                        urls.append(q["qualifier"].native)
        elif ext["extn_id"].dotted == OID_QC_STATEMENTS:
            for st in QCStatementList.load(ext["extn_value"].contents):
                if st["statement_id"].dotted == OID_QC_PDS:
                    urls += [loc["url"].native for loc in st["statement_info"].parse(PdsLocations)]
    return urls


ISSUE = [
    ("person-lcp", NATURAL, "delegated", 0, True),
    ("person-qcp-n-qscd", NATURAL, "face-to-face", 1, False),
    ("seal-lcp", LEGAL, "registry", 1, True),
    ("seal-qcp-l-qscd", LEGAL, "registry", 2, False),
]


@pytest.mark.parametrize("case", ISSUE, ids=[case[0] for case in ISSUE])
def test_urls_in_issued_certificates_resolve_to_served_documents(
    pki: Pki, case: tuple[str, dict[str, Any], str, int, bool]
) -> None:
    profile, body, method, approvals, csr = case
    api = pki.client(profile)
    proof = approved_proof(pki, api, body, method, approvals)
    request = {"profile": profile, "identity_proof": proof} | ({"csr": csr_pem()} if csr else {})
    resp = api.post("/ca/api/v1/certificates", request)
    assert resp.status_code == 201, resp.json
    leaf_urls = _document_urls(resp.json["certificate"])
    chain_urls = [u for pem in resp.json["chain"] for u in _document_urls(pem)]
    qualified = pki.ctx.profiles.get(profile).qc.compliance
    assert len(leaf_urls) == (3 if qualified else 1), leaf_urls  # CPS (+ PDS en, fr)
    assert chain_urls, "the issuing CA certificate names the hierarchy's CPS"
    http = WsgiClient(pki.app)
    base = pki.config.service.documents_base
    for url in leaf_urls + chain_urls:
        assert url.startswith(base + "/policies/"), url
        served = http.get(urlsplit(url).path)
        assert served.status_code == 200, url
        assert served.mimetype == "text/html"
        page = served.get_data(as_text=True)
        assert "<h1>" in page and "Document OID" in page
        # The Markdown original is there too.
        original = http.get(urlsplit(url).path + ".md")
        assert original.status_code == 200
        assert original.headers["Content-Type"] == "text/markdown; charset=utf-8"
    if qualified:
        assert any(u.endswith("/policies/pds-en") for u in leaf_urls)


def test_index_tells_each_profile_identity_proofing_and_retention(pki: Pki) -> None:
    http = WsgiClient(pki.app)
    resp = http.get("/policies/")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    page = resp.get_data(as_text=True)
    for p in pki.ctx.profiles.subscriber_profiles():
        row = re.search(rf"<tr>\s*<td><code>{p.id}</code></td>(.*?)</tr>", page, re.S)
        assert row, p.id
        for method in p.identity_methods:
            assert f"<code>{method.value}</code>" in row.group(1)
        assert f"{p.approvals_required} distinct RA officer" in row.group(1)
    years = pki.config.registration.retention_years
    assert f"{years} years after the last certificate relying on them expires" in page
    for name in document_paths():
        assert f'href="{name}"' in page and f'href="{name}.md"' in page
    assert http.get("/policies").status_code in {301, 308}


def test_served_documents_state_this_deployment_figures(pki: Pki) -> None:
    config = replace(
        pki.config,
        ca=replace(pki.config.ca, policy_arc="1.2.250.1.999"),
        registration=replace(pki.config.registration, retention_years=11),
    )
    published = publish(config, pki.ctx.profiles)
    persons = published.documents["cps-persons"]
    assert b"`1.2.250.1.999.1.2`" in persons.markdown
    assert b"11 years after the last certificate" in persons.markdown
    assert b"<policy_arc>" not in persons.markdown
    assert pki.config.service.documents_base.encode() + b"/policies/cps-persons" in persons.markdown
    assert persons.oid == "1.2.250.1.999.1"
    assert published.documents["tsa-policy"].oid == "1.2.250.1.999.3.1"


def test_html_is_escaped_headers_and_caching(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, docs: Path
) -> None:
    hostile = "# Evil\n\n<script>alert(1)</script> [x](javascript:alert(1)) <img src=x onerror=y>\n"
    (docs / "evil.md").write_text(hostile)
    monkeypatch.setattr(pf.document_paths, "__defaults__", (docs,))
    document = publish(pki.config, pki.ctx.profiles).documents["evil"]
    page = document.html.decode()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<img" not in page and 'href="javascript' not in page

    http = WsgiClient(pki.app)
    resp = http.get("/policies/cps-seals.html")
    assert resp.status_code == 200
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src" not in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert "max-age=" in resp.headers["Cache-Control"]
    etag = resp.headers["ETag"]
    again = http.get("/policies/cps-seals.html", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert http.get("/policies/cps-seals").get_data() == resp.get_data()


@pytest.mark.parametrize(
    "path",
    [
        "/policies/nothing",
        "/policies/nothing.md",
        "/policies/cps-persons.pdf",
        "/policies/cps-persons.md.md",
        "/policies/../crl/persons.crl",
        "/policies/..%2f..%2fetc%2fpasswd",
        "/policies/%2e%2e/%2e%2e/etc/passwd.md",
        "/policies/facts",  # a module, not a document
        "/policies/facts.py",
        "/policies/profiles/person-lcp.toml",
        "/policies/README",
        "/policies/CPS-PERSONS",
        "/policies/cps-persons/",
        "/policies/" + "a" * 5000,
        "/policies/%00",
        "/policies/caf%C3%A9",
    ],
)
def test_unknown_names_get_a_404_problem(pki: Pki, path: str) -> None:
    resp = WsgiClient(pki.app).get(path)
    assert resp.status_code == 404, (path, resp.status_code)
    assert resp.mimetype == "application/problem+json"
    body = resp.json
    assert body is not None and body["status"] == 404
    assert "root:" not in resp.get_data(as_text=True)
