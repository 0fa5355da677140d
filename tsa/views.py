"""RFC 3161 section 3.4 over HTTP: POST /tsa. This module only moves bytes and headers.

HTTP statuses answer what is wrong with the exchange itself (method 405, media type 415,
size 413, authentication 401, rate 429, as problem+json); anything about the query's
content is answered 200 with a TimeStampResp whose PKIStatusInfo says ``rejection`` and
why (tsa/response.py). No input gets a 500 or, when refused, a token.
"""

from __future__ import annotations

import json
import math

from flask import Blueprint, Response, current_app, g, request
from prometheus_client import Counter

from ca.errors import ErrorKind
from ca.web import PROBLEM_JSON, problem
from tsa.access import Authenticator, RateLimiter
from tsa.authority import TimestampAuthority
from tsa.request import MAX_QUERY_BYTES

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
EXTENSION = "sceau.tsa"

RESPONSES = Counter(
    "sceau_tsa_responses_total",
    "TimeStampResp answers: granted, or the PKIFailureInfo of a rejection",
    ["status"],
)

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
    svc: TsaService = current_app.extensions[EXTENSION]
    return svc


@bp.post("/tsa")
def timestamp() -> Response:
    svc = service()
    if request.mimetype != QUERY_TYPE:
        return problem(ErrorKind.UNSUPPORTED_MEDIA_TYPE, f"send Content-Type: {QUERY_TYPE}")
    # The size is judged before a byte of the body is read (announced length), and the
    # read itself stops one byte past the limit (chunked bodies announce none).
    if request.content_length is not None and request.content_length > MAX_QUERY_BYTES:
        return _too_large()
    client = svc.auth.client(request.headers.get("Authorization"))  # 401 via ca.web
    wait = svc.limiter.retry_after(client or request.remote_addr or "")
    if wait:
        return _too_many(wait)
    body = request.stream.read(MAX_QUERY_BYTES + 1)
    if len(body) > MAX_QUERY_BYTES:
        return _too_large()
    answer, failure = svc.authority.respond(body, client=client)
    RESPONSES.labels(failure.rfc_name if failure is not None else "granted").inc()
    # A token is unique: no cache may keep or replay it.
    return Response(answer, mimetype=REPLY_TYPE, headers={"Cache-Control": "no-store"})


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
