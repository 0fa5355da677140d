"""A mixed load on a whole Sceau server for a fixed time, on PostgreSQL (or SQLite): every
kind of request at once, then the invariants the database must keep after it.

Run from the repository root:

    .venv/bin/python -m tests.benchmarks.mixed_load [--seconds 60] [--clients 16] [--sqlite]
        [--officers 10] [--seed 1] [--keep-home]

It starts a throwaway PostgreSQL cluster (tests/support/postgres.py; Unix socket only) unless
--sqlite, makes a home on it (`sceau init --database-url ...`), an API client allowed
person-lcp and seal-lcp (`sceau client add`), `--officers` RA officer accounts with TOTP
(`sceau officer add`), two approved legal-person proofs and two seal-lcp credentials, and
starts `sceau serve` with 2 workers x 4 threads on a free loopback port. After a short
warm-up, `--clients` threads, each with its own keep-alive connection (reopened every few
requests so that the kernel spreads them over both workers), draw requests from a fixed mix
for `--seconds`: delegated identity proofs, person-lcp issuance on a fresh CSR, seal-lcp
issuance on a key generated in the token (no CSR), revocation of certificates issued here,
GET of a certificate, CSC signHash (SCAL1, 10 hashes a call), RFC 3161 timestamps, OCSP POST
and GET, CRL fetches. Officer logins (login page, password + TOTP, then the queue page) are
paced apart from the draw: an account may log in once per 30-second TOTP step (a replayed
code is refused by design), so `--officers` accounts take turns, one login every
30 / `--officers` seconds, and every login must succeed.

It prints, per request kind: count, rate, p50/p99 latency of the expected answers, and the
count of each status class; the count of 5xx, which must be zero, with the first bodies and
paths and the server log's alarming records if not; the CPU the server (gunicorn's process
group), PostgreSQL, this load process and other processes used; the load average; and the
baseline of the other benchmarks, measured in the same run with the server stopped: the raw
signature rate of the issuing key of person-lcp through core.hsm.keystore.KeyStore, in 1
process and in 2. Then the invariants: no `reserved` certificate row, unique serials, one
`certificate.revoked` event per revoked certificate (and one `certificate.issued` per
certificate), as many rows as answers said, and `sceau audit verify` exiting 0. The last
line is machine-readable (RESULT ...). Exit status 1 on any 5xx, unexpected answer or broken
invariant.

Not a pytest test: the file name does not match test_*.py, so pytest never collects it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import random
import re
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pyotp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from sqlalchemy import func, select

from core.config import load_config
from core.hsm.algorithms import KeyAlgorithm, default_scheme
from core.store.db import Database
from core.store.models import AuditEvent, Certificate
from sceau.ceremony import ca_key_label
from tests.benchmarks.common import (
    HOST,
    SCEAU,
    BenchmarkError,
    SigningKey,
    add_client,
    arguments,
    bounded,
    init_home,
    machine_busy_seconds,
    machine_info,
    parallel_sign_rate,
    percentile,
    run_main,
    run_sceau,
    sign_loop,
)
from tests.benchmarks.issuance import print_alarms, server_alarms
from tests.benchmarks.load import starts_with
from tests.support.builders import LEGAL, NATURAL, csr_pem
from tests.support.postgres import PgCluster, start_cluster
from tests.support.servers import SceauServer
from tests.support.tsa import QUERY
from tests.support.tsa import query as tsa_query

WORKERS, THREADS = 2, 4
CA_KEY = ca_key_label("persons")  # the issuing CA of person-lcp: the baseline's key
CA_SCHEME = default_scheme(KeyAlgorithm.EC_P384)  # as the ceremony generates it and it signs
ECDSA_SHA256 = "1.2.840.10045.4.3.2"
SIGN_BATCH = 10
TOTP_STEP = 30  # seconds (core.accounts.officers)
REQUEST_TIMEOUT = 90.0  # above gunicorn's 60 s worker timeout: a stuck request is its 5xx
RECONNECT_EVERY = 25  # requests per connection, so that both workers get clients
IDLE_RECONNECT = 2.0  # seconds; gunicorn closes keep-alive connections idle for 5 s
WARMUP_SECONDS = 3.0
MAX_REQUESTS = 2_000_000  # whatever --seconds says
HSM_SECONDS = 3.0
SETUP_PROOFS = 16
SETUP_CERTIFICATES = 24
FIRST_FAILURES = 5  # bodies shown per kind of failure
BODY_CHARS = 1500
REASONS = ("superseded", "cessationOfOperation", "affiliationChanged", "keyCompromise")
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]*)"')
# Beginnings of a successful answer after the outer SEQUENCE header.
OCSP_SUCCESSFUL = b"\x0a\x01\x00"  # OCSPResponse.responseStatus successful
TSA_GRANTED = b"\x30\x03\x02\x01\x00"  # TimeStampResp.status PKIStatusInfo { granted }
RETRY_LOG = "transaction aborted by the database"  # core.store.db, retried transactions
PROOF_PATH = "/ra/api/v1/identity-proofs"
ISSUE_PATH = "/ca/api/v1/certificates"


# -- HTTP -------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def cookies(self) -> dict[str, str]:
        jar: dict[str, str] = {}
        for header in self.headers.get_all("Set-Cookie") or ():
            parsed: SimpleCookie = SimpleCookie()
            parsed.load(header)
            for name, morsel in parsed.items():
                jar[name] = morsel.value
        return jar


class Connection:
    """One client's keep-alive connection, reopened every RECONNECT_EVERY requests, after
    an idle spell (before gunicorn's keep-alive timeout closes it under us) and after an
    error. A failed request is never retried: it counts."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None
        self.used = 0
        self.last = 0.0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> Answer:
        stale = time.monotonic() - self.last > IDLE_RECONNECT
        if self.conn is None or self.used >= RECONNECT_EVERY or stale:
            self.close()
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=REQUEST_TIMEOUT)
            self.used = 0
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        self.used += 1
        self.last = time.monotonic()
        if resp.will_close:
            self.close()
        return Answer(resp.status, resp.msg, data)


