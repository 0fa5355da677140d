"""OpenAPI 3.1 description of the registration authority's API (``GET /ra/openapi.json``):
identity proofs and their evidence files.

The request schemas are generated from the request models (registration/requests.py); the
answers, which have no model, are described here, pointing at the request's schemas where
they hold the same thing. A test checks that every route of the RA's API is described
and nothing else is. Certificates are the CA's document (``/ca/openapi.json``).
"""

from __future__ import annotations

from typing import Any

from core.http.openapi import (
    DATE_TIME,
    api_document,
    json_body,
    json_response,
    model_schemas,
    problems,
    ref,
)
from pki.profiles import SubjectKind
from registration.evidence import KINDS, MEDIA_TYPES
from registration.requests import IdentityProofRequest

_OR_NULL = {"type": "null"}


IDENTITY_PROOF = {
    "type": "object",
    "description": "the platform's view of its proof, also the poll for the decision",
    "required": [
        "id",
        "status",
        "subject_kind",
        "method",
        "created_at",
        "verified_at",
        "usable_until",
    ],
    "properties": {
        "id": {"type": "string"},
        "status": {"enum": ["pending", "verified", "rejected", "purged"]},
        "subject_kind": {"enum": [k.value for k in SubjectKind]},
        "method": ref("ProofMethod"),
        # As submitted (normalised); gone once the record is purged.
        "subject": {"oneOf": [ref("NaturalSubject"), ref("LegalSubject")]},
        "document": {
            "type": "object",
            "description": "the IdentityDocument without its number, which stays with the RA",
        },
        "representative": {
            "type": "object",
            "description": "the Representative, its document without the number",
        },
        "eid": ref("EidMeans"),
        "created_at": DATE_TIME,
        "verified_at": {"oneOf": [DATE_TIME, _OR_NULL]},
        "usable_until": {"oneOf": [DATE_TIME, _OR_NULL]},
        "decided_at": {"oneOf": [DATE_TIME, _OR_NULL]},
        "rejection_reason": {"oneOf": [{"type": "string"}, _OR_NULL]},
        "webhook_url": {"oneOf": [{"type": "string"}, _OR_NULL]},
        "files": {"type": "array", "items": ref("EvidenceFile")},
        "purged_at": DATE_TIME,
    },
}

EVIDENCE_FILE = {
    "type": "object",
    "required": ["id", "kind", "media_type", "size", "created_at"],
    "properties": {
        "id": {"type": "integer"},
        "kind": {"enum": list(KINDS)},
        "media_type": {"enum": list(MEDIA_TYPES)},
        "size": {"type": "integer"},
        "created_at": DATE_TIME,
    },
}


def openapi_document(base_url: str) -> dict[str, Any]:
    proof_id = {"name": "proof_id", "in": "path", "required": True, "schema": {"type": "string"}}
    return api_document(
        title="Sceau registration authority API",
        description="Identity proofs and their evidence for signing platforms (the "
        "certificates they allow are the CA's API, /ca/openapi.json).",
        base_url=base_url,
        paths={
            "/ra/api/v1/identity-proofs": {
                "post": {
                    "summary": "Record an identity proof",
                    "requestBody": json_body(IdentityProofRequest),
                    "responses": {
                        "201": json_response("created", "IdentityProof"),
                        **problems(400, 401, 403, 409, 413, 415, 422, 503),
                    },
                }
            },
            "/ra/api/v1/identity-proofs/{proof_id}": {
                "get": {
                    "summary": "Read one of the client's identity proofs",
                    "parameters": [proof_id],
                    "responses": {
                        "200": json_response("the proof", "IdentityProof"),
                        **problems(401, 404, 409),
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
                            "schema": {"enum": list(KINDS)},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            media: {"schema": {"type": "string", "format": "binary"}}
                            for media in MEDIA_TYPES
                        },
                    },
                    "responses": {
                        "201": json_response("stored", "EvidenceFile"),
                        **problems(401, 404, 409, 413, 415, 422),
                    },
                }
            },
        },
        schemas={
            **model_schemas(IdentityProofRequest),
            "IdentityProof": IDENTITY_PROOF,
            "EvidenceFile": EVIDENCE_FILE,
        },
    )
