"""Live homes for the tests that attack a running `sceau serve` (tests/test_concurrency.py,
tests/test_faults.py, tests/test_bad_input.py): a home made by `sceau init`'s code, the
server started on it with 2 workers x 4 threads, and the same home opened in the test
process (its database and token) to create officers and clients and to check invariants.

HTTP goes over loopback with ``http.client``, one connection per request, so that
concurrent requests are concurrent connections, spread by the kernel over the workers.
Officers log in the way a browser does: the login page's anti-forgery cookie and field,
then the session cookie (:class:`Browser`).

`sceau serve` runs gunicorn with ``core.http.worker.ProblemThreadWorker``, which answers
unparsable HTTP with problem+json and gives a connection a thread only once its header
block is in: tests/test_bad_input.py checks both through the server.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import re
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import pyotp
from sqlalchemy import func, select

from core.accounts.clients import create_client
from core.accounts.officers import Role, create_officer
from core.config import SceauConfig
from core.store.models import AuditEvent, Certificate, IdentityProof
from pki.context import PkiContext
from registration.decisions import approve_proof
from tests.support.builders import LEGAL, NATURAL, csr_pem
from tests.support.clients import LOOPBACK
from tests.support.judges import BIN
from tests.support.pki import make_home
from tests.support.postgres import PgCluster
from tests.support.servers import SceauServer

PROBLEM_JSON = "application/problem+json"
WORKERS, THREADS = 2, 4  # what the issue's attacks ran against
ALL_PROFILES = ("person-lcp", "person-qcp-n-qscd", "seal-lcp", "seal-qcp-l-qscd")
ECDSA_SHA256 = "1.2.840.10045.4.3.2"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]*)"')

T = TypeVar("T")


# -- HTTP -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, headers (names in lower case; Set-Cookie kept apart, it
    repeats) and body."""

    status: int
    headers: dict[str, str]
    body: bytes
    cookies: tuple[str, ...] = ()

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").partition(";")[0].strip()

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def problem_type(self) -> str | None:
        """The RFC 9457 ``type`` of a problem+json answer, else None."""
        if self.media_type != PROBLEM_JSON:
            return None
        return str(self.json().get("type"))

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def __str__(self) -> str:  # what an assertion message shows
        return f"HTTP {self.status} {self.media_type}: {self.text[:400]}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def authorize_body(credential_id: str, digests: Sequence[bytes], otp: str) -> dict[str, Any]:
    return {
        "credentialID": credential_id,
        "numSignatures": len(digests),
        "hashes": [b64(d) for d in digests],
        "OTP": otp,
    }


def sign_body(
    credential_id: str, digests: Sequence[bytes], sad: str | None = None
) -> dict[str, Any]:
    body = {"credentialID": credential_id, "hashes": [b64(d) for d in digests]}
    return {**body, "signAlgo": ECDSA_SHA256, **({"SAD": sad} if sad else {})}


def request(  # noqa: PLR0913 - one HTTP request, spelled out
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    timeout: float = 60,
) -> Answer:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        cookies = tuple(resp.msg.get_all("Set-Cookie") or ())
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data, cookies)
    finally:
        conn.close()


def raw_exchange(port: int, data: bytes, *, timeout: float = 10) -> bytes:
    """Send ``data`` as is on a fresh connection; everything the server sends back until it
    closes (or ``timeout``)."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def parse_raw(data: bytes) -> Answer:
    """A raw HTTP/1.1 answer (as :func:`raw_exchange` returns it) as an Answer."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(status, headers, body)


def at_once(calls: Sequence[Callable[[], T]], *, timeout: float = 120) -> list[T]:
    """Run every call in its own thread, all released together by a barrier; their
    results in order (the first exception is raised after all have finished)."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], T]) -> None:
        try:
            barrier.wait(timeout)
            results[index] = call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, c), daemon=True) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    if errors:
        raise errors[0]
    assert all(not t.is_alive() for t in threads), "a concurrent request never finished"
    return results


# -- the server -----------------------------------------------------------------------------


@dataclass
class LiveServer(SceauServer):
    """`sceau serve`, whose gunicorn runs ProblemThreadWorker (sceau/cli/serve.py)."""

    def worker_pids(self) -> list[int]:
        """The gunicorn workers: the processes of the server's group but its master."""
        return sorted(pid for pid in self.cpu_seconds() if pid != self.pgid)


# -- a live home ----------------------------------------------------------------------------


