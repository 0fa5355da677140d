"""OpenAPI 3.1 description of the CSC API v2 subset Sceau serves (``/csc/v2/openapi.json``).

Request bodies are the JSON Schemas of the models the views parse them with
(``signing.requests``), so the description cannot drift from what is accepted."""

from __future__ import annotations

from typing import Any

from core import __version__
from signing.requests import (
    MAX_HASHES,
    AuthorizeRequest,
    CredentialInfoRequest,
    CredentialListRequest,
    CscRequest,
    SendOtpRequest,
    ServiceInfoRequest,
    SignHashRequest,
)

_JSON = "application/json"


def _body(model: type[CscRequest]) -> dict[str, Any]:
    """The model's JSON Schema (no nested models, so no $defs to place). A body is needed
    when the model requires a parameter; info and credentials/list may be sent without."""
    schema = model.model_json_schema()
    return {"required": bool(schema.get("required")), "content": {_JSON: {"schema": schema}}}


def _answer(description: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "content": {_JSON: {"schema": {"type": "object", "properties": properties}}},
    }


_ERROR = _answer(
    "CSC error",
    {"error": {"type": "string"}, "error_description": {"type": "string"}},
)
_ERRORS = {"400": _ERROR, "401": _ERROR, "403": _ERROR, "503": _ERROR}
_STRING = {"type": "string"}
_STRINGS = {"type": "array", "items": _STRING}


def _post(summary: str, model: type[CscRequest], answer: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": []}],
        "requestBody": _body(model),
        "responses": {"200": answer, **_ERRORS},
    }
    return {"post": operation}


def openapi() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Sceau remote signing (Cloud Signature Consortium API v2.0.0.2)",
            "version": __version__,
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/csc/v2/info": {
                "post": {
                    "summary": "service description (no authentication)",
                    "requestBody": _body(ServiceInfoRequest),
                    "responses": {"200": _answer("service", {"specs": _STRING}), "400": _ERROR},
                }
            },
            "/csc/v2/credentials/list": _post(
                "the caller's credential ids",
                CredentialListRequest,
                _answer("credentials", {"credentialIDs": _STRINGS}),
            ),
            "/csc/v2/credentials/info": _post(
                "key, certificates (leaf first, base64 DER), auth (mode, OTP), SCAL",
                CredentialInfoRequest,
                _answer(
                    "credential",
                    {
                        "description": _STRING,
                        "signatureQualifier": _STRING,
                        "key": {"type": "object"},
                        "cert": {"type": "object"},
                        "auth": {"type": "object"},
                        "authMode": {"enum": ["implicit", "explicit"]},
                        "OTP": {"type": "object"},
                        "SCAL": {"enum": ["1", "2"]},
                        "multisign": {"type": "integer"},
                        "lang": _STRING,
                    },
                ),
            ),
            "/csc/v2/credentials/sendOTP": _post(
                "send a one-time code to the owner of a SCAL2 credential",
                SendOtpRequest,
                _answer("sent", {}),
            ),
            "/csc/v2/credentials/authorize": _post(
                "a SAD for exactly these hashes, after the owner's OTP (SCAL2)",
                AuthorizeRequest,
                _answer("authorised", {"SAD": _STRING, "expiresIn": {"type": "integer"}}),
            ),
            "/csc/v2/signatures/signHash": _post(
                f"sign 1 to {MAX_HASHES} hashes; ECDSA signatures are DER ECDSA-Sig-Value",
                SignHashRequest,
                _answer("signatures, base64, in the order of the hashes", {"signatures": _STRINGS}),
            ),
        },
    }
