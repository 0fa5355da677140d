"""Bad input, each with its exact answer (design.md: bad input gets a clear answer and
changes nothing; JSON APIs answer problem+json, CSC its error object, OCSP and the TSA in
their protocols; never a 500, never gunicorn's HTML).

- JSON bodies (deep nesting, not JSON, a lone surrogate or a NUL in an id, a 10,000-digit
  number, NaN, not UTF-8, not an object, a wrong media type) on every JSON POST endpoint,
  through the WSGI application on SQLite and PostgreSQL: a live server adds nothing to
  these, the database sometimes does (PostgreSQL refuses a NUL where SQLite finds nothing).
- HTTP itself against a live `sceau serve` (2 x 4, gunicorn with ProblemThreadWorker):
  broken request lines and headers over a raw socket, invalid and oversized chunked
  bodies, announced oversized bodies, unknown methods (and /metrics stays bounded), 64
  clients dribbling their headers while /healthz answers within a second.
- Protocol messages: truncated DER to OCSP and the TSA, wrong media types.
- Credentials: forged tokens (401, then 429 for the address that keeps trying), forged
  and replayed SADs, a replayed OTP, a replayed TOTP code at the officer login.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import http.client
import json
import random
import re
import socket
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509 import ocsp
from sqlalchemy import func, select
from werkzeug.test import Client as WsgiClient

from core.store.models import AuditEvent
from tests.support.builders import NATURAL, csr_pem
from tests.support.clients import LOOPBACK, ApiClient
from tests.support.live import (
    PROBLEM_JSON,
    Answer,
    Browser,
    LiveHome,
    authorize_body,
    live_home,
    parse_raw,
    raw_exchange,
    sign_body,
)
from tests.support.ocsp import OCSP_REQUEST, request_der
from tests.support.officers import form_token
from tests.support.pki import Pki
from tests.support.tsa import QUERY, REPLY, TimeStampResp, failure_of, query

pytestmark = [pytest.mark.slow]

MALFORMED = "urn:sceau:problem:malformed"
INVALID = "urn:sceau:problem:invalid"
NOT_FOUND = "urn:sceau:problem:not-found"
TOO_LARGE = "urn:sceau:problem:too-large"
MEDIA_TYPE = "urn:sceau:problem:unsupported-media-type"
UNAUTHENTICATED = "urn:sceau:problem:unauthenticated"
THROTTLED = "urn:sceau:problem:too-many-requests"


# -- JSON bodies, through the WSGI application on both backends --------------------------

# Endpoints answering problem+json, with the id field a lone surrogate or a NUL goes in.
PROBLEM_ENDPOINTS = {
    "ra-identity-proofs": ("/ra/api/v1/identity-proofs", "subject_kind"),
    "ca-certificates": ("/ca/api/v1/certificates", "identity_proof"),
    "ca-revoke": ("/ca/api/v1/certificates/01/revoke", "reason"),
}
# The CSC endpoints answer {"error", "error_description"}: invalid_request for each.
CSC_ENDPOINTS = {
    "csc-info": "/csc/v2/info",
    "csc-credentials-list": "/csc/v2/credentials/list",
    "csc-credentials-info": "/csc/v2/credentials/info",
    "csc-send-otp": "/csc/v2/credentials/sendOTP",
    "csc-authorize": "/csc/v2/credentials/authorize",
    "csc-sign-hash": "/csc/v2/signatures/signHash",
}


def _with_id(field: str, value: str) -> bytes:
    """A body that is right but for ``field`` (JSON-escaped text, spliced in raw)."""
    body = {"profile": "person-lcp", "identity_proof": "P1", "csr": "x", "reason": "superseded"}
    if field == "subject_kind":
        body = copy.deepcopy(NATURAL)
    text = json.dumps({**body, field: "@@"})
    return text.replace('"@@"', f'"{value}"').encode()


# name -> (body, content type, problem type): the answer is 400 but for 415.
BODIES: dict[str, tuple[bytes | None, str, str]] = {
    "deep-arrays": (b"[" * 5000, "application/json", MALFORMED),
    "deep-objects": (b'{"a":' * 3000 + b"1" + b"}" * 3000, "application/json", MALFORMED),
    "not-json": (b'{"profile": ', "application/json", MALFORMED),
    "lone-surrogate-id": (None, "application/json", MALFORMED),
    "10000-digits": (b'{"profile": ' + b"9" * 10_000 + b"}", "application/json", MALFORMED),
    "nan": (b'{"profile": NaN}', "application/json", MALFORMED),
    "not-utf8": (b'{"profile": "\xff\xfe"}', "application/json", MALFORMED),
    "not-an-object": (b'["profile"]', "application/json", MALFORMED),
    "text-plain": (b'{"profile": "person-lcp"}', "text/plain", MEDIA_TYPE),
}
STATUS = {MALFORMED: 400, MEDIA_TYPE: 415}


@pytest.fixture(scope="module")
def api(pki: Pki) -> ApiClient:
    return pki.client("person-lcp", "seal-lcp", "person-qcp-n-qscd")


def _post(api: ApiClient, path: str, body: bytes, content_type: str) -> Any:
    return api.http.post(
        path,
        data=body,
        headers={"Authorization": f"Bearer {api.token}"},
        content_type=content_type,
    )


def _actions_since(pki: Pki, seq: int | None) -> list[str]:
    """The audit actions appended after event ``seq`` (None: the head now)."""
    with pki.ctx.db.read() as session:
        if seq is None:
            return [str(session.scalar(select(func.max(AuditEvent.seq))) or 0)]
        query = select(AuditEvent.action).where(AuditEvent.seq > seq).order_by(AuditEvent.seq)
        return list(session.scalars(query).all())


def _audit_head(pki: Pki) -> int:
    return int(_actions_since(pki, None)[0])


def _body(name: str, field: str) -> tuple[bytes, str]:
    body, content_type, _ = BODIES[name]
    return (body if body is not None else _with_id(field, "\\ud800")), content_type


@pytest.mark.parametrize("body_name", list(BODIES))
@pytest.mark.parametrize("endpoint", list(PROBLEM_ENDPOINTS))
def test_bad_json_bodies_get_their_problem(
    pki: Pki, api: ApiClient, endpoint: str, body_name: str
) -> None:
    path, field = PROBLEM_ENDPOINTS[endpoint]
    body, content_type = _body(body_name, field)
    head = _audit_head(pki)
    resp = _post(api, path, body, content_type)
    kind = BODIES[body_name][2]
    assert resp.status_code == STATUS[kind], resp.data[:300]
    assert resp.mimetype == PROBLEM_JSON and resp.json["type"] == kind, resp.json
    assert _actions_since(pki, head) == []  # nothing changed


@pytest.mark.parametrize("body_name", list(BODIES))
@pytest.mark.parametrize("endpoint", list(CSC_ENDPOINTS))
def test_bad_json_bodies_get_csc_invalid_request(
    pki: Pki, api: ApiClient, endpoint: str, body_name: str
) -> None:
    body, content_type = _body(body_name, "credentialID")
    head = _audit_head(pki)
    resp = _post(api, CSC_ENDPOINTS[endpoint], body, content_type)
    assert resp.status_code == 400, resp.data[:300]
    assert resp.mimetype == "application/json"
    assert resp.json["error"] == "invalid_request", resp.json
    # Nothing changed but the refusal's record (the calls that authorise or sign keep one).
    assert set(_actions_since(pki, head)) <= {"signing.refused"}


def test_a_nul_in_an_id_is_the_callers_mistake_on_both_backends(pki: Pki, api: ApiClient) -> None:
    """PostgreSQL's text cannot hold U+0000 and psycopg refuses such a parameter; that used
    to surface as 503 "the database is not answering". SQLite finds nothing. Either way a
    4xx, and the same one for CSC (core.store.db turns PostgreSQL's refusal into INVALID)."""
    nul = "a\\u0000b"
    # A lookup by id: nothing can match (SQLite), or the value cannot be asked (PostgreSQL).
    expected = (404, NOT_FOUND) if pki.backend == "sqlite" else (422, INVALID)
    issue = _post(
        api,
        "/ca/api/v1/certificates",
        json.dumps({"profile": "person-lcp", "identity_proof": "@@", "csr": csr_pem()})
        .replace("@@", nul)
        .encode(),
        "application/json",
    )
    assert (issue.status_code, issue.json["type"]) == expected, issue.json
    fetched = api.get("/ra/api/v1/identity-proofs/a%00b")
    assert (fetched.status_code, fetched.json["type"]) == expected, fetched.json
    for path in ("/csc/v2/credentials/info", "/csc/v2/credentials/sendOTP"):
        resp = _post(api, path, f'{{"credentialID": "{nul}"}}'.encode(), "application/json")
        assert resp.status_code == 400 and resp.json["error"] == "invalid_request", resp.json
    digest = base64.b64encode(hashlib.sha256(b"x").digest()).decode()
    signed = _post(
        api,
        "/csc/v2/signatures/signHash",
        json.dumps(sign_body("@@", [b"\x00" * 32])).replace("@@", nul).encode(),
        "application/json",
    )
    assert signed.status_code == 400 and signed.json["error"] == "invalid_request", signed.json
    authorized = _post(
        api,
        "/csc/v2/credentials/authorize",
        json.dumps({"credentialID": "@@", "numSignatures": 1, "hashes": [digest], "OTP": "123456"})
        .replace("@@", nul)
        .encode(),
        "application/json",
    )
    assert authorized.status_code == 400, authorized.json
    assert authorized.json["error"] == "invalid_request"
    # A login name: an unknown account (SQLite), an invalid value (PostgreSQL); a page.
    http = WsgiClient(pki.app)
    form = {"name": "a\x00b", "password": "x", "code": "123456"}
    page = http.get("/ra/admin/login")
    login = http.post("/ra/admin/login", data={**form, "csrf_token": form_token(page.text)})
    assert login.status_code == (401 if pki.backend == "sqlite" else 422), login.text[:300]
    assert login.mimetype == "text/html"


# -- HTTP itself, against a live server -------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, softhsm_conf: Path) -> Iterator[LiveHome]:
    base = tmp_path_factory.mktemp("bad-input-live")
    with live_home(base, softhsm_conf, None, backend="sqlite", label="bad-input") as home:
        yield home


def _head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: pki.example.com", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _chunked(body: bytes) -> bytes:
    return b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"


@dataclass(frozen=True)
class Raw:
    """Bytes sent as they are, and the exact answer: status and problem type (for the CSC
    API, which answers in its own format everywhere, ``csc:`` and its error code)."""

    data: bytes  # b"{token}" is replaced by the platform's token
    status: int
    problem: str


JSON_POST = ("Content-Type: application/json", "Authorization: Bearer {token}")
OCSP_POST = (f"Content-Type: {OCSP_REQUEST}",)
TSA_POST = (f"Content-Type: {QUERY}",)
CSC_INVALID = "csc:invalid_request"
BAD_CHUNK = b"zz\r\n{}\r\n0\r\n\r\n"  # a chunk size that is no hexadecimal number
PADDED_PROOF = json.dumps(NATURAL).encode() + b" " * 70_000  # valid JSON, past 64 KiB

RAW: dict[str, Raw] = {
    "garbage-request-line": Raw(b"GARBAGE\r\n\r\n", 400, MALFORMED),
    "unknown-http-version": Raw(_head("GET", "/healthz").replace(b"1.1", b"9.9"), 400, MALFORMED),
    "header-without-colon": Raw(_head("GET", "/healthz", "Foo bar"), 400, MALFORMED),
    "space-in-header-name": Raw(_head("GET", "/healthz", "Fo o: bar"), 400, MALFORMED),
    "lower-case-method": Raw(_head("get", "/healthz"), 400, MALFORMED),
    "uri-too-long": Raw(_head("GET", "/" + "a" * 9000), 414, TOO_LARGE),
    "150-headers": Raw(
        _head("GET", "/healthz", *(f"X-{i}: y" for i in range(150))), 431, TOO_LARGE
    ),
    "negative-length": Raw(
        _head("POST", "/ca/api/v1/certificates", "Content-Length: -1"), 400, MALFORMED
    ),
    "chunked-and-length": Raw(
        _head("POST", "/ca/api/v1/certificates", "Content-Length: 2", "Transfer-Encoding: chunked")
        + _chunked(b"{}"),
        400,
        MALFORMED,
    ),
    "bad-chunk-ca": Raw(
        _head("POST", "/ca/api/v1/certificates", *JSON_POST, "Transfer-Encoding: chunked")
        + BAD_CHUNK,
        400,
        MALFORMED,
    ),
    "bad-chunk-ra": Raw(
        _head("POST", "/ra/api/v1/identity-proofs", *JSON_POST, "Transfer-Encoding: chunked")
        + BAD_CHUNK,
        400,
        MALFORMED,
    ),
    "bad-chunk-csc": Raw(
        _head("POST", "/csc/v2/signatures/signHash", *JSON_POST, "Transfer-Encoding: chunked")
        + BAD_CHUNK,
        400,
        CSC_INVALID,
    ),
    "bad-chunk-ocsp": Raw(
        _head("POST", "/ocsp", *OCSP_POST, "Transfer-Encoding: chunked") + BAD_CHUNK, 400, MALFORMED
    ),
    "bad-chunk-tsa": Raw(
        _head("POST", "/tsa", *TSA_POST, "Transfer-Encoding: chunked") + BAD_CHUNK, 400, MALFORMED
    ),
    "bad-chunk-login-form": Raw(
        _head(
            "POST",
            "/ra/admin/login",
            "Content-Type: application/x-www-form-urlencoded",
            "Transfer-Encoding: chunked",
        )
        + BAD_CHUNK,
        400,
        MALFORMED,
    ),
    "announced-oversized-ca": Raw(
        _head("POST", "/ca/api/v1/certificates", *JSON_POST, "Content-Length: 999999999"),
        413,
        TOO_LARGE,
    ),
    # The body limit is the common layer's, before any service: problem+json on CSC too.
    "announced-oversized-csc": Raw(
        _head("POST", "/csc/v2/signatures/signHash", *JSON_POST, "Content-Length: 999999999"),
        413,
        CSC_INVALID,
    ),
    "announced-oversized-ocsp": Raw(
        _head("POST", "/ocsp", *OCSP_POST, "Content-Length: 999999999"), 413, TOO_LARGE
    ),
    "announced-oversized-tsa": Raw(
        _head("POST", "/tsa", *TSA_POST, "Content-Length: 999999999"), 413, TOO_LARGE
    ),
    "chunked-oversized-ocsp": Raw(
        _head("POST", "/ocsp", *OCSP_POST, "Transfer-Encoding: chunked") + _chunked(b"0" * 70_000),
        413,
        TOO_LARGE,
    ),
    "chunked-oversized-tsa": Raw(
        _head("POST", "/tsa", *TSA_POST, "Transfer-Encoding: chunked") + _chunked(b"0" * 70_000),
        413,
        TOO_LARGE,
    ),
    "chunked-oversized-json": Raw(
        _head("POST", "/ra/api/v1/identity-proofs", *JSON_POST, "Transfer-Encoding: chunked")
        + _chunked(PADDED_PROOF),
        413,
        TOO_LARGE,
    ),
    "unknown-method-ca": Raw(_head("FOOBAR", "/ca/api/v1/certificates"), 405, INVALID),
    "unknown-method-csc": Raw(_head("FOOBAR", "/csc/v2/info"), 405, CSC_INVALID),
    "unknown-method-ocsp": Raw(_head("FOOBAR", "/ocsp"), 405, INVALID),
    "unknown-method-tsa": Raw(_head("FOOBAR", "/tsa"), 405, INVALID),
    "unknown-method-admin": Raw(_head("FOOBAR", "/ra/admin/login"), 405, INVALID),
    "unknown-method-no-route": Raw(_head("FOOBAR", "/nowhere"), 404, NOT_FOUND),
    "delete-a-certificate": Raw(_head("DELETE", "/ca/api/v1/certificates/01"), 405, INVALID),
}


@pytest.mark.parametrize(
    "name",
    [*RAW],
)
def test_raw_http_gets_problem_json(live: LiveHome, name: str) -> None:
    case = RAW[name]
    data = case.data.replace(b"{token}", live.token.encode())
    answer = parse_raw(raw_exchange(live.port, data))
    assert answer.status == case.status, answer
    assert "<html" not in answer.text.lower()  # never gunicorn's HTML page
    if case.problem.startswith("csc:"):
        assert answer.media_type == "application/json", answer
        assert json.loads(answer.text)["error"] == case.problem.removeprefix("csc:"), answer
        return
    assert answer.media_type == PROBLEM_JSON, answer
    assert answer.problem_type == case.problem, answer


def test_unknown_methods_do_not_grow_the_metrics(live: LiveHome) -> None:
    """Made-up methods on made-up paths: each answered 404/405 in problem+json (CSC's error
    object under /csc/), and the
    metrics keep a bounded label set (method "other", endpoint "unmatched") whatever the
    variety, in every worker's registry."""
    rng = random.Random(20261204)  # noqa: S311 - names, not secrets
    paths = ["/ca/api/v1/certificates", "/csc/v2/info", "/ocsp", "/healthz", "/nowhere"]
    sent: set[str] = set()  # the made-up methods and path segments
    for _ in range(2):
        suffix = secrets_path(rng)
        sent.add(suffix)
        for path in [p + s for p in paths for s in ("", "/" + suffix)] * 15:
            method = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(5, 12)))
            sent.add(method)
            answer = live.call(method, path)
            assert answer.status in {404, 405}, answer
            csc = path.startswith("/csc/")
            assert answer.media_type == ("application/json" if csc else PROBLEM_JSON), answer
    for _ in range(12):  # each /metrics answer is one worker's registry: see both
        page = live.call("GET", "/metrics").text
        assert len(page) < 256 * 1024
        leaked = [word for word in sent if word in page]
        assert not leaked, leaked
        methods = set(re.findall(r'method="([^"]*)"', page))
        assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
        other = {line.rsplit(" ", 1)[0] for line in page.splitlines() if 'method="other"' in line}
        # Per service, the unmatched endpoint with 404 and 405: a handful, not 300.
        assert len(other) <= 20, sorted(other)


