"""Every service: /healthz, /metrics; the OpenAPI document matches the routes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import Client

from core.store.db import head_version
from pki.profiles import DOCUMENT_TYPES
from sceau.services import SERVICES, build
from tests.support.builders import NATURAL, csr_pem
from tests.support.pki import Pki


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


def _described(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, item in document["paths"].items() for method in item}


def _routes(app: Flask, prefix: str) -> set[tuple[str, str]]:
    return {
        (_flask_path(rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(prefix)
        for method in rule.methods or ()
        if method not in {"HEAD", "OPTIONS"}
    }


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


@pytest.mark.parametrize(
    ("service", "document_path", "api"),
    [
        pytest.param("ca", "/ca/openapi.json", "/ca/api/", id="ca"),
        pytest.param("registration", "/ra/openapi.json", "/ra/api/", id="registration"),
    ],
)
def test_openapi_describes_exactly_the_platform_api(
    pki: Pki, service: str, document_path: str, api: str
) -> None:
    """Each service's document describes its own API routes, all of them and no other's;
    every reference in it points inside it."""
    document = Client(pki.app).get(document_path).json  # as the dispatcher serves it
    assert document["openapi"] == "3.1.0"
    assert _described(document) == _routes(build(service, pki.ctx), api)
    for ref in _refs(document):
        target: Any = document
        for step in ref.removeprefix("#/").split("/"):
            target = target[step]  # a KeyError names the dangling reference


def test_openapi_request_schemas_come_from_the_models(pki: Pki) -> None:
    ca = Client(pki.app).get("/ca/openapi.json").json["components"]["schemas"]
    assert ca["CertificateRequest"]["additionalProperties"] is False
    assert set(ca["CertificateRequest"]["properties"]["profile"]["enum"]) == {
        p.id for p in pki.ctx.profiles.subscriber_profiles()
    }
    assert "IdentityProofRequest" not in ca  # the RA's, in its own document
    ra = Client(pki.app).get("/ra/openapi.json").json["components"]["schemas"]
    assert ra["IdentityProofRequest"]["discriminator"]["propertyName"] == "subject_kind"
    assert ra["IdentityDocument"]["properties"]["type"]["enum"] == list(DOCUMENT_TYPES)
    assert "CertificateRequest" not in ra
