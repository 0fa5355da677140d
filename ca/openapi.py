"""OpenAPI 3.1 description of the platform API (identity proofs and certificates).

Kept beside the views it describes; a test checks that every platform route is described
here and nothing else is.
"""

from __future__ import annotations

from typing import Any

from core import __version__
from pki.profiles import DOCUMENT_TYPES, ProofMethod
from pki.revocation import REVOCATION_REASONS

# registration/evidence.py KINDS (the core may not import a service).
EVIDENCE_KINDS = (
    "document-front",
    "document-back",
    "portrait",
    "company-extract",
    "mandate",
    "representative-document-front",
    "representative-document-back",
    "other",
)

_PROBLEM = {"$ref": "#/components/responses/Problem"}
_JSON = "application/json"


def _problems(*codes: int) -> dict[str, Any]:
    return {str(code): _PROBLEM for code in codes}


def _json_body(ref: str) -> dict[str, Any]:
    return {"required": True, "content": {_JSON: {"schema": {"$ref": ref}}}}


def _json_response(description: str, ref: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": {"$ref": ref}}}}


def _string(**extra: Any) -> dict[str, Any]:
    return {"type": "string", **extra}


def _schemas(profiles: list[str]) -> dict[str, Any]:
    date_time = _string(format="date-time")
    person = {
        "given_name": _string(maxLength=128),
        "surname": _string(maxLength=128),
        "birth_date": _string(format="date"),
        "birth_place": _string(maxLength=128),
        "email": _string(format="email"),
        "mobile": _string(pattern="^\\+[1-9][0-9]{6,14}$", description="E.164; spaces dropped"),
    }
    document = {
        "type": "object",
        "additionalProperties": False,
        "required": ["type", "number", "issuing_country", "expires_on"],
        "properties": {
            "type": {"enum": list(DOCUMENT_TYPES)},
            "number": _string(maxLength=128),
            "issuing_country": _string(pattern="^[A-Z]{2}$"),
            "issuing_authority": _string(maxLength=128),
            "expires_on": _string(format="date"),
        },
    }
    representative = {
        "type": "object",
        "additionalProperties": False,
        "description": "legal persons: the natural person acting for it (TS 119 461 9.4)",
        "required": ["given_name", "surname", "mandate"],
        "properties": {
            **person,
            "nationality": _string(pattern="^[A-Z]{2}$"),
            "role": _string(maxLength=128),
            "document": document,
            "mandate": {
                "type": "object",
                "additionalProperties": False,
                "required": ["type"],
                "properties": {
                    "type": {"enum": ["registry-listing", "power-of-attorney", "board-resolution"]},
                    "reference": _string(maxLength=128),
                },
            },
        },
    }
    natural = {
        "type": "object",
        "additionalProperties": False,
        "required": ["given_name", "surname", "country"],
        "properties": {
            **person,
            "nationality": _string(pattern="^[A-Z]{2}$"),
            "country": _string(pattern="^[A-Z]{2}$"),
        },
    }
    legal = {
        "type": "object",
        "additionalProperties": False,
        "required": ["organization_name", "organization_identifier", "country"],
        "properties": {
            "organization_name": _string(maxLength=128, description="full registered name"),
            "organization_identifier": _string(
                pattern="^(VAT|NTR|PSD|LEI)[A-Z]{2}-.+$",
                description="EN 319 412-1 5.1.4, e.g. NTRFR-<SIREN>; check digits verified",
            ),
            "common_name": _string(maxLength=128, description="defaults to organization_name"),
            "email": _string(format="email"),
            "country": _string(pattern="^[A-Z]{2}$"),
            "registered_address": _string(maxLength=256),
        },
    }
    return {
        "IdentityProofRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["subject_kind", "method", "subject", "document"],
            "properties": {
                "subject_kind": {"enum": ["natural", "legal"]},
                "method": {
                    "enum": [m.value for m in ProofMethod],
                    "description": "delegated: the platform vouches (verified at once "
                    "when one of its profiles accepts it); others wait for an officer",
                },
                "subject": {"oneOf": [natural, legal]},
                "document": document,
                "representative": representative,
                "eid": {
                    "type": "object",
                    "additionalProperties": False,
                    "description": "required for method eid, refused otherwise",
                    "required": ["scheme", "level"],
                    "properties": {
                        "scheme": _string(maxLength=128),
                        "level": {"enum": ["substantial", "high"]},
                    },
                },
                "webhook_url": _string(
                    maxLength=512,
                    description="https (http only on the loopback): the decision is POSTed "
                    "there, signed (Sceau-Signature); the client needs a webhook secret",
                ),
            },
        },
        "IdentityProof": {
            "type": "object",
            "required": [
                "id",
                "status",
                "subject_kind",
                "method",
                "subject",
                "document",
                "created_at",
                "verified_at",
                "usable_until",
            ],
            "properties": {
                "id": _string(),
                "status": {"enum": ["pending", "verified", "rejected", "purged"]},
                "subject_kind": {"enum": ["natural", "legal"]},
                "method": _string(),
                "subject": {"type": "object"},
                "document": {"type": "object", "description": "without the document number"},
                "created_at": date_time,
                "verified_at": {"oneOf": [date_time, {"type": "null"}]},
                "usable_until": {"oneOf": [date_time, {"type": "null"}]},
                "decided_at": {"oneOf": [date_time, {"type": "null"}]},
                "rejection_reason": {"oneOf": [_string(), {"type": "null"}]},
                "representative": {"type": "object"},
                "eid": {"type": "object"},
                "webhook_url": {"oneOf": [_string(), {"type": "null"}]},
                "files": {"type": "array", "items": {"$ref": "#/components/schemas/EvidenceFile"}},
            },
        },
        "EvidenceFile": {
            "type": "object",
            "required": ["id", "kind", "media_type", "size", "created_at"],
            "properties": {
                "id": {"type": "integer"},
                "kind": _string(),
                "media_type": {"enum": ["image/jpeg", "image/png", "application/pdf"]},
                "size": {"type": "integer"},
                "created_at": date_time,
            },
        },
        "CertificateRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["profile", "identity_proof"],
            "properties": {
                "profile": {"enum": profiles},
                "identity_proof": _string(description="id of a verified identity proof"),
                "csr": _string(
                    description="PEM PKCS#10; its signature proves possession, "
                    "its subject is ignored (the subject comes from the proof). Omitted, "
                    "for a profile whose keys may be generated in our HSM (required for "
                    "QSCD profiles): the key pair is generated in the token and the answer "
                    "carries the credential_id used by remote signing (CSC API)"
                ),
            },
        },
        "Certificate": {
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
                "serial": _string(pattern="^[0-9a-f]{1,40}$", description="hexadecimal"),
                "issuer": _string(),
                "profile": _string(),
                "status": {"enum": ["issued", "revoked"]},
                "subject": _string(),
                "identity_proof": _string(),
                "not_before": date_time,
                "not_after": date_time,
                "certificate": _string(description="PEM"),
                "credential_id": _string(
                    description="only when the key was generated in our HSM: the CSC "
                    "credential that signs with it"
                ),
                "chain": {
                    "type": "array",
                    "items": _string(description="PEM"),
                    "description": "issuing CA first, root last",
                },
                "revocation": {
                    "type": "object",
                    "properties": {
                        "revoked_at": date_time,
                        "reason": _string(),
                        "invalidity_date": {"oneOf": [date_time, {"type": "null"}]},
                    },
                },
            },
        },
        "RevocationRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "reason": {
                    "enum": list(REVOCATION_REASONS),
                    "default": "unspecified",
                    "description": "RFC 5280 CRLReason",
                },
                "invalidity_date": date_time,
            },
        },
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": _string(format="uri"),
                "title": _string(),
                "status": {"type": "integer"},
                "detail": _string(),
                "request_id": _string(),
            },
        },
    }


