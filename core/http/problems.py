"""What every Sceau service shares over HTTP: RFC 9457 problem documents, body limits,
request ids, Prometheus metrics, /healthz and /metrics, and the answers to a database that
does not answer (503 with Retry-After) and to a body gunicorn cannot read (400).

``core.http.service.make_service`` calls :func:`install_common` for every service; JSON
bodies are read by ``core.http.requests``.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from werkzeug.exceptions import HTTPException

from core import __version__, metrics
from core.errors import RETRY_AFTER_SECONDS, ErrorKind, SceauError

log = logging.getLogger("sceau.web")

PROBLEM_JSON = "application/problem+json"

STATUS = {
    ErrorKind.MALFORMED: 400,
    ErrorKind.INVALID: 422,
    ErrorKind.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.BAD_CSR: 422,
    ErrorKind.BAD_KEY: 422,
    ErrorKind.UNKNOWN_PROFILE: 422,
    ErrorKind.PROOF_NOT_USABLE: 422,
    ErrorKind.LINT_FAILED: 422,
    ErrorKind.NOT_IMPLEMENTED: 501,
    ErrorKind.HSM: 503,
    ErrorKind.CONFIG: 503,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.THROTTLED: 429,
}

TITLES = {
    ErrorKind.MALFORMED: "Malformed request",
    ErrorKind.INVALID: "Invalid request",
    ErrorKind.UNSUPPORTED_MEDIA_TYPE: "Unsupported media type",
    ErrorKind.TOO_LARGE: "Request body too large",
    ErrorKind.UNAUTHENTICATED: "Authentication required",
    ErrorKind.FORBIDDEN: "Forbidden",
    ErrorKind.NOT_FOUND: "Not found",
    ErrorKind.CONFLICT: "Conflict with the current state",
    ErrorKind.BAD_CSR: "Unusable certificate signing request",
    ErrorKind.BAD_KEY: "Key not accepted",
    ErrorKind.UNKNOWN_PROFILE: "Unknown certificate profile",
    ErrorKind.PROOF_NOT_USABLE: "Identity proof not usable",
    ErrorKind.LINT_FAILED: "Certificate refused by pre-issuance checks",
    ErrorKind.NOT_IMPLEMENTED: "Not implemented",
    ErrorKind.HSM: "Signing device unavailable",
    ErrorKind.CONFIG: "Service misconfigured",
    ErrorKind.UNAVAILABLE: "Service temporarily unavailable",
    ErrorKind.THROTTLED: "Too many failed attempts",
}

_HTTP_KINDS = {
    400: ErrorKind.MALFORMED,
    401: ErrorKind.UNAUTHENTICATED,
    403: ErrorKind.FORBIDDEN,
    404: ErrorKind.NOT_FOUND,
    405: ErrorKind.INVALID,
    413: ErrorKind.TOO_LARGE,
    415: ErrorKind.UNSUPPORTED_MEDIA_TYPE,
}


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def unreadable_body(exc: Exception) -> bool:
    """An error gunicorn raised while the application read the body (an invalid chunk
    size or terminator): the client's fault, raised from inside ``wsgi.input``."""
    return type(exc).__module__.startswith("gunicorn.http")


def _db_reason(exc: SQLAlchemyError) -> str:
    """The driver's own words, first line only: never the statement or its parameters."""
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"