# -- what was measured ------------------------------------------------------------------------


@dataclass
class OpStats:
    """Every answer to one kind of request."""

    name: str
    latencies: list[float] = field(default_factory=list)  # seconds, expected answers only
    statuses: Counter[str] = field(default_factory=Counter)  # "201", "503", "RemoteDisconnected"
    unexpected: list[str] = field(default_factory=list)  # the first few, described

    @property
    def count(self) -> int:
        return sum(self.statuses.values())

    def classes(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for status, n in self.statuses.items():
            out[f"{status[0]}xx" if status.isdigit() else "error"] += n
        return out


@dataclass
class ServerError5xx:
    op: str
    method: str
    path: str
    status: int
    body: bytes
    at: float  # seconds since the load began


@dataclass
class Recorder:
    """Thread-safe tallies of one phase."""

    began: float = field(default_factory=time.perf_counter)
    ops: dict[str, OpStats] = field(default_factory=dict)
    errors_5xx: list[ServerError5xx] = field(default_factory=list)
    total: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(  # noqa: PLR0913 - one answer, spelled out
        self,
        op: str,
        method: str,
        path: str,
        outcome: Answer | str,
        latency: float,
        problem: str | None,
    ) -> None:
        """``outcome``: the answer or the name of the exception; ``problem``: why the
        answer is not the expected one (None: expected)."""
        with self.lock:
            stats = self.ops.setdefault(op, OpStats(op))
            self.total += 1
            if isinstance(outcome, str):
                stats.statuses[outcome] += 1
            else:
                stats.statuses[str(outcome.status)] += 1
                if outcome.status >= 500:
                    self.errors_5xx.append(
                        ServerError5xx(
                            op,
                            method,
                            path,
                            outcome.status,
                            outcome.body[:BODY_CHARS],
                            time.perf_counter() - self.began,
                        )
                    )
            if problem is None:
                stats.latencies.append(latency)
            elif len(stats.unexpected) < FIRST_FAILURES:
                stats.unexpected.append(f"{method} {path[:120]}: {problem}")

    def unexpected(self) -> int:
        with self.lock:
            return sum(s.count - len(s.latencies) for s in self.ops.values())


# -- the shared state of the clients ----------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    serial: str
    issuer: str
    ocsp_get: str  # path of a GET request (SHA-1 CertID, RFC 5019)
    ocsp_post: bytes  # DER body of a POST request (SHA-256 CertID)


@dataclass(frozen=True)
class OfficerAccount:
    name: str
    password: str
    secret: str


@dataclass
class World:
    """What the clients share: proofs and certificates made so far, the officers."""

    port: int
    token: str
    issuers: dict[str, x509.Certificate]
    legal_proofs: list[str]
    credentials: list[str]  # seal-lcp SCAL1, never revoked: signHash signs with them
    officers: list[OfficerAccount]
    proofs: list[str] = field(default_factory=list)
    issued: list[Issued] = field(default_factory=list)
    revocable: list[Issued] = field(default_factory=list)
    created_201: int = 0  # certificates answered 201, all phases
    revoked_200: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Officer logins: one every `login_interval` s, each account once per TOTP step.
    login_interval: float = 3.0
    next_login: float = 0.0
    officer_index: int = 0
    last_step: dict[str, int] = field(default_factory=dict)

    def api_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}

    def add_certificate(self, body: dict[str, Any], *, revocable: bool = True) -> Issued:
        cert = x509.load_pem_x509_certificate(body["certificate"].encode())
        issuer = self.issuers[body["issuer"]]
        sha1 = ocsp_der(cert, issuer, hashes.SHA1())  # noqa: S303 - the CertID RFC 5019 asks
        entry = Issued(
            body["serial"],
            body["issuer"],
            "/ocsp/" + base64.b64encode(sha1).decode(),
            ocsp_der(cert, issuer, hashes.SHA256()),
        )
        with self.lock:
            self.created_201 += 1
            self.issued.append(entry)
            if revocable:
                self.revocable.append(entry)
        return entry

    def claim_login(self) -> tuple[OfficerAccount, int] | None:
        """An account whose turn has come and that has not logged in during this TOTP
        step, with the step; None if no login is due."""
        with self.lock:
            if time.monotonic() < self.next_login:
                return None
            step = int(time.time()) // TOTP_STEP
            for _ in range(len(self.officers)):
                account = self.officers[self.officer_index]
                self.officer_index = (self.officer_index + 1) % len(self.officers)
                if self.last_step.get(account.name, -1) < step:
                    self.last_step[account.name] = step
                    self.next_login = time.monotonic() + self.login_interval
                    return account, step
            self.next_login = time.monotonic() + 1.0
            return None


