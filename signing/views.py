"""CSC API v2 endpoints (``/csc/v2/...``): every call a POST with a JSON body (CSC 11),
answered in JSON; errors as ``{"error", "error_description"}`` (CSC 10)."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, request

from core.accounts.clients import Client, authenticate
from core.errors import ErrorKind, SceauError
from core.http.problems import json_body
from core.http.service import provided
from signing.engine import SIGN_ALGORITHMS, CscError, SigningEngine
from signing.openapi import openapi

log = logging.getLogger(__name__)

bp = Blueprint("csc", __name__, url_prefix="/csc/v2")

_SCEAU_ERRORS = {
    ErrorKind.UNAUTHENTICATED: (401, "invalid_token"),
    ErrorKind.MALFORMED: (400, "invalid_request"),
    ErrorKind.UNSUPPORTED_MEDIA_TYPE: (400, "invalid_request"),
    ErrorKind.INVALID: (400, "invalid_request"),
}


def _engine() -> SigningEngine:
    return provided(SigningEngine)


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _error(status: int, error: str, description: str) -> Response:
    response = _json({"error": error, "error_description": description}, status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="sceau"'
    return response


@bp.errorhandler(CscError)
def _csc_error(exc: CscError) -> Response:
    # Logged for the operator: what was refused and why, never a hash, SAD or OTP.
    log.info("CSC %s refused: %s", request.path, exc.description)
    return _error(exc.status, exc.error, exc.description)


@bp.errorhandler(SceauError)
def _sceau_error(exc: SceauError) -> Response:
    status, error = _SCEAU_ERRORS.get(exc.kind, (500, "server_error"))
    if status == 500:
        log.error("CSC %s failed: %s", request.path, exc.detail)
        return _error(500, error, "the signing service failed; quote the request id")
    log.info("CSC %s refused: %s", request.path, exc.detail)
    return _error(status, error, exc.detail)


def _call(
    handler: Callable[[Client, dict[str, Any], datetime], dict[str, Any]],
    audited: str | None = None,
) -> Response:
    """Authenticate, parse, run. For the ``audited`` calls (those that authorise or sign),
    a body refused before the engine sees it (not JSON, not an object) is an audit event
    too; the engine records its own refusals."""
    engine = _engine()
    client = authenticate(engine.db, request.headers.get("Authorization"))
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        body = json_body() if request.get_data(cache=True) else {}
    except SceauError as exc:
        if audited is not None:
            engine.refused(client, audited, None, exc.detail, now=now)
        raise
    return _json(handler(client, body, now))


def _hashes(body: dict[str, Any]) -> Any:
    """CSC v2 names the array "hashes"; v1 clients (pyHanko's CSCSigner among them) send
    "hash", and "hashAlgo" for hashAlgorithmOID: both are accepted."""
    return body["hashes"] if "hashes" in body else body.get("hash")


@bp.route("/info", methods=["GET", "POST"])
def info() -> Response:
    # CSC 11.1: no authentication; describes the service.
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
            "signAlgorithms": {"algos": SIGN_ALGORITHMS},
        }
    )


@bp.post("/credentials/list")
def credentials_list() -> Response:
    return _call(lambda client, _body, _now: {"credentialIDs": _engine().credential_ids(client)})


@bp.post("/credentials/info")
def credentials_info() -> Response:
    return _call(
        lambda client, body, now: _engine().info(
            client,
            body.get("credentialID"),
            certificates=body.get("certificates"),
            cert_info=body.get("certInfo"),
            auth_info=body.get("authInfo"),
            now=now,
        )
    )


@bp.post("/credentials/sendOTP")
def send_otp() -> Response:
    def handler(client: Client, body: dict[str, Any], now: datetime) -> dict[str, Any]:
        _engine().send_otp(client, body.get("credentialID"), now=now)
        return {}

    return _call(handler, "credentials/sendOTP")


@bp.post("/credentials/authorize")
def authorize() -> Response:
    def handler(client: Client, body: dict[str, Any], now: datetime) -> dict[str, Any]:
        sad, expires_in = _engine().authorize(
            client,
            body.get("credentialID"),
            body.get("numSignatures"),
            _hashes(body),
            body.get("OTP"),
            now=now,
        )
        return {"SAD": sad, "expiresIn": expires_in}

    return _call(handler, "credentials/authorize")


@bp.post("/signatures/signHash")
def sign_hash() -> Response:
    def handler(client: Client, body: dict[str, Any], now: datetime) -> dict[str, Any]:
        signatures = _engine().sign_hash(
            client,
            body.get("credentialID"),
            body.get("SAD"),
            _hashes(body),
            body["hashAlgorithmOID"] if "hashAlgorithmOID" in body else body.get("hashAlgo"),
            body.get("signAlgo"),
            sign_algo_params=body.get("signAlgoParams"),
            operation_mode=body.get("operationMode"),
            now=now,
        )
        return {"signatures": [base64.b64encode(s).decode() for s in signatures]}

    return _call(handler, "signatures/signHash")


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return _json(openapi())
