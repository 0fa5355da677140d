"""Request bodies at the edge: JSON read with bounds, then a typed, frozen request model.

``json.loads`` alone is no edge: nesting a few thousand arrays deep raises RecursionError
(a 500), a 4,301-digit integer raises inside the parser, and ``"\\ud800"`` decodes to a
string that breaks the first time it is encoded. Every JSON body is read by
:func:`json_object`, which refuses each of these with a 400 problem before any model or
engine sees the data, and parsed into a pydantic model by :func:`parse`, whose failures are
422 problems naming the field.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from flask import current_app, request
from pydantic import BaseModel, ValidationError

from core.errors import ErrorKind, SceauError

M = TypeVar("M", bound=BaseModel)

MAX_DEPTH = 32  # objects and arrays inside one another; our requests need 4
MAX_NUMBER_CHARS = 40  # digits of a number literal; our largest is a count
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def load_json(raw: bytes) -> Any:
    """The JSON value of ``raw``, or SceauError(MALFORMED) saying what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SceauError(ErrorKind.MALFORMED, "body is not UTF-8") from exc
    # bytes.count runs in C: only a body that could be too deep is scanned in Python.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _depth(text) > MAX_DEPTH:
        raise SceauError(ErrorKind.MALFORMED, f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(
            text,
            parse_int=_number(int),
            parse_float=_number(float),
            parse_constant=_no_constant,
        )
    except ValueError as exc:  # JSONDecodeError and the hooks' refusals
        raise SceauError(ErrorKind.MALFORMED, f"body is not valid JSON: {exc}") from exc
    if _SURROGATE_ESCAPE.search(raw) and not _encodable(value):
        raise SceauError(ErrorKind.MALFORMED, "JSON string with a lone UTF-16 surrogate")
    return value


def json_object() -> dict[str, Any]:
    """The request's JSON object, or a problem: wrong type (415), not a JSON object (400)."""
    if request.mimetype != "application/json":
        raise SceauError(ErrorKind.UNSUPPORTED_MEDIA_TYPE, "send Content-Type: application/json")
    raw = request.get_data(cache=True)  # bounded by MAX_CONTENT_LENGTH
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    # A chunked body announces no length, and werkzeug stops reading it at the limit
    # without a word: a body that reached the limit may have been cut, so it is refused.
    if request.content_length is None and limit is not None and len(raw) >= limit:
        raise SceauError(ErrorKind.TOO_LARGE, f"a chunked body of {limit} bytes or more")
    data = load_json(raw)
    if not isinstance(data, dict):
        raise SceauError(ErrorKind.MALFORMED, "body must be a JSON object")
    return data


def parse(model: type[M], data: dict[str, Any]) -> M:
    """``data`` as a ``model``, or SceauError(INVALID) naming each field that is wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SceauError(ErrorKind.INVALID, describe(exc)) from exc


def describe(exc: ValidationError) -> str:
    """A validation failure in words, one field after the other (never the input value)."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(step) for step in error["loc"]) or "body"
        if error["type"] == "extra_forbidden":
            parts.append(f"unknown field {where}")
        else:
            parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _number(kind: type[int] | type[float]) -> Any:
    def parse_number(literal: str) -> int | float:
        if len(literal) > MAX_NUMBER_CHARS:
            raise ValueError(f"number longer than {MAX_NUMBER_CHARS} characters")
        return kind(literal)

    return parse_number


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _depth(text: str) -> int:
    """The deepest nesting of objects and arrays, brackets inside strings left out."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _encodable(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_encodable(v) for v in value)
    return True