@dataclass
class Person:
    """An officer account and what its owner holds."""

    name: str
    password: str
    secret: str

    def code(self, offset_steps: int = 0) -> str:
        when = datetime.now(UTC) + timedelta(seconds=30 * offset_steps)
        return pyotp.TOTP(self.secret).at(when)


@dataclass
class LiveHome:
    backend: str
    config: SceauConfig
    ctx: PkiContext  # the same database and token, opened in the test process
    server: LiveServer
    token: str  # a platform client allowed every profile
    answers: list[Answer] = field(default_factory=list)  # every answer, for the 5xx check
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def home(self) -> Path:
        return self.config.home

    @property
    def port(self) -> int:
        return self.server.port

    # -- HTTP --

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        timeout: float = 60,
    ) -> Answer:
        answer = request(self.port, method, path, body, headers, timeout=timeout)
        with self._lock:
            self.answers.append(answer)
        return answer

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """A JSON API call with the platform's token (or ``token``)."""
        sent = {"Authorization": f"Bearer {token or self.token}", **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        return self.call(method, path, data, sent)

    def server_errors(self) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if a.status >= 500]

    # -- what a platform does --

    def proof(self, body: dict[str, Any] | None = None, *, token: str | None = None) -> str:
        answer = self.api("POST", "/ra/api/v1/identity-proofs", body or NATURAL, token=token)
        assert answer.status == 201, answer
        return str(answer.json()["id"])

    def approve(self, proof_id: str, *officers: str) -> None:
        """Officers' approvals through the Python API, on the server's database."""
        for officer in officers:
            approve_proof(
                self.ctx.db, proof_id, officer, now=datetime.now(UTC), max_age=timedelta(days=30)
            )

    def issue(
        self, profile: str = "person-lcp", proof_id: str | None = None, *, csr: bool = True
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"profile": profile, "identity_proof": proof_id or self.proof()}
        if csr:
            body["csr"] = csr_pem()
        answer = self.api("POST", "/ca/api/v1/certificates", body)
        assert answer.status == 201, answer
        return dict(answer.json())

    def seal_credential(self) -> str:
        """A seal-lcp credential (SCAL1: the platform's token signs with it)."""
        proof = self.proof(LEGAL)
        self.approve(proof, "alice")
        return str(self.issue("seal-lcp", proof, csr=False)["credential_id"])

    def qualified_credential(self) -> str:
        """A person-qcp-n-qscd credential (SCAL2: a SAD from the owner's OTP signs)."""
        proof = self.proof({**NATURAL, "method": "face-to-face"})
        self.approve(proof, "alice")
        return str(self.issue("person-qcp-n-qscd", proof, csr=False)["credential_id"])

    def send_otp(self, credential_id: str) -> str:
        """credentials/sendOTP, then the code from the file outbox, as its owner reads it."""
        sent = self.api("POST", "/csc/v2/credentials/sendOTP", {"credentialID": credential_id})
        assert sent.status == 200, sent
        return (self.home / self.config.signing.otp_outbox / f"{credential_id}.otp").read_text()

    def client(self, *profiles: str) -> str:
        return create_client(
            self.ctx.db,
            self.ctx.profiles,
            f"live-{secrets.token_hex(4)}",
            list(profiles or ALL_PROFILES),
            now=datetime.now(UTC),
            actor="test",
        )

    def officer(self, role: Role = Role.RA_OFFICER) -> Person:
        made = create_officer(
            self.ctx.db,
            self.ctx.sealer,
            f"{role.value.split('-')[0]}-{secrets.token_hex(3)}",
            role,
            now=datetime.now(UTC),
            actor="test",
        )
        return Person(made.name, made.password, pyotp.parse_uri(made.provisioning_uri).secret)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``sceau --home HOME ARGS`` as an operator runs it, on the server's home."""
        return subprocess.run(
            [str(BIN / "sceau"), "--home", str(self.home), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            env={**os.environ, **(self.server.env or {})},
        )

    # -- what the database says --

    def events(self, action: str, **details: str) -> list[AuditEvent]:
        """Audit events of ``action`` whose details hold ``details``, in chain order."""
        with self.ctx.db.read() as session:
            rows = session.scalars(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
            ).all()
        return [e for e in rows if all(e.details.get(k) == v for k, v in details.items())]

    def events_of(self, actor: str) -> list[AuditEvent]:
        with self.ctx.db.read() as session:
            return list(
                session.scalars(
                    select(AuditEvent).where(AuditEvent.actor == actor).order_by(AuditEvent.seq)
                ).all()
            )

    def certificate(self, serial: str) -> Certificate:
        with self.ctx.db.read() as session:
            row = session.scalars(select(Certificate).where(Certificate.serial == serial)).one()
        return row  # type: ignore[no-any-return]

    def proof_row(self, proof_id: str) -> IdentityProof:
        with self.ctx.db.read() as session:
            row = session.get(IdentityProof, proof_id)
        assert row is not None
        return row

    def count_certificates(self, status: str) -> int:
        with self.ctx.db.read() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(Certificate)
                    .where(Certificate.status == status)
                )
                or 0
            )