def ocsp_der(
    cert: x509.Certificate, issuer: x509.Certificate, algorithm: hashes.HashAlgorithm
) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm)
    return builder.build().public_bytes(serialization.Encoding.DER)


# -- one client -------------------------------------------------------------------------------

Check = Callable[[Answer], str | None]  # why an answer is wrong, or None


def expect(status: int, extra: Check | None = None) -> Check:
    def check(answer: Answer) -> str | None:
        if answer.status != status:
            text = answer.body[:300].decode(errors="replace")
            return f"HTTP {answer.status} (expected {status}): {text}"
        return extra(answer) if extra is not None else None

    return check


def der_starting(prefix: bytes, what: str) -> Check:
    def check(answer: Answer) -> str | None:
        return None if starts_with(answer.body, prefix) else f"not {what}: {answer.body[:60]!r}"

    return check


class Client:
    """One simulated client: a keep-alive connection and a random draw of requests."""

    def __init__(self, world: World, recorder: Recorder, rng: random.Random) -> None:
        self.world = world
        self.recorder = recorder
        self.rng = rng
        self.conn = Connection(world.port)

    def send(  # noqa: PLR0913 - one request, spelled out
        self,
        op: str,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        check: Check,
    ) -> Answer | None:
        """The answer if it is the expected one, else None (recorded either way)."""
        began = time.perf_counter()
        try:
            answer = self.conn.request(method, path, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            latency = time.perf_counter() - began
            self.recorder.record(op, method, path, type(exc).__name__, latency, str(exc))
            return None
        latency = time.perf_counter() - began
        try:
            problem = check(answer)
        except (ValueError, KeyError, TypeError) as exc:  # unreadable JSON, missing field
            problem = f"{type(exc).__name__}: {exc}: {answer.body[:200]!r}"
        self.recorder.record(op, method, path, answer, latency, problem)
        return answer if problem is None else None

    def api(self, op: str, method: str, path: str, body: Any, check: Check) -> Answer | None:
        data = json.dumps(body).encode() if body is not None else None
        return self.send(op, method, path, data, self.world.api_headers(), check)

    # -- the requests of the mix --

    def proof(self) -> bool:
        def verified(a: Answer) -> str | None:
            return None if a.json()["status"] == "verified" else f"status {a.json()['status']}"

        answer = self.api(
            "identity proof (delegated)", "POST", PROOF_PATH, NATURAL, expect(201, verified)
        )
        if answer is not None:
            with self.world.lock:
                self.world.proofs.append(str(answer.json()["id"]))
        return True

    def issue_csr(self) -> bool:
        with self.world.lock:
            proof = self.rng.choice(self.world.proofs)
        body = {"profile": "person-lcp", "identity_proof": proof, "csr": csr_pem(cn="Mixed")}
        answer = self.api("issue person-lcp (CSR)", "POST", ISSUE_PATH, body, expect(201))
        if answer is not None:
            self.world.add_certificate(answer.json())
        return True

    def issue_hsm(self) -> bool:
        def credential(a: Answer) -> str | None:
            return None if a.json().get("credential_id") else "no credential_id"

        proof = self.rng.choice(self.world.legal_proofs)
        body = {"profile": "seal-lcp", "identity_proof": proof}
        answer = self.api(
            "issue seal-lcp (HSM key)", "POST", ISSUE_PATH, body, expect(201, credential)
        )
        if answer is not None:
            self.world.add_certificate(answer.json())
        return True

    def revoke(self) -> bool:
        with self.world.lock:
            if not self.world.revocable:
                return False  # nothing to revoke yet: draw again
            entry = self.world.revocable.pop(self.rng.randrange(len(self.world.revocable)))
        path = f"{ISSUE_PATH}/{entry.serial}/revoke"

        def revoked(a: Answer) -> str | None:
            return None if a.json()["status"] == "revoked" else f"status {a.json()['status']}"

        reason = self.rng.choice(REASONS)
        if self.api("revoke", "POST", path, {"reason": reason}, expect(200, revoked)):
            with self.world.lock:
                self.world.revoked_200 += 1
        return True

    def get_certificate(self) -> bool:
        with self.world.lock:
            entry = self.rng.choice(self.world.issued)

        def same(a: Answer) -> str | None:
            return None if a.json()["serial"] == entry.serial else "another serial"

        path = f"{ISSUE_PATH}/{entry.serial}"
        self.send("GET certificate", "GET", path, None, self.world.api_headers(), expect(200, same))
        return True

    def sign_hash(self) -> bool:
        credential = self.rng.choice(self.world.credentials)
        hashes_b64 = [base64.b64encode(os.urandom(32)).decode() for _ in range(SIGN_BATCH)]
        body = {"credentialID": credential, "hashes": hashes_b64, "signAlgo": ECDSA_SHA256}

        def signed(a: Answer) -> str | None:
            got = len(a.json()["signatures"])
            return None if got == SIGN_BATCH else f"{got} signatures for {SIGN_BATCH} hashes"

        self.api(
            f"CSC signHash x{SIGN_BATCH}",
            "POST",
            "/csc/v2/signatures/signHash",
            body,
            expect(200, signed),
        )
        return True

    def timestamp(self) -> bool:
        der = tsa_query("sha256", nonce=secrets.randbits(63), cert_req=True)
        self.send(
            "TSA timestamp",
            "POST",
            "/tsa",
            der,
            {"Content-Type": QUERY},
            expect(200, der_starting(TSA_GRANTED, "granted")),
        )
        return True

    def ocsp_post(self) -> bool:
        with self.world.lock:
            entry = self.rng.choice(self.world.issued)
        headers = {"Content-Type": "application/ocsp-request"}
        self.send(
            "OCSP POST",
            "POST",
            "/ocsp",
            entry.ocsp_post,
            headers,
            expect(200, der_starting(OCSP_SUCCESSFUL, "successful")),
        )
        return True

    def ocsp_get(self) -> bool:
        with self.world.lock:
            entry = self.rng.choice(self.world.issued)
        self.send(
            "OCSP GET",
            "GET",
            entry.ocsp_get,
            None,
            {},
            expect(200, der_starting(OCSP_SUCCESSFUL, "successful")),
        )
        return True

    def crl(self) -> bool:
        name = self.rng.choice(("persons", "seals"))
        self.send("CRL fetch", "GET", f"/crl/{name}.crl", None, {}, expect(200))
        return True

    def officer_login(self, account: OfficerAccount, step: int) -> None:
        """The login page (anti-forgery cookie and field), password + TOTP, then a page
        of the officer UI with the session cookie."""

        def has_field(a: Answer) -> str | None:
            return None if CSRF_FIELD.search(a.body.decode(errors="replace")) else "no token"

        page = self.send(
            "officer login page", "GET", "/ra/admin/login", None, {}, expect(200, has_field)
        )
        if page is None:
            return
        cookies = page.cookies()
        match = CSRF_FIELD.search(page.body.decode(errors="replace"))
        assert match is not None  # has_field
        form = {
            "csrf_token": match.group(1),
            "name": account.name,
            "password": account.password,
            "code": pyotp.TOTP(account.secret, interval=TOTP_STEP).generate_otp(step),
        }
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()),
        }
        done = self.send(
            "officer login (password+TOTP)",
            "POST",
            "/ra/admin/login",
            urlencode(form).encode(),
            headers,
            expect(303),
        )
        if done is None:
            return
        cookies = {k: v for k, v in {**cookies, **done.cookies()}.items() if v}
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
        self.send("officer queue page", "GET", "/ra/admin/queue", None, headers, expect(200))

    def run(self, mix: Sequence[tuple[str, int, Callable[[Client], bool]]], end: float) -> None:
        names, weights = [m[0] for m in mix], [m[1] for m in mix]
        actions = {m[0]: m[2] for m in mix}
        try:
            while time.monotonic() < end and self.recorder.total < MAX_REQUESTS:
                login = self.world.claim_login()
                if login is not None:
                    self.officer_login(*login)
                    continue
                while not actions[self.rng.choices(names, weights)[0]](self):
                    pass  # an action with nothing to act on yet: draw again
        finally:
            self.conn.close()


