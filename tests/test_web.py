"""Every service: /healthz, /metrics; the OpenAPI document matches the routes."""

from __future__ import annotations

import re

from werkzeug.test import Client

from core.store.db import head_version
from sceau.services import SERVICES, build
from tests.conftest import Pki
from tests.helpers import NATURAL, csr_pem


def test_every_service_answers_health_and_metrics(pki: Pki) -> None:
    for name in SERVICES:
        app = build(name, pki.ctx)
        http = Client(app)
        health = http.get("/healthz")
        assert health.status_code == 200
        assert health.json["schema"] == head_version()
        assert health.json["version"]
        metrics = http.get("/metrics")
        assert metrics.status_code == 200
        assert b"sceau_http_requests_total" in metrics.data


def test_metrics_count_issuance_per_profile(pki: Pki) -> None:
    api = pki.client("person-lcp")
    pid = api.post("/ra/api/v1/identity-proofs", NATURAL).json["id"]
    assert (
        api.post(
            "/ca/api/v1/certificates",
            {"profile": "person-lcp", "identity_proof": pid, "csr": csr_pem()},
        ).status_code
        == 201
    )
    text = api.http.get("/metrics").data.decode()
    assert re.search(r'sceau_certificates_issued_total\{profile="person-lcp"\} [1-9]', text)
    assert "sceau_http_request_seconds_bucket" in text


def _flask_path(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def test_openapi_describes_exactly_the_platform_api(pki: Pki) -> None:
    http = Client(pki.app)
    document = http.get("/ca/openapi.json").json
    described = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item
    }
    routes = set()
    for app in (build("ca", pki.ctx), build("registration", pki.ctx)):
        for rule in app.url_map.iter_rules():
            if rule.rule.startswith(("/ca/api/", "/ra/api/")):
                routes |= {
                    (_flask_path(rule.rule), m)
                    for m in rule.methods or ()
                    if m not in {"HEAD", "OPTIONS"}
                }
    assert described == routes
    assert set(
        document["components"]["schemas"]["CertificateRequest"]["properties"]["profile"]["enum"]
    ) == {p.id for p in pki.ctx.profiles.subscriber_profiles()}