@contextlib.contextmanager
def live_home(
    base: Path, softhsm_conf: Path, database_url: str | None, *, backend: str, label: str
) -> Iterator[LiveHome]:
    """A home in ``base``/home on ``database_url`` (None: its own SQLite file), `sceau serve`
    on it (2 x 4), healthy inside the block, stopped after."""
    config, _ = make_home(base / "home", softhsm_conf, database_url, label)
    ctx = PkiContext.open(config)
    try:
        token = create_client(
            ctx.db, ctx.profiles, "live", list(ALL_PROFILES), now=datetime.now(UTC), actor="test"
        )
        server = LiveServer(
            config.home,
            base / "server.log",
            workers=WORKERS,
            threads=THREADS,
            env={"SOFTHSM2_CONF": str(config.home / "softhsm2.conf")},
        )
        with server:
            yield LiveHome(backend, config, ctx, server, token)
    finally:
        ctx.keys.close()
        ctx.db.dispose()


# -- officers in a browser's shoes ----------------------------------------------------------


@dataclass
class Browser:
    """Cookies kept from one answer to the next, like a browser on one site."""

    live: LiveHome
    cookies: dict[str, str] = field(default_factory=dict)
    # One officer may send several requests at once (the concurrency tests).
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        with self._lock:
            if self.cookies:
                headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    def _keep(self, answer: Answer) -> Answer:
        for header in answer.cookies:
            jar: SimpleCookie = SimpleCookie()
            jar.load(header)
            with self._lock:
                for name, morsel in jar.items():
                    if morsel.value and morsel["max-age"] != "0":
                        self.cookies[name] = morsel.value
                    else:
                        self.cookies.pop(name, None)
        return answer

    def get(self, path: str) -> Answer:
        return self._keep(self.live.call("GET", path, headers=self._headers()))

    def post(self, path: str, form: dict[str, str]) -> Answer:
        headers = self._headers({"Content-Type": "application/x-www-form-urlencoded"})
        return self._keep(self.live.call("POST", path, urlencode(form).encode(), headers))

    def form_token(self, path: str) -> str:
        page = self.get(path)
        assert page.status == 200, page
        match = CSRF_FIELD.search(page.text)
        assert match, f"no csrf_token in {path}"
        return match.group(1)

    def login(
        self, person: Person, *, password: str | None = None, code: str | None = None
    ) -> Answer:
        """The officer UI's login form, sent (a fresh form each time): the answer."""
        token = self.form_token("/ra/admin/login")
        return self.post(
            "/ra/admin/login",
            {
                "csrf_token": token,
                "name": person.name,
                "password": person.password if password is None else password,
                "code": person.code() if code is None else code,
            },
        )


# -- the PostgreSQL server going away -------------------------------------------------------


def pg_ctl(cluster: PgCluster, *args: str) -> None:
    """``pg_ctl -D DATA ARGS`` as the cluster's user (waits for it to finish)."""
    argv = [str(cluster.bin_dir / "pg_ctl"), "-D", str(cluster.datadir), *args]
    if cluster.run_as is not None:
        argv = ["runuser", "-u", cluster.run_as, "--", *argv]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    done = subprocess.run(
        argv, cwd=cluster.root, env=env, capture_output=True, text=True, check=False, timeout=90
    )
    assert done.returncode == 0, done.stdout + done.stderr


def pg_stop(cluster: PgCluster) -> None:
    """Stop the server as an operator would (fast: every session is cut, data kept)."""
    pg_ctl(cluster, "-m", "fast", "-w", "-t", "60", "stop")


def pg_start(cluster: PgCluster) -> None:
    pg_ctl(cluster, "-l", str(cluster.log_file), "-w", "-t", "60", "start")


def wait_until(check: Callable[[], bool], *, timeout: float, every: float = 0.2) -> float:
    """Seconds until ``check()`` is true; AssertionError after ``timeout``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"not within {timeout} s"
        time.sleep(every)
    return time.monotonic() - started