# What the clients draw, with the weights (out of their sum) of each kind of request.
MIX: tuple[tuple[str, int, Callable[[Client], bool]], ...] = (
    ("identity proof (delegated)", 10, Client.proof),
    ("issue person-lcp (CSR)", 10, Client.issue_csr),
    ("issue seal-lcp (HSM key)", 3, Client.issue_hsm),
    ("revoke", 4, Client.revoke),
    ("GET certificate", 12, Client.get_certificate),
    (f"CSC signHash x{SIGN_BATCH}", 10, Client.sign_hash),
    ("TSA timestamp", 15, Client.timestamp),
    ("OCSP POST", 10, Client.ocsp_post),
    ("OCSP GET", 10, Client.ocsp_get),
    ("CRL fetch", 6, Client.crl),
)
OFFICER_OPS = ("officer login page", "officer login (password+TOTP)", "officer queue page")


def run_phase(world: World, clients: int, seconds: float, seed: int) -> tuple[Recorder, float]:
    """``clients`` threads drawing from MIX for ``seconds``: the tallies and the wall time."""
    recorder = Recorder()
    end = time.monotonic() + seconds
    world.next_login = time.monotonic()
    threads = [
        threading.Thread(
            # Reproducible draws of requests, not secrets.
            target=Client(world, recorder, random.Random(seed * 1000 + i)).run,  # noqa: S311
            args=(MIX, end),
            name=f"client-{i}",
            daemon=True,  # an interrupted run must not wait for them
        )
        for i in range(clients)
    ]
    recorder.began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, end - time.monotonic()) + REQUEST_TIMEOUT + 10)
    wall = time.perf_counter() - recorder.began
    if any(t.is_alive() for t in threads):
        raise BenchmarkError("a client thread never finished")
    return recorder, wall


# -- setup ------------------------------------------------------------------------------------


