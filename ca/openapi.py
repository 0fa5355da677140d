"""OpenAPI 3.1 description of the CA's certificate API (``GET /ca/openapi.json``).

The request schemas are generated from the request models (ca/requests.py); the answers,
which have no model, are described here. A test checks that every route of the CA's API
is described and nothing else is. The identity proofs are the registration authority's,
described by its own document (``/ra/openapi.json``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ca.requests import CertificateRequest, RevocationRequest
from core import __version__

REF = "#/components/schemas/{model}"
_JSON = "application/json"
_PROBLEM = {"$ref": "#/components/responses/Problem"}
_DATE_TIME = {"type": "string", "format": "date-time"}
_PEM = {"type": "string", "description": "PEM"}


def model_schemas(*models: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schemas of ``models`` and of the models they use, by name, as
    ``components.schemas`` holds them (each ``$ref`` points there)."""
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=REF)
        schemas |= schema.pop("$defs", {})
        schemas[model.__name__] = schema
    return schemas


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _problems(*codes: int) -> dict[str, Any]:
    return {str(code): _PROBLEM for code in codes}


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {_JSON: {"schema": _ref(model.__name__)}}}


def _json_response(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": _ref(schema)}}}


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
        "not_before": _DATE_TIME,
        "not_after": _DATE_TIME,
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
                "revoked_at": _DATE_TIME,
                "reason": {"type": "string"},
                "invalidity_date": {"oneOf": [_DATE_TIME, {"type": "null"}]},
            },
        },
    },
}

PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri", "description": "urn:sceau:problem:<kind>"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "request_id": {"type": "string"},
    },
}


def _schemas(profiles: list[str]) -> dict[str, Any]:
    schemas = model_schemas(CertificateRequest, RevocationRequest)
    # The model takes any profile name (an unknown one is the engine's unknown-profile
    # problem); the document lists the ones this service has.
    schemas["CertificateRequest"]["properties"]["profile"]["enum"] = profiles
    return {**schemas, "Certificate": CERTIFICATE, "Problem": PROBLEM}


def openapi_document(base_url: str, profiles: list[str]) -> dict[str, Any]:
    serial = {
        "name": "serial",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9a-fA-F:]{1,60}$"},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Sceau certificate API",
            "version": __version__,
            "description": "Certificates for signing platforms, issued on verified identity "
            "proofs (the registration authority's API, /ra/openapi.json).",
        },
        "servers": [{"url": base_url}],
        "security": [{"bearer": []}],
        "paths": {
            "/ca/api/v1/certificates": {
                "post": {
                    "summary": "Issue a certificate for a verified identity proof",
                    "requestBody": _json_body(CertificateRequest),
                    "responses": {
                        "201": _json_response("issued", "Certificate"),
                        **_problems(400, 401, 403, 404, 409, 413, 415, 422, 501, 503),
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
                                _JSON: {"schema": _ref("Certificate")},
                                "application/pkix-cert": {
                                    "schema": {"type": "string", "format": "binary"}
                                },
                            },
                        },
                        **_problems(401, 404),
                    },
                }
            },
            "/ca/api/v1/certificates/{serial}/revoke": {
                "post": {
                    "summary": "Revoke a certificate (final: never reinstated)",
                    "parameters": [serial],
                    "requestBody": _json_body(RevocationRequest),
                    "responses": {
                        "200": _json_response("revoked", "Certificate"),
                        **_problems(400, 401, 404, 409, 413, 415, 422, 503),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "token from `sceau client add`",
                }
            },
            "schemas": _schemas(profiles),
            "responses": {
                "Problem": {
                    "description": "RFC 9457 problem",
                    "content": {"application/problem+json": {"schema": _ref("Problem")}},
                }
            },
        },
    }