def problem(
    kind: ErrorKind,
    detail: str,
    status: int | None = None,
    *,
    retry_after: int | None = None,
    **extra: Any,
) -> Response:
    status = status or STATUS[kind]
    body = {
        "type": f"urn:sceau:problem:{kind.value}",
        "title": TITLES[kind],
        "status": status,
        "detail": detail,
        **extra,
    }
    if "request_id" in g:
        body["request_id"] = g.request_id
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    if kind is ErrorKind.UNAUTHENTICATED:
        response.headers["WWW-Authenticate"] = 'Bearer realm="sceau"'
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def install_common(app: Flask, service: str, *, max_body_bytes: int, schema: str | None) -> None:
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes

    @app.before_request
    def _start() -> Response | None:
        g.request_id = request.headers.get("X-Request-Id", "")[:64] or secrets.token_hex(8)
        g.started = time.perf_counter()
        # Refuse an announced oversized body before reading a byte of it.
        if request.content_length is not None and request.content_length > max_body_bytes:
            # Raised, not returned: each service renders it in its protocol's terms.
            raise SceauError(ErrorKind.TOO_LARGE, f"body larger than {max_body_bytes} bytes")
        return None

    @app.after_request
    def _finish(response: Response) -> Response:
        # Label values come from our routes and a fixed set of methods only: a client that
        # invents paths or methods must not grow the metrics (or the memory behind them).
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        metrics.REQUESTS.labels(service, endpoint, method, str(response.status_code)).inc()
        if "started" in g:
            metrics.LATENCY.labels(service, endpoint).observe(time.perf_counter() - g.started)
        response.headers["X-Request-Id"] = g.get("request_id", "")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    @app.errorhandler(SceauError)
    def _sceau_error(exc: SceauError) -> Response:
        metrics.ERRORS.labels(service, exc.kind.value).inc()
        if exc.kind in {ErrorKind.HSM, ErrorKind.CONFIG, ErrorKind.UNAVAILABLE}:
            log.error("request %s: %s", g.get("request_id"), exc.detail)
        if exc.kind is ErrorKind.UNAVAILABLE:
            metrics.DEPENDENCY_UP.labels("database").set(0)  # /readyz sets it back
        return problem(exc.kind, exc.detail, retry_after=exc.retry_after)

    @app.errorhandler(SQLAlchemyError)
    def _database_error(exc: SQLAlchemyError) -> Response:
        # What core.store.db did not already turn into an UnavailableError: a uniqueness
        # race lost (IntegrityError) is the caller's to retry; anything else is the
        # database's state. Neither answer names a statement or a table.
        log.error("request %s: database error %s", g.get("request_id"), _db_reason(exc))
        if isinstance(exc, IntegrityError):
            metrics.ERRORS.labels(service, ErrorKind.CONFLICT.value).inc()
            return problem(ErrorKind.CONFLICT, "a concurrent request changed this record; retry")
        metrics.ERRORS.labels(service, ErrorKind.UNAVAILABLE.value).inc()
        metrics.DEPENDENCY_UP.labels("database").set(0)  # /readyz sets it back
        return problem(
            ErrorKind.UNAVAILABLE,
            "the database is not answering; retry later",
            retry_after=RETRY_AFTER_SECONDS,
        )

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        kind = _HTTP_KINDS.get(status, ErrorKind.INVALID)
        metrics.ERRORS.labels(service, kind.value).inc()
        return problem(kind, exc.description or TITLES[kind], status)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if unreadable_body(exc):
            metrics.ERRORS.labels(service, ErrorKind.MALFORMED.value).inc()
            return problem(ErrorKind.MALFORMED, "the request body is not valid HTTP/1.1")
        # Logged with the request id for the operator; the caller learns nothing inside.
        log.exception("request %s: unexpected error", g.get("request_id"))
        metrics.ERRORS.labels(service, "internal").inc()
        body = {
            "type": "about:blank",
            "title": "Internal error",
            "status": 500,
            "detail": "internal error; quote the request id to the operator",
            "request_id": g.get("request_id", ""),
        }
        return Response(json.dumps(body), status=500, mimetype=PROBLEM_JSON)

    @app.get("/healthz", endpoint="healthz")
    def _healthz() -> Response:
        body = {"status": "ok", "service": service, "version": __version__, "schema": schema}
        return Response(json.dumps(body), mimetype="application/json")

    @app.get("/metrics", endpoint="metrics")
    def _metrics() -> Response:
        return Response(generate_latest(), content_type=CONTENT_TYPE_LATEST)
