"""HTTP for the responder (RFC 6960 appendix A, RFC 9919 sections 5 and 6): bytes and
headers only; the engine answers.

``POST /ocsp`` (``application/ocsp-request``) and ``GET /ocsp/<base64 request>`` answer
``application/ocsp-response``. OCSP statuses travel in the body with HTTP 200, except
tryLater (503) and internalError (500), which say the service, not the request, failed.
Transport errors are HTTP errors: 405 (method), 413 (size), 415 (content type).

A worker keeps finished answers in memory (:class:`ocsp.cache.AnswerCache`). A request
whose answer it has is served by :class:`CachedAnswers`, a WSGI layer in front of Flask:
a dictionary lookup and the headers, which is what lets two workers serve thousands of
responses a second. Everything else goes through the Flask views below.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, request
from prometheus_client import Counter
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.http import http_date
from werkzeug.routing import BaseConverter

from core import metrics
from core.config import OcspConfig
from core.errors import ErrorKind, SceauError
from core.http.service import provided
from ocsp.cache import AnswerCache, CacheEntry, EpochWatch
from ocsp.engine import Answer, Engine
from ocsp.request import OcspRejection, ResponseStatus, decode_get
from ocsp.response import unsigned

log = logging.getLogger(__name__)

OCSP_REQUEST = "application/ocsp-request"
OCSP_RESPONSE = "application/ocsp-response"
PREFIX = "/ocsp/"
POST_RULE = "/ocsp"
GET_RULE = "/ocsp/<ocsp_request:encoded>"

ANSWERS = Counter(
    "sceau_ocsp_answers_total",
    "OCSP answers by where they came from: memory, database or signed, or the error status",
    ["source"],
)

# Non-authoritative answers SHOULD say not to cache them (RFC 9919 section 6.2).
_NO_STORE = ("Cache-Control", "no-store")
_NOSNIFF = ("X-Content-Type-Options", "nosniff")
_HTTP_STATUS = {ResponseStatus.TRY_LATER: 503, ResponseStatus.INTERNAL_ERROR: 500}


class RequestPath(BaseConverter):
    """The rest of the path, slashes included: base64 uses ``/``, and may start with one.
    Any character at all (a decoded %0A too): what is not base64 is malformedRequest."""

    regex = "(?s:.*)"
    part_isolating = False


@dataclass
class OcspService:
    engine: Engine
    epochs: EpochWatch
    cache: AnswerCache
    config: OcspConfig


def service() -> OcspService:
    return provided(OcspService)


bp = Blueprint("ocsp", __name__)


@bp.post(POST_RULE)
def post() -> Response:
    svc = service()
    if request.mimetype != OCSP_REQUEST:
        raise SceauError(ErrorKind.UNSUPPORTED_MEDIA_TYPE, f"send Content-Type: {OCSP_REQUEST}")
    limit = svc.config.max_request_bytes
    # The size check comes before the body is read when the length is announced.
    if request.content_length is not None and request.content_length > limit:
        raise SceauError(ErrorKind.TOO_LARGE, f"an OCSP request is at most {limit} bytes")
    body = request.get_data(cache=False)  # bounded by MAX_CONTENT_LENGTH when chunked
    if len(body) > limit:
        raise SceauError(ErrorKind.TOO_LARGE, f"an OCSP request is at most {limit} bytes")
    return _respond(svc, body, body, get=False)


# merge_slashes off: "//" is part of a base64 request, not a path typo to redirect.
@bp.get(GET_RULE, merge_slashes=False)
def get(encoded: str) -> Response:
    svc = service()
    # The raw PATH_INFO, as CachedAnswers keys it (the route argument went through
    # werkzeug's UTF-8 decoding).
    key = request.environ["PATH_INFO"][len(PREFIX) :]
    try:
        der = decode_get(key, svc.config.max_request_bytes)
    except OcspRejection as rejection:
        return _rejected(rejection)
    return _respond(svc, key, der, get=True)


def _respond(svc: OcspService, key: str | bytes, der: bytes, *, get: bool) -> Response:
    # The epochs are read before any status: an answer is tagged with an epoch no newer
    # than the status it shows, so a revocation committed meanwhile invalidates it.
    epochs = svc.epochs.current()
    entry = svc.cache.get(key, epochs, time.time())
    if entry is None:
        try:
            answer = svc.engine.answer(der, now=datetime.now(UTC))
        except OcspRejection as rejection:
            return _rejected(rejection)
        except (SceauError, SQLAlchemyError) as exc:
            # The token or the database is unavailable: the client may try again.
            log.error("OCSP answer failed: %s", getattr(exc, "detail", exc))
            return _rejected(OcspRejection(ResponseStatus.TRY_LATER, "service unavailable"))
        except Exception:
            # A bug of ours: logged with its traceback, answered in OCSP terms.
            log.exception("OCSP answer failed")
            return _rejected(OcspRejection(ResponseStatus.INTERNAL_ERROR, "internal error"))
        ANSWERS.labels(answer.source).inc()
        if answer.this_update is None:
            # A nonce, or a serial we never issued: for this request only.
            return Response(answer.body, mimetype=OCSP_RESPONSE)
        entry = cache_entry(answer, epochs.get(answer.issuer_id, 0))
        svc.cache.put(key, entry)
    else:
        ANSWERS.labels("memory").inc()
    body, headers = _cached(entry, get=get, now=time.time())
    return Response(body, headers=headers)


def _rejected(rejection: OcspRejection) -> Response:
    ANSWERS.labels(rejection.status.name.lower()).inc()
    if rejection.status in _HTTP_STATUS:
        log.warning("OCSP %s: %s", rejection.status.name, rejection.detail)
    return Response(
        unsigned(rejection.status),
        status=_HTTP_STATUS.get(rejection.status, 200),
        mimetype=OCSP_RESPONSE,
        headers=[_NO_STORE],
    )


def cache_entry(answer: Answer, epoch: int) -> CacheEntry:
    """Everything a cached answer needs, computed once. GET answers are the cacheable ones
    (RFC 9919 section 5): ETag = hex SHA-256 of the OCSPResponse (its recommendation),
    Last-Modified = thisUpdate, Expires = nextUpdate; POST answers carry no caching header."""
    assert answer.this_update is not None and answer.next_update is not None
    midlife = answer.this_update + (answer.next_update - answer.this_update) / 2
    common = [
        ("Content-Type", OCSP_RESPONSE),
        ("Content-Length", str(len(answer.body))),
        _NOSNIFF,
    ]
    return CacheEntry(
        issuer_id=answer.issuer_id,
        epoch=epoch,
        expires=midlife.timestamp(),
        body=answer.body,
        get_headers=[
            *common,
            ("ETag", f'"{hashlib.sha256(answer.body).hexdigest()}"'),
            ("Last-Modified", http_date(answer.this_update)),
            ("Expires", http_date(answer.next_update)),
        ],
        post_headers=common,
    )


def _cached(entry: CacheEntry, *, get: bool, now: float) -> tuple[bytes, list[tuple[str, str]]]:
    if not get:
        return entry.body, entry.post_headers
    # RFC 9919 section 6.2: max-age ends between thisUpdate and nextUpdate, and a newer
    # response must exist by then: we re-sign at midlife, so caches may keep it until then.
    max_age = max(0, int(entry.expires - now))
    control = f"max-age={max_age}, public, no-transform, must-revalidate"
    return entry.body, [*entry.get_headers, ("Cache-Control", control)]


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class CachedAnswers:
    """WSGI middleware: answers from this worker's memory without entering Flask. Same
    cache and headers as the views, so a hit here and a hit there are the same bytes;
    anything else (a miss, another path) goes to the Flask application unchanged."""

    def __init__(self, app: WsgiApp, svc: OcspService) -> None:
        self._app = app
        self._svc = svc
        self._limit = svc.config.max_request_bytes
        # Label lookups done once: the per-request cost is two increments and an observe.
        self._get_requests = metrics.REQUESTS.labels("ocsp", GET_RULE, "GET", "200")
        self._post_requests = metrics.REQUESTS.labels("ocsp", POST_RULE, "POST", "200")
        self._get_latency = metrics.LATENCY.labels("ocsp", GET_RULE)
        self._post_latency = metrics.LATENCY.labels("ocsp", POST_RULE)
        self._memory = ANSWERS.labels("memory")

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        started = time.perf_counter()
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        if method == "GET" and path.startswith(PREFIX):
            entry = self._svc.cache.get(
                path[len(PREFIX) :], self._svc.epochs.current(), time.time()
            )
            if entry is not None:
                body, headers = _cached(entry, get=True, now=time.time())
                start_response("200 OK", headers)
                self._memory.inc()
                self._get_requests.inc()
                self._get_latency.observe(time.perf_counter() - started)
                return [body]
        elif method == "POST" and path == POST_RULE and environ.get("CONTENT_TYPE") == OCSP_REQUEST:
            length = environ.get("CONTENT_LENGTH") or ""
            if length.isdigit() and int(length) <= self._limit:
                der = environ["wsgi.input"].read(int(length))
                entry = self._svc.cache.get(der, self._svc.epochs.current(), time.time())
                if entry is not None:
                    start_response("200 OK", entry.post_headers)
                    self._memory.inc()
                    self._post_requests.inc()
                    self._post_latency.observe(time.perf_counter() - started)
                    return [entry.body]
                environ["wsgi.input"] = io.BytesIO(der)  # the views read it again
        return self._app(environ, start_response)