def secrets_path(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase + string.digits, k=12))


def test_dribbling_clients_do_not_starve_healthz(live: LiveHome) -> None:
    """64 connections that send half a header and then a byte now and then (slowloris):
    each worker's threads stay free, /healthz answers within a second throughout."""
    sockets = []
    try:
        for i in range(64):
            sock = socket.create_connection((LOOPBACK, live.port), timeout=5)
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: ".encode())
            sockets.append(sock)
        started = time.monotonic()
        timings = []
        while time.monotonic() - started < 3:
            for sock in sockets:
                sock.sendall(b"a")  # never the end of the header block
            before = time.monotonic()
            answer = live.call("GET", "/healthz", timeout=5)
            timings.append(time.monotonic() - before)
            assert answer.status == 200, answer
            time.sleep(0.25)
        assert len(timings) >= 5 and max(timings) < 1.0, timings
    finally:
        for sock in sockets:
            sock.close()


# -- protocol messages ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def leaf(live: LiveHome) -> tuple[x509.Certificate, x509.Certificate]:
    issued = live.issue()
    persons = live.call("GET", "/certs/persons.crt")
    return (
        x509.load_pem_x509_certificate(issued["certificate"].encode()),
        x509.load_der_x509_certificate(persons.body),
    )


@pytest.mark.parametrize("cut", [1, 3, 10, 40])
def test_truncated_ocsp_requests_are_malformed(
    live: LiveHome, leaf: tuple[x509.Certificate, x509.Certificate], cut: int
) -> None:
    der = request_der(*leaf)
    answer = live.call("POST", "/ocsp", der[:-cut], {"Content-Type": OCSP_REQUEST})
    assert answer.status == 200 and answer.media_type == "application/ocsp-response", answer
    status = ocsp.load_der_ocsp_response(answer.body).response_status
    assert status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    get = live.call("GET", "/ocsp/" + base64.b64encode(der[:-cut]).decode())
    assert ocsp.load_der_ocsp_response(get.body).response_status is status


