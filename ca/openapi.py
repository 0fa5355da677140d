"""OpenAPI 3.1 description of the CA's certificate API (``GET /ca/openapi.json``).

The request schemas are generated from the request models (ca/requests.py); the answers,
which have no model, are described here. A test checks that every route of the CA's API
is described and nothing else is. The identity proofs are the registration authority's,
described by its own document (``/ra/openapi.json``).
"""

from __future__ import annotations

from typing import Any

from ca.requests import CertificateRequest, RevocationRequest
from core.http.openapi import (
    DATE_TIME,
    JSON,
    api_document,
    json_body,
    json_response,
    model_schemas,
    problems,
    ref,
)

_PEM = {"type": "string", "description": "PEM"}


CERTIFICATE = {
    "type": "object",
    "required": [
        "serial",
        "issuer",
        "profile",
        "status",
        "not_before",
        "not_after",
        "certificate",
        "chain",
    ],
    "properties": {
        "serial": {"type": "string", "pattern": "^[0-9a-f]{1,40}$", "description": "hexadecimal"},
        "issuer": {"type": "string"},
        "profile": {"type": "string"},
        "status": {"enum": ["issued", "revoked"]},
        "subject": {"type": "string"},
        "identity_proof": {"type": "string"},
        "not_before": DATE_TIME,
        "not_after": DATE_TIME,
        "certificate": {"oneOf": [_PEM, {"type": "null"}]},
        "credential_id": {
            "type": "string",
            "description": "only when the key was generated in our HSM: the CSC credential "
            "that signs with it",
        },
        "chain": {"type": "array", "items": _PEM, "description": "issuing CA first, root last"},
        "revocation": {
            "type": "object",
            "properties": {
                "revoked_at": DATE_TIME,
                "reason": {"type": "string"},
                "invalidity_date": {"oneOf": [DATE_TIME, {"type": "null"}]},
            },
        },
    },
}


def _schemas(profiles: list[str]) -> dict[str, Any]:
    schemas = model_schemas(CertificateRequest, RevocationRequest)
    # The model takes any profile name (an unknown one is the engine's unknown-profile
    # problem); the document lists the ones this service has.
    schemas["CertificateRequest"]["properties"]["profile"]["enum"] = profiles
    return {**schemas, "Certificate": CERTIFICATE}


def openapi_document(base_url: str, profiles: list[str]) -> dict[str, Any]:
    serial = {
        "name": "serial",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9a-fA-F:]{1,60}$"},
    }
    return api_document(
        title="Sceau certificate API",
        description="Certificates for signing platforms, issued on verified identity "
        "proofs (the registration authority's API, /ra/openapi.json).",
        base_url=base_url,
        paths={
            "/ca/api/v1/certificates": {
                "post": {
                    "summary": "Issue a certificate for a verified identity proof",
                    "requestBody": json_body(CertificateRequest),
                    "responses": {
                        "201": json_response("issued", "Certificate"),
                        **problems(400, 401, 403, 404, 409, 413, 415, 422, 501, 503),
                    },
                }
            },
            "/ca/api/v1/certificates/{serial}": {
                "get": {
                    "summary": "Fetch a certificate: JSON, or DER if Accept: application/pkix-cert",
                    "parameters": [serial],
                    "responses": {
                        "200": {
                            "description": "the certificate",
                            "content": {
                                JSON: {"schema": ref("Certificate")},
                                "application/pkix-cert": {
                                    "schema": {"type": "string", "format": "binary"}
                                },
                            },
                        },
                        **problems(401, 404),
                    },
                }
            },
            "/ca/api/v1/certificates/{serial}/revoke": {
                "post": {
                    "summary": "Revoke a certificate (final: never reinstated)",
                    "parameters": [serial],
                    "requestBody": json_body(RevocationRequest),
                    "responses": {
                        "200": json_response("revoked", "Certificate"),
                        **problems(400, 401, 404, 409, 413, 415, 422, 503),
                    },
                }
            },
        },
        schemas=_schemas(profiles),
    )