def openapi_document(base_url: str, profiles: list[str]) -> dict[str, Any]:
    serial = {
        "name": "serial",
        "in": "path",
        "required": True,
        "schema": _string(pattern="^[0-9a-fA-F:]{1,60}$"),
    }
    proof_id = {"name": "proof_id", "in": "path", "required": True, "schema": _string()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Sceau platform API",
            "version": __version__,
            "description": "Identity proofs and certificates for signing platforms.",
        },
        "servers": [{"url": base_url}],
        "security": [{"bearer": []}],
        "paths": {
            "/ra/api/v1/identity-proofs": {
                "post": {
                    "summary": "Record an identity proof",
                    "requestBody": _json_body("#/components/schemas/IdentityProofRequest"),
                    "responses": {
                        "201": _json_response("created", "#/components/schemas/IdentityProof"),
                        **_problems(400, 401, 403, 413, 415, 422),
                    },
                }
            },
            "/ra/api/v1/identity-proofs/{proof_id}": {
                "get": {
                    "summary": "Read one of the client's identity proofs",
                    "parameters": [proof_id],
                    "responses": {
                        "200": _json_response("the proof", "#/components/schemas/IdentityProof"),
                        **_problems(401, 404, 409),
                    },
                }
            },
            "/ra/api/v1/identity-proofs/{proof_id}/files": {
                "post": {
                    "summary": "Attach an evidence file to a pending proof (raw body)",
                    "description": "JPEG, PNG or PDF up to [registration] max_upload_bytes "
                    "(10 MB), recognised by content; Content-Type must match it.",
                    "parameters": [
                        proof_id,
                        {
                            "name": "kind",
                            "in": "query",
                            "required": True,
                            "schema": {"enum": list(EVIDENCE_KINDS)},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            media: {"schema": {"type": "string", "format": "binary"}}
                            for media in ("image/jpeg", "image/png", "application/pdf")
                        },
                    },
                    "responses": {
                        "201": _json_response("stored", "#/components/schemas/EvidenceFile"),
                        **_problems(401, 404, 409, 413, 415, 422),
                    },
                }
            },
            "/ca/api/v1/certificates": {
                "post": {
                    "summary": "Issue a certificate for a verified identity proof",
                    "requestBody": _json_body("#/components/schemas/CertificateRequest"),
                    "responses": {
                        "201": _json_response("issued", "#/components/schemas/Certificate"),
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
                                _JSON: {"schema": {"$ref": "#/components/schemas/Certificate"}},
                                "application/pkix-cert": {"schema": _string(format="binary")},
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
                    "requestBody": _json_body("#/components/schemas/RevocationRequest"),
                    "responses": {
                        "200": _json_response("revoked", "#/components/schemas/Certificate"),
                        **_problems(400, 401, 404, 409, 413, 415, 422),
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
                    "content": {
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}
                        }
                    },
                }
            },
        },
    }