@pytest.mark.parametrize("cut", [1, 3, 10, 40])
def test_truncated_timestamp_queries_are_bad_data_format(live: LiveHome, cut: int) -> None:
    answer = live.call("POST", "/tsa", query()[:-cut], {"Content-Type": QUERY})
    assert answer.status == 200 and answer.media_type == REPLY, answer
    assert failure_of(TimeStampResp.load(answer.body)) == "bad_data_format"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/ocsp", "application/json"),
        ("/tsa", "application/ocsp-request"),
        ("/ca/api/v1/certificates", "application/x-www-form-urlencoded"),
        ("/ra/api/v1/identity-proofs", "multipart/form-data; boundary=x"),
    ],
)
def test_wrong_media_types_are_415(live: LiveHome, path: str, content_type: str) -> None:
    answer = live.api("POST", path, None, headers={"Content-Type": content_type})
    assert answer.status == 415 and answer.problem_type == MEDIA_TYPE, answer


# -- credentials: forged, replayed, guessed -----------------------------------------------------


def _from(address: str, token: str | None = None) -> dict[str, str]:
    """Headers as nginx on this host forwards a client at ``address`` (core.accounts.clients
    trusts X-Forwarded-For from loopback only)."""
    headers = {"X-Forwarded-For": address}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer sceau_forged-token", "Bearer not-even-ours", "Basic c2NlYXU6c2NlYXU="],
)
def test_forged_tokens_are_refused(live: LiveHome, authorization: str | None) -> None:
    headers = {"X-Forwarded-For": "192.0.2.10"}
    if authorization:
        headers["Authorization"] = authorization
    fetched = live.call("GET", "/ca/api/v1/certificates/01", None, headers)
    assert fetched.status == 401 and fetched.problem_type == UNAUTHENTICATED, fetched
    assert fetched.headers["www-authenticate"].startswith("Bearer")
    submitted = live.call(
        "POST",
        "/ra/api/v1/identity-proofs",
        json.dumps(NATURAL).encode(),
        {**headers, "Content-Type": "application/json"},
    )
    assert submitted.status == 401 and submitted.problem_type == UNAUTHENTICATED, submitted
    listed = live.call(
        "POST", "/csc/v2/credentials/list", b"{}", {**headers, "Content-Type": "application/json"}
    )
    assert listed.status == 401 and listed.json()["error"] == "invalid_token", listed


