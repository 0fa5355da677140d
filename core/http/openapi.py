"""What the OpenAPI 3.1 documents of our JSON services share: the document around their
paths (bearer security, components), schemas generated from the request models,
references into ``components``, and the RFC 9457 problem answer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from core import __version__

REF = "#/components/schemas/{model}"
JSON = "application/json"
DATE_TIME = {"type": "string", "format": "date-time"}
PROBLEM_RESPONSE = {"$ref": "#/components/responses/Problem"}

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


def model_schemas(*models: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schemas of ``models`` and of the models they use, by name, as
    ``components.schemas`` holds them (each ``$ref`` points there)."""
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=REF)
        schemas |= schema.pop("$defs", {})
        schemas[model.__name__] = schema
    return schemas


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def problems(*codes: int) -> dict[str, Any]:
    """The problem answers of ``codes``, for an operation's ``responses``."""
    return {str(code): PROBLEM_RESPONSE for code in codes}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": ref(model.__name__)}}}


def json_response(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": ref(schema)}}}


def api_document(
    *,
    title: str,
    description: str,
    base_url: str,
    paths: dict[str, Any],
    schemas: dict[str, Any],
) -> dict[str, Any]:
    """An OpenAPI document of one of our JSON APIs: bearer-token security, ``paths``, and
    ``schemas`` with the problem answer every operation may give."""
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": __version__, "description": description},
        "servers": [{"url": base_url}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "token from `sceau client add`",
                }
            },
            "schemas": {**schemas, "Problem": PROBLEM},
            "responses": {
                "Problem": {
                    "description": "RFC 9457 problem",
                    "content": {"application/problem+json": {"schema": ref("Problem")}},
                }
            },
        },
    }