def call_api(world: World, method: str, path: str, body: Any, status: int) -> Any:
    conn = Connection(world.port)
    try:
        data = json.dumps(body).encode() if body is not None else None
        answer = conn.request(method, path, data, world.api_headers())
    finally:
        conn.close()
    if answer.status != status:
        raise BenchmarkError(f"{method} {path}: HTTP {answer.status}: {answer.body[:BODY_CHARS]!r}")
    return answer.json() if answer.headers.get_content_type() == "application/json" else answer


def fetch_der(port: int, path: str) -> bytes:
    conn = Connection(port)
    try:
        answer = conn.request("GET", path, None, {})
    finally:
        conn.close()
    if answer.status != 200:
        raise BenchmarkError(f"GET {path}: HTTP {answer.status}")
    return answer.body


def add_officers(home: Path, count: int) -> list[OfficerAccount]:
    """`sceau officer add --role ra-officer` ``count`` times, one after the other (SoftHSM2
    rewrites its token file at each login: see common.sign_loop)."""
    accounts = []
    for i in range(count):
        name = f"mixed-officer-{i:02d}"
        out = run_sceau("--home", home, "officer", "add", "--role", "ra-officer", name)
        password = re.search(r"password: (\S+)", out)
        uri = re.search(r"(otpauth://\S+)", out)
        if password is None or uri is None:
            raise BenchmarkError(f"sceau officer add printed no password or TOTP:\n{out}")
        secret = pyotp.parse_uri(uri.group(1)).secret
        accounts.append(OfficerAccount(name, password.group(1), secret))
    return accounts


def prepare(home: Path, port: int, token: str, officers: list[OfficerAccount]) -> World:
    """Issuers' certificates, proofs, approved legal proofs, credentials, certificates."""
    issuers = {
        name: x509.load_der_x509_certificate(fetch_der(port, f"/certs/{name}.crt"))
        for name in ("persons", "seals")
    }
    world = World(port, token, issuers, [], [], officers)
    for _ in range(2):
        proof = call_api(world, "POST", PROOF_PATH, LEGAL, 201)["id"]
        run_sceau("--home", home, "proof", "approve", proof, "--officer", "alice")
        world.legal_proofs.append(proof)
    for proof in world.legal_proofs:
        body = {"profile": "seal-lcp", "identity_proof": proof}
        issued = call_api(world, "POST", ISSUE_PATH, body, 201)
        world.add_certificate(issued, revocable=False)
        world.credentials.append(str(issued["credential_id"]))
    for _ in range(SETUP_PROOFS):
        world.proofs.append(call_api(world, "POST", PROOF_PATH, NATURAL, 201)["id"])
    for i in range(SETUP_CERTIFICATES):
        body = {"profile": "person-lcp", "identity_proof": world.proofs[i % SETUP_PROOFS]}
        body["csr"] = csr_pem(cn="Mixed")
        world.add_certificate(call_api(world, "POST", ISSUE_PATH, body, 201))
    return world


# -- CPU --------------------------------------------------------------------------------------


def group_cpu(leader: int | None) -> float:
    """CPU seconds (user + system) of ``leader``, its live children and those it reaped
    (PostgreSQL: the postmaster and its backends, of open and of closed connections)."""
    if leader is None:
        return 0.0
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = stat.read_text()
            rest = raw[raw.rindex(")") + 2 :].split()
            if int(stat.parent.name) == leader:
                # Its own time and that of the children it reaped (closed connections).
                total += sum(int(v) for v in rest[11:15]) / tick
            elif int(rest[1]) == leader:
                total += (int(rest[11]) + int(rest[12])) / tick
    return total


def postmaster_pid(cluster: PgCluster | None) -> int | None:
    if cluster is None:
        return None
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((cluster.datadir / "postmaster.pid").read_text().split()[0])
    return None


@dataclass
class Cpu:
    wall: float
    server: dict[int, float]  # by process of the server's group
    server_master: int | None
    postgres: float
    client: float
    machine: float

    @property
    def others(self) -> float:
        return max(0.0, self.machine - sum(self.server.values()) - self.postgres - self.client)


def measured(
    server: SceauServer, pg: int | None, run: Callable[[], tuple[Recorder, float]]
) -> tuple[Recorder, Cpu]:
    server0, pg0 = server.cpu_seconds(), group_cpu(pg)
    client0, machine0 = time.process_time(), machine_busy_seconds()
    recorder, wall = run()
    server1 = server.cpu_seconds()
    cpu = Cpu(
        wall,
        {pid: server1[pid] - server0.get(pid, 0.0) for pid in server1},
        server.pgid,
        group_cpu(pg) - pg0,
        time.process_time() - client0,
        machine_busy_seconds() - machine0,
    )
    return recorder, cpu


# -- invariants -------------------------------------------------------------------------------


@dataclass
class Invariant:
    name: str
    ok: bool
    detail: str