LIMIT = 60  # failed tokens a minute per address, in each worker (core.accounts.throttle)


class KeptAlive:
    """One HTTP/1.1 connection kept open: every request reaches the same worker, whose
    throttle (each worker counts its own share) then answers deterministically."""

    def __init__(self, live: LiveHome) -> None:
        self.live = live
        self.conn = http.client.HTTPConnection(LOOPBACK, live.port, timeout=30)

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Answer:
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        assert not resp.will_close, "the connection was closed: another worker may answer"
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)

    def close(self) -> None:
        self.conn.close()


def _guesses(conn: KeptAlive, path: str, address: str, body: bytes | None, n: int) -> list[int]:
    """``n`` wrong tokens from ``address`` on one worker: the statuses."""
    headers = {**_from(address, "sceau_guess"), "Content-Type": "application/json"}
    method = "GET" if body is None else "POST"
    return [conn.send(method, path, body, headers).status for _ in range(n)]


def test_guessed_tokens_are_throttled_per_address(live: LiveHome) -> None:
    address, path = "198.51.100.23", "/ca/api/v1/certificates/01"
    conn = KeptAlive(live)
    try:
        statuses = _guesses(conn, path, address, None, LIMIT + 20)
        assert statuses == [401] * LIMIT + [429] * 20, statuses
        throttled = conn.send("GET", path, None, _from(address, "sceau_x"))
        assert throttled.status == 429 and throttled.problem_type == THROTTLED, throttled
        assert 1 <= int(throttled.headers["retry-after"]) <= 60
        # The right token from that address waits too; from another address it is served.
        right = conn.send("GET", path, None, _from(address, live.token))
        assert right.status == 429, right
        other = conn.send("GET", path, None, _from("203.0.113.4", live.token))
        assert other.status == 404 and other.problem_type == NOT_FOUND, other
    finally:
        conn.close()
    # One event for the burst (not one per refusal), naming the address.
    bursts = [e for e in live.events("client.auth_throttled") if e.details["from"] == address]
    assert len(bursts) == 1 and bursts[0].details["failures"] == LIMIT


