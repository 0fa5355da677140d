"""CSC API v2 endpoints (``/csc/v2/...``): every call a POST with a JSON body (CSC 11),
answered in JSON; errors as ``{"error", "error_description"}`` (CSC 10).

A view authenticates, reads the body as bounded JSON (``core.http.requests``), parses it into
its call's model (``signing.requests``) and hands that to the engine: no raw JSON value goes
further than this module. A body refused on the way is CSC's 400 ``invalid_request``.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from core.accounts.clients import Client, authenticate
from core.errors import ErrorKind, SceauError
from core.http.problems import unreadable_body
from core.http.requests import json_object
from core.http.service import provided
from signing.engine import SigningEngine
from signing.errors import CscError, invalid
from signing.openapi import openapi
from signing.requests import (
    AuthorizeRequest,
    CredentialInfoRequest,
    CredentialListRequest,
    CscRequest,
    SendOtpRequest,
    ServiceInfoRequest,
    SignAlgorithm,
    SignHashRequest,
)

log = logging.getLogger(__name__)

R = TypeVar("R", bound=CscRequest)

bp = Blueprint("csc", __name__, url_prefix="/csc/v2")

# The platform's errors that reach a CSC view: the bearer token (and its throttle), the key
# store refusing a request, and a dependency that does not answer (bodies that cannot be
# read are CscErrors already, see _body). CSC 10 borrows OAuth's error codes (RFC 6749
# 5.2, 4.1.2.1): temporarily_unavailable is the one for "try again later".
_SCEAU_ERRORS = {
    ErrorKind.UNAUTHENTICATED: (401, "invalid_token"),
    ErrorKind.INVALID: (400, "invalid_request"),
    ErrorKind.TOO_LARGE: (413, "invalid_request"),
    ErrorKind.THROTTLED: (429, "temporarily_unavailable"),
    ErrorKind.UNAVAILABLE: (503, "temporarily_unavailable"),
    ErrorKind.HSM: (503, "temporarily_unavailable"),
}


def _engine() -> SigningEngine:
    return provided(SigningEngine)


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _error(
    status: int, error: str, description: str, *, retry_after: int | None = None
) -> Response:
    response = _json({"error": error, "error_description": description}, status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="sceau"'
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


@bp.errorhandler(CscError)
def _csc_error(exc: CscError) -> Response:
    # Logged for the operator: what was refused and why, never a hash, SAD or OTP.
    log.info("CSC %s refused: %s", request.path, exc.description)
    return _error(exc.status, exc.error, exc.description)


def http_error(exc: HTTPException) -> Response:
    """What Flask answers before a CSC view runs (unknown path 404, wrong method 405, body
    too large 413), in CSC's error format: the whole service speaks CSC."""
    status = exc.code or 500
    error = "invalid_request" if status < 500 else "server_error"
    return _error(status, error, exc.description or "invalid request")


def _server_error() -> Response:
    """CSC's 500: the caller learns nothing of the cause (the operator's log has it)."""
    return _error(500, "server_error", "the signing service failed; quote the request id")


def unexpected_error(exc: Exception) -> Response:
    if unreadable_body(exc):
        return _error(400, "invalid_request", "the request body is not valid HTTP/1.1")
    log.exception("CSC %s failed", request.path)
    return _server_error()


@bp.errorhandler(SceauError)
def _sceau_error(exc: SceauError) -> Response:
    status, error = _SCEAU_ERRORS.get(exc.kind, (500, "server_error"))
    if status == 500:
        log.error("CSC %s failed: %s", request.path, exc.detail)
        return _server_error()
    if status >= 500:
        log.error("CSC %s not served: %s", request.path, exc.detail)
    else:
        log.info("CSC %s refused: %s", request.path, exc.detail)
    return _error(status, error, exc.detail, retry_after=exc.retry_after)


@dataclass(frozen=True)
class _Caller:
    client: Client
    now: datetime  # the call's instant, as the engine and the audit chain record it


def _caller() -> _Caller:
    """The authenticated client (401 before the body is looked at) and the call's instant."""
    client = authenticate(_engine().db, request.headers.get("Authorization"))
    return _Caller(client, datetime.now(UTC).replace(microsecond=0))


def _body() -> dict[str, Any]:
    """The request's JSON object. No body at all is an empty object: clients send none to
    info and credentials/list."""
    if not request.get_data(cache=True):
        return {}
    try:
        return json_object()
    except SceauError as exc:
        if exc.kind is ErrorKind.TOO_LARGE:
            raise
        # Not sent as JSON, not JSON, too deep, a lone surrogate, not an object: CSC has
        # one answer for a body it cannot read (rendered here, not as a problem document).
        raise invalid(exc.detail) from exc


def _parse(model: type[R]) -> R:
    return model.parse(_body())


def _parse_audited(model: type[R], caller: _Caller, call: str) -> R:
    """``_parse`` for the calls that authorise or sign: a body refused before the engine
    sees it is a signing.refused event too (the engine records its own refusals), naming
    the credential if the body named one."""
    data: dict[str, Any] = {}
    try:
        data = _body()
        return model.parse(data)
    except CscError as exc:
        claimed = data.get("credentialID")
        _engine().refused(
            caller.client,
            call,
            claimed if isinstance(claimed, str) else None,
            exc.description,
            now=caller.now,
        )
        raise


@bp.route("/info", methods=["GET", "POST"])
def info() -> Response:
    # CSC 11.1: no authentication; describes the service. The body is checked all the same.
    _parse(ServiceInfoRequest)
    return _json(
        {
            "specs": "2.0.0.2",
            "name": "Sceau",
            "logo": "",
            "region": "FR",
            "lang": "en-US",
            "description": "Sceau remote signing: keys generated and kept in the CA's HSM",
            "authType": ["external"],
            "methods": [
                "credentials/list",
                "credentials/info",
                "credentials/sendOTP",
                "credentials/authorize",
                "signatures/signHash",
            ],
            "signAlgorithms": {"algos": list(SignAlgorithm)},
        }
    )


@bp.post("/credentials/list")
def credentials_list() -> Response:
    caller = _caller()
    _parse(CredentialListRequest)  # no parameter is used; a bad body is still refused
    return _json({"credentialIDs": _engine().credential_ids(caller.client)})


@bp.post("/credentials/info")
def credentials_info() -> Response:
    caller = _caller()
    parsed = _parse(CredentialInfoRequest)
    return _json(_engine().info(caller.client, parsed, now=caller.now))


@bp.post("/credentials/sendOTP")
def send_otp() -> Response:
    caller = _caller()
    parsed = _parse_audited(SendOtpRequest, caller, "credentials/sendOTP")
    _engine().send_otp(caller.client, parsed, now=caller.now)
    return _json({})


@bp.post("/credentials/authorize")
def authorize() -> Response:
    caller = _caller()
    parsed = _parse_audited(AuthorizeRequest, caller, "credentials/authorize")
    sad, expires_in = _engine().authorize(caller.client, parsed, now=caller.now)
    return _json({"SAD": sad, "expiresIn": expires_in})


@bp.post("/signatures/signHash")
def sign_hash() -> Response:
    caller = _caller()
    parsed = _parse_audited(SignHashRequest, caller, "signatures/signHash")
    signatures = _engine().sign_hash(caller.client, parsed, now=caller.now)
    return _json({"signatures": [base64.b64encode(s).decode() for s in signatures]})


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return _json(openapi())