def invariants(home: Path, world: World, rows_before: int) -> list[Invariant]:
    db = Database(load_config(home).database.url)
    try:
        with db.read() as session:
            statuses = dict(
                session.execute(
                    select(Certificate.status, func.count()).group_by(Certificate.status)
                ).all()
            )
            pairs = session.execute(select(Certificate.issuer_id, Certificate.serial)).all()
            revoked = set(
                session.scalars(select(Certificate.serial).where(Certificate.status == "revoked"))
            )
            issued_or_revoked = set(
                session.scalars(
                    select(Certificate.serial).where(Certificate.status.in_(("issued", "revoked")))
                )
            )
            events: dict[str, Counter[str]] = {}
            for action in ("certificate.revoked", "certificate.issued"):
                rows = session.execute(
                    select(AuditEvent.serial, func.count())
                    .where(AuditEvent.action == action)
                    .group_by(AuditEvent.serial)
                ).all()
                events[action] = Counter({str(serial): n for serial, n in rows})
    finally:
        db.dispose()
    out = []
    reserved = statuses.get("reserved", 0)
    out.append(Invariant("no reserved certificate row", reserved == 0, f"{reserved} reserved"))
    serials = [s for _, s in pairs]
    unique = len(set(pairs)) == len(pairs) and len(set(serials)) == len(serials)
    out.append(
        Invariant(
            "serials unique",
            unique,
            f"{len(pairs)} rows, {len(set(pairs))} distinct (issuer, serial), "
            f"{len(set(serials))} distinct serials",
        )
    )
    per_revoked = events["certificate.revoked"]
    wrong = {s: per_revoked.get(s, 0) for s in revoked if per_revoked.get(s, 0) != 1}
    strays = set(per_revoked) - revoked
    out.append(
        Invariant(
            "one certificate.revoked event per revoked certificate",
            not wrong and not strays,
            f"{len(revoked)} revoked rows, {sum(per_revoked.values())} events"
            + (f"; not exactly one: {dict(list(wrong.items())[:5])}" if wrong else "")
            + (f"; events of unrevoked serials: {sorted(strays)[:5]}" if strays else ""),
        )
    )
    per_issued = events["certificate.issued"]
    wrong = {s: per_issued.get(s, 0) for s in issued_or_revoked if per_issued.get(s, 0) != 1}
    out.append(
        Invariant(
            "one certificate.issued event per certificate",
            not wrong,
            f"{len(issued_or_revoked)} certificates, {sum(per_issued.values())} events"
            + (f"; not exactly one: {dict(list(wrong.items())[:5])}" if wrong else ""),
        )
    )
    new_rows = sum(statuses.values()) - rows_before
    out.append(
        Invariant(
            "rows = 201 answers, revoked rows = 200 answers",
            new_rows == world.created_201 and len(revoked) == world.revoked_200,
            f"{new_rows} new rows / {world.created_201} answered 201; "
            f"{len(revoked)} revoked / {world.revoked_200} answered 200 "
            f"(by status: {dict(sorted(statuses.items()))})",
        )
    )
    began = time.perf_counter()
    done = subprocess.run(
        [str(SCEAU), "--home", str(home), "audit", "verify"],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    said = (done.stdout.strip().splitlines() or ["(nothing printed)"])[-1]
    if done.returncode != 0:
        said = (done.stdout + done.stderr).strip()[-BODY_CHARS:]
    out.append(
        Invariant(
            "sceau audit verify exits 0",
            done.returncode == 0,
            f"exit {done.returncode} in {time.perf_counter() - began:.1f} s: {said}",
        )
    )
    return out


def certificate_rows(home: Path) -> int:
    db = Database(load_config(home).database.url)
    try:
        with db.read() as session:
            return int(session.scalar(select(func.count()).select_from(Certificate)) or 0)
    finally:
        db.dispose()


# -- the report -------------------------------------------------------------------------------


def ms(values: list[float], fraction: float) -> str:
    return f"{percentile(values, fraction) * 1000:.1f}" if values else "-"


def print_ops(recorder: Recorder, wall: float) -> None:
    names = [m[0] for m in MIX] + list(OFFICER_OPS)
    header = (
        f"{'request':<31} {'count':>7} {'rate/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'2xx':>6} {'3xx':>5} {'4xx':>5} {'5xx':>5} {'error':>5} {'unexp':>5}"
    )
    print(header)
    print("-" * len(header))
    total: Counter[str] = Counter()
    for name in names + sorted(set(recorder.ops) - set(names)):
        stats = recorder.ops.get(name, OpStats(name))
        classes = stats.classes()
        total.update(classes)
        lat = sorted(stats.latencies)
        print(
            f"{name:<31} {stats.count:>7} {stats.count / wall:>8.1f} {ms(lat, 0.5):>8} "
            f"{ms(lat, 0.99):>8} {classes['2xx']:>6} {classes['3xx']:>5} {classes['4xx']:>5} "
            f"{classes['5xx']:>5} {classes['error']:>5} {stats.count - len(lat):>5}"
        )
    print("-" * len(header))
    all_lat = sorted(x for s in recorder.ops.values() for x in s.latencies)
    print(
        f"{'total':<31} {recorder.total:>7} {recorder.total / wall:>8.1f} "
        f"{ms(all_lat, 0.5):>8} {ms(all_lat, 0.99):>8} {total['2xx']:>6} {total['3xx']:>5} "
        f"{total['4xx']:>5} {total['5xx']:>5} {total['error']:>5} {recorder.unexpected():>5}"
    )
    print("(latency: of the expected answers; unexp: answers not the expected status/content)")


def print_5xx(recorders: dict[str, Recorder], log_path: Path, log_size: int) -> int:
    errors = [(phase, e) for phase, r in recorders.items() for e in r.errors_5xx]
    print()
    banner = f"5xx ANSWERS: {len(errors)}"
    if not errors:
        print(f"==> {banner} (must be 0: OK) <==")
        return 0
    print("!" * 78)
    print(f"!!! {banner} (must be 0) !!!")
    print("!" * 78)
    by_path = Counter(
        f"{e.method} {re.sub(r'/[0-9A-Fa-f]{16,}', '/<id>', e.path)}" for _, e in errors
    )
    for where, n in by_path.most_common():
        print(f"  {n:>5} x {where}")
    for phase, e in errors[:FIRST_FAILURES]:
        print(
            f"  [{phase} +{e.at:.2f} s] {e.op}: {e.method} {e.path[:200]} -> HTTP {e.status}\n"
            f"      body: {e.body.decode(errors='replace')}"
        )
    lines = log_path.read_bytes()[:log_size].decode(errors="replace").splitlines()
    first = next((i for i, line in enumerate(lines) if "Traceback" in line), None)
    if first is not None:
        print("  server log around the first traceback:")
        for line in lines[max(0, first - 5) : first + 60]:
            print(f"    {line}")
    return len(errors)


def print_cpu(cpu: Cpu, backend: str) -> None:
    server = sum(cpu.server.values())
    workers = sorted((c for p, c in cpu.server.items() if p != cpu.server_master), reverse=True)
    w = cpu.wall
    print(
        f"cpu (timed phase) server {server:.1f} s = {server / w:.2f} cores (per worker "
        f"{', '.join(f'{c:.1f}' for c in workers)} s), "
        + (
            f"postgres {cpu.postgres:.1f} s = {cpu.postgres / w:.2f} cores, "
            if backend == "postgresql"
            else ""
        )
        + f"this load process {cpu.client:.1f} s = {cpu.client / w:.2f} cores, "
        f"other processes {cpu.others / w:.2f} cores, machine busy {cpu.machine / w:.2f} cores "
        f"of {len(os.sched_getaffinity(0))}"
    )


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = arguments(__doc__)
    parser.add_argument(
        "--seconds", type=bounded(float, 1, 3600), default=60.0, help="timed load (default 60)"
    )
    parser.add_argument(
        "--clients", type=bounded(int, 1, 256), default=16, help="concurrent clients (default 16)"
    )
    parser.add_argument(
        "--sqlite", action="store_true", help="the home's own SQLite file, not PostgreSQL"
    )
    parser.add_argument(
        "--officers",
        type=bounded(int, 1, 60),
        default=10,
        help="RA officer accounts taking turns to log in, each once per 30 s (default 10)",
    )
    parser.add_argument("--seed", type=int, default=1, help="of the clients' draws (default 1)")
    return parser.parse_args(argv)


@dataclass
class Run:
    backend: str
    world: World
    warm: Recorder
    warm_wall: float
    timed: Recorder
    cpu: Cpu
    log_size: int
    retries: int


def load_phases(
    args: argparse.Namespace,
    home: Path,
    log_path: Path,
    cluster: PgCluster | None,
    rows_before: int,
) -> Run:
    token = add_client(home, "person-lcp", "seal-lcp")
    print(f"creating {args.officers} officer accounts", flush=True)
    officers = add_officers(home, args.officers)
    server = SceauServer(home, log_path, workers=WORKERS, threads=THREADS)
    try:
        server.start()
        server.wait_healthy()
        print(f"server up on {HOST}:{server.port} ({WORKERS} workers x {THREADS} threads)")
        world = prepare(home, server.port, token, officers)
        world.login_interval = TOTP_STEP / args.officers
        print(
            f"{len(world.proofs)} proofs, {len(world.issued)} certificates, "
            f"{len(world.credentials)} seal-lcp credentials ready; warm-up {WARMUP_SECONDS:g} s",
            flush=True,
        )
        warm, warm_wall = run_phase(world, args.clients, WARMUP_SECONDS, args.seed + 1)
        print(f"timed phase: {args.seconds:g} s, {args.clients} clients", flush=True)
        timed, cpu = measured(
            server,
            postmaster_pid(cluster),
            lambda: run_phase(world, args.clients, args.seconds, args.seed),
        )
    finally:
        log_size = log_path.stat().st_size if log_path.exists() else 0
        server.stop()
    text = log_path.read_bytes()[:log_size].decode(errors="replace")
    backend = "sqlite" if cluster is None else "postgresql"
    return Run(backend, world, warm, warm_wall, timed, cpu, log_size, text.count(RETRY_LOG))


def benchmark(args: argparse.Namespace, workdir: Path) -> int:
    home, log_path = workdir / "home", workdir / "server.log"
    load_before = os.getloadavg()
    cluster: PgCluster | None = None
    try:
        extra: list[str] = []
        if not args.sqlite:
            cluster = start_cluster(workdir)
            extra = ["--database-url", cluster.create_database("sceau_mixed")]
            print(f"PostgreSQL cluster in {cluster.root} (Unix socket only)", flush=True)
        print(f"home {home}; server log {log_path}", flush=True)
        init_home(home, *extra)
        rows_before = certificate_rows(home)
        run = load_phases(args, home, log_path, cluster, rows_before)
        load_after = os.getloadavg()
        print("checking invariants", flush=True)
        checks = invariants(home, run.world, rows_before)
    finally:
        if cluster is not None:
            cluster.stop()

    # The server and the database are gone: the baseline has the CPU to itself.
    print("raw HSM signing rate of the issuing key, 1 and 2 processes", flush=True)
    key = SigningKey(load_config(home).hsm, CA_KEY, CA_SCHEME)
    count, elapsed = sign_loop(key, HSM_SECONDS)
    sign_1p = count / elapsed
    sign_2p = parallel_sign_rate(key, WORKERS, HSM_SECONDS)
    load_end = os.getloadavg()
    return report(
        args, run, checks, (sign_1p, sign_2p), (load_before, load_after, load_end), log_path
    )


def report(  # noqa: PLR0913 - every figure of the run
    args: argparse.Namespace,
    run: Run,
    checks: list[Invariant],
    signing: tuple[float, float],
    loads: tuple[tuple[float, float, float], ...],
    log_path: Path,
) -> int:
    timed, cpu, world = run.timed, run.cpu, run.world
    sign_1p, sign_2p = signing
    print()
    print("== Sceau mixed-load benchmark ==")
    for line in machine_info(detailed=True):
        print(line)
    print(
        f"setup            {run.backend}, `sceau serve` {WORKERS} workers x {THREADS} threads, "
        f"{args.clients} clients (keep-alive, reopened every {RECONNECT_EVERY} requests), "
        f"{args.seconds:g} s timed after a {WARMUP_SECONDS:g} s warm-up, seed {args.seed}"
    )
    weights = sum(m[1] for m in MIX)
    print(
        "mix (draw share) "
        + ", ".join(f"{name} {w / weights:.0%}" for name, w, _ in MIX)
        + f"; plus officer logins paced 1 every {TOTP_STEP / args.officers:.1f} s "
        f"({args.officers} accounts, each once per {TOTP_STEP} s TOTP step)"
    )
    print(
        "load average     "
        + "; ".join(
            f"{when} {' '.join(f'{v:.2f}' for v in load)}"
            for when, load in zip(("before", "after load", "at the end"), loads, strict=True)
        )
    )
    print()
    print_ops(timed, cpu.wall)
    print(f"wall time        {cpu.wall:.2f} s")
    print_cpu(cpu, run.backend)
    issued = sum(
        len(timed.ops.get(n, OpStats(n)).latencies)
        for n in ("issue person-lcp (CSR)", "issue seal-lcp (HSM key)")
    )
    print(
        f"baseline         issuing key {CA_KEY} (P-384) raw signatures: {sign_1p:,.0f}/s in "
        f"1 process, {sign_2p:,.0f}/s in {WORKERS} (KeyStore.sign_digest, {HSM_SECONDS:g} s, "
        "server stopped)"
    )
    print(
        "ratios           all requests/s / raw 1-process = "
        f"{timed.total / cpu.wall / sign_1p:.4f}; "
        f"certificates/s / raw 1-process = {issued / cpu.wall / sign_1p:.4f}"
    )
    if run.backend == "postgresql":
        print(f"retried txns     {run.retries} '{RETRY_LOG}' in the server log")
    warm_5xx = len(run.warm.errors_5xx)
    print(
        f"warm-up          {run.warm.total} requests in {run.warm_wall:.1f} s, "
        f"{run.warm.unexpected()} unexpected, {warm_5xx} 5xx"
    )
    for phase, recorder in (("warm-up", run.warm), ("timed", timed)):
        for stats in recorder.ops.values():
            for line in stats.unexpected:
                print(f"  unexpected ({phase}) {stats.name}: {line}")
    n5xx = print_5xx({"warm-up": run.warm, "timed": timed}, log_path, run.log_size)
    alarms = server_alarms(log_path, run.log_size, WORKERS)
    print_alarms(alarms)
    print()
    print(
        f"invariants ({world.created_201} certificates answered 201, {world.revoked_200} "
        "revocations answered 200, all phases):"
    )
    for check in checks:
        print(f"  {'OK  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    broken = [c.name for c in checks if not c.ok]
    unexpected = run.warm.unexpected() + timed.unexpected()
    print()
    print(
        f"RESULT backend={run.backend} seconds={cpu.wall:.1f} clients={args.clients} "
        f"requests={timed.total} rps={timed.total / cpu.wall:.1f} "
        f"certs_per_s={issued / cpu.wall:.1f} 5xx={n5xx} unexpected={unexpected} "
        f"invariants={'ok' if not broken else 'broken'} "
        f"server_cores={sum(cpu.server.values()) / cpu.wall:.2f} hsm_sign_1p={sign_1p:.0f} "
        f"hsm_sign_{WORKERS}p={sign_2p:.0f} loadavg={loads[0][0]:.2f}"
    )
    return 1 if n5xx or unexpected or broken else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(benchmark, parse_args(argv), "mixed")


if __name__ == "__main__":
    sys.exit(main())