def test_guessed_tokens_are_throttled_on_the_csc_api(live: LiveHome) -> None:
    conn = KeptAlive(live)
    try:
        statuses = _guesses(conn, "/csc/v2/credentials/list", "198.51.100.77", b"{}", LIMIT + 5)
    finally:
        conn.close()
    assert statuses == [401] * LIMIT + [429] * 5, statuses


def test_forged_and_replayed_sads_and_otps(live: LiveHome) -> None:
    credential_id = live.qualified_credential()
    digests = [hashlib.sha256(b"contract").digest()]
    sign = "/csc/v2/signatures/signHash"
    forged = live.api("POST", sign, sign_body(credential_id, digests, "forged-" + "A" * 40))
    assert forged.status == 400 and forged.json()["error_description"] == "Invalid parameter SAD"
    none = live.api("POST", sign, sign_body(credential_id, digests))
    assert none.status == 403 and none.json()["error"] == "access_denied", none
    code = live.send_otp(credential_id)
    authorize = "/csc/v2/credentials/authorize"
    granted = live.api("POST", authorize, authorize_body(credential_id, digests, code))
    assert granted.status == 200, granted
    replayed_otp = live.api("POST", authorize, authorize_body(credential_id, digests, code))
    assert replayed_otp.status == 400 and replayed_otp.json()["error"] == "invalid_otp"
    sad = granted.json()["SAD"]
    other = live.api("POST", sign, sign_body(credential_id, [hashlib.sha256(b"x").digest()], sad))
    assert other.status == 400
    assert other.json()["error_description"] == "Hash is not authorized by the SAD"
    assert live.api("POST", sign, sign_body(credential_id, digests, sad)).status == 200
    replayed = live.api("POST", sign, sign_body(credential_id, digests, sad))
    assert replayed.status == 400
    assert replayed.json()["error_description"] == "Invalid parameter SAD: it was already used"
    # Another client's token with this SAD: the credential is not theirs to name.
    stranger = live.client("person-qcp-n-qscd")
    foreign = live.api("POST", sign, sign_body(credential_id, digests, sad), token=stranger)
    assert foreign.status == 400
    assert foreign.json()["error_description"] == "Invalid parameter credentialID"


def test_a_replayed_totp_code_is_refused(live: LiveHome) -> None:
    person = live.officer()
    code = person.code()
    assert Browser(live).login(person, code=code).status == 303
    replayed = Browser(live).login(person, code=code)
    assert replayed.status == 401 and "wrong name, password or code" in replayed.text
    trail = live.events_of(f"officer:{person.name}")
    assert trail[-1].action == "officer.login_failed"
    assert trail[-1].details["reason"] == "replayed code"


def test_the_live_server_never_answered_5xx(live: LiveHome) -> None:
    assert not [str(a) for a in live.server_errors() if a.status >= 500]
    log = live.server.log.read_text(errors="replace")
    assert "Traceback" not in log, live.server.log_tail(60)
