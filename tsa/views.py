"""RFC 3161 section 3.4 over HTTP: POST /tsa. This module only moves bytes and headers.

HTTP statuses answer what is wrong with the exchange itself (method 405, media type 415,
size 413, authentication 401, rate 429, as problem+json); anything about the query's
content is answered 200 with a TimeStampResp whose PKIStatusInfo says ``rejection`` and
why (tsa/response.py). No input gets a 500 or, when refused, a token.

Two ways in. :class:`FastPath`, WSGI middleware in front of Flask, answers the ordinary
request (POST /tsa, the right type, an announced length within bounds, a client allowed
and within its rate) without Flask's request machinery, which costs about as much CPU as
the whole token does (standards.md section 12; measured: 160 us for the engine, 150 us
more through Flask and core.http.problems's hooks). Everything else goes to the Flask view, which
gives every refusal its answer.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, Response, g, request
from prometheus_client import Counter

from core import metrics
from core.errors import ErrorKind, SceauError
from core.http.problems import PROBLEM_JSON, problem
from core.http.service import provided
from tsa.access import Authenticator, RateLimiter
from tsa.authority import TimestampAuthority
from tsa.request import MAX_QUERY_BYTES

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"

RESPONSES = Counter(
    "sceau_tsa_responses_total",
    "TimeStampResp answers: granted, or the PKIFailureInfo of a rejection",
    ["status"],
)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

bp = Blueprint("tsa", __name__)


class TsaService:
    """What the views need, built once per application (tsa/app.py)."""

    def __init__(
        self, authority: TimestampAuthority, auth: Authenticator, limiter: RateLimiter
    ) -> None:
        self.authority = authority
        self.auth = auth
        self.limiter = limiter


def service() -> TsaService:
    return provided(TsaService)


def _answer(svc: TsaService, body: bytes, client: str | None) -> bytes:
    answer, failure = svc.authority.respond(body, client=client)
    RESPONSES.labels(failure.rfc_name if failure is not None else "granted").inc()
    return answer


@bp.post("/tsa")
def timestamp() -> Response:
    svc = service()
    if request.mimetype != QUERY_TYPE:
        return problem(ErrorKind.UNSUPPORTED_MEDIA_TYPE, f"send Content-Type: {QUERY_TYPE}")
    # The size is judged before a byte of the body is read (announced length), and the
    # read itself stops one byte past the limit (chunked bodies announce none).
    if request.content_length is not None and request.content_length > MAX_QUERY_BYTES:
        return _too_large()
    client = svc.auth.client(request.headers.get("Authorization"))  # 401 via core.http.problems
    wait = svc.limiter.retry_after(client or request.remote_addr or "")
    if wait:
        return _too_many(wait)
    body = request.stream.read(MAX_QUERY_BYTES + 1)
    if len(body) > MAX_QUERY_BYTES:
        return _too_large()
    # A token is unique: no cache may keep or replay it.
    return Response(
        _answer(svc, body, client), mimetype=REPLY_TYPE, headers={"Cache-Control": "no-store"}
    )


@bp.route("/tsa", methods=["GET", "PUT", "DELETE", "PATCH"])
def wrong_method() -> Response:
    response = problem(ErrorKind.INVALID, "POST an application/timestamp-query", 405)
    response.headers["Allow"] = "POST"
    return response


def _too_large() -> Response:
    return problem(ErrorKind.TOO_LARGE, f"a TimeStampReq is at most {MAX_QUERY_BYTES} bytes")


def _too_many(wait: float) -> Response:
    body = {
        "type": "urn:sceau:problem:rate-limited",
        "title": "Too many requests",
        "status": 429,
        "detail": "this client's timestamp rate limit is reached",
        "request_id": g.get("request_id", ""),
    }
    return Response(
        json.dumps(body),
        status=429,
        mimetype=PROBLEM_JSON,
        headers={"Retry-After": str(max(1, math.ceil(wait)))},
    )


class FastPath:
    """POST /tsa in the ordinary case, without Flask; anything else to ``app`` (the Flask
    application's wsgi_app, which this wraps). Answers exactly what the Flask view would,
    with the headers and metrics core.http.problems gives every response."""

    def __init__(self, app: WsgiApp, svc: TsaService) -> None:
        self.app = app
        self.svc = svc
        self._requests = metrics.REQUESTS.labels("tsa", "/tsa", "POST", "200")
        self._latency = metrics.LATENCY.labels("tsa", "/tsa")

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != "/tsa":
            return self.app(environ, start_response)
        mimetype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        length = environ.get("CONTENT_LENGTH", "")
        if mimetype != QUERY_TYPE or not length.isdigit() or int(length) > MAX_QUERY_BYTES:
            return self.app(environ, start_response)  # refused there, with its problem
        svc = self.svc
        try:
            client = svc.auth.client(environ.get("HTTP_AUTHORIZATION"))
        except SceauError:
            return self.app(environ, start_response)  # 401 there
        if svc.limiter.retry_after(client or environ.get("REMOTE_ADDR", "")):
            return self.app(environ, start_response)  # 429 there (nothing was taken)
        body = environ["wsgi.input"].read(int(length))
        answer = _answer(svc, body, client)
        request_id = environ.get("HTTP_X_REQUEST_ID", "")[:64] or secrets.token_hex(8)
        start_response(
            "200 OK",
            [
                ("Content-Type", REPLY_TYPE),
                ("Content-Length", str(len(answer))),
                ("Cache-Control", "no-store"),
                ("X-Request-Id", request_id),
                ("X-Content-Type-Options", "nosniff"),
            ],
        )
        self._requests.inc()
        self._latency.observe(time.perf_counter() - started)
        return [answer]
