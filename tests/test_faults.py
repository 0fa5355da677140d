"""A database that goes away under a live `sceau serve` (2 workers x 4 threads), and comes
back (design.md, "Principles": Failure): every request gets 503 (problem+json with
Retry-After on the JSON APIs; OCSP tryLater; the TSA a TimeStampResp with systemFailure;
CSC its error object), never 500; nothing is half-written; once the database answers
again the same requests succeed within seconds, without restarting the server.

PostgreSQL: a cluster of this module's own is stopped as an operator stops it
(``pg_ctl stop -m fast``: every session cut) and started again. Also stopped in the middle
of a burst of issuances: each answer is 201 or 503, and every certificate row is issued
with its event or a reservation that ca.leftovers resolves.

SQLite: the tests run as root, and chmod does not stop root; a read-only file would not
stop the server's pooled connections either, which opened it read-write already. What
does stop every write, through descriptors already open, is the one thing a full disk
does: write(2) failing. ``RLIMIT_FSIZE`` lowered to one byte on the running workers
(prlimit(2), no privilege needed to lower it) makes every write past the first byte of any
file fail with EFBIG (Python ignores SIGXFSZ), which SQLite reports as it reports ENOSPC: a
failed write (SQLITE_IOERR/SQLITE_FULL, "disk I/O error"). Reads keep working, as they do
on a full disk. Raising the limit again is the disk freed. (A tmpfs filled to the brim
would be closer still, but SQLite's WAL rewrites pages it already holds, so some writes
would succeed; a held exclusive lock would make each request wait the 30 s busy timeout.)
The workers' own log writes fail meanwhile, so their log has a gap.
"""

from __future__ import annotations

import hashlib
import resource
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509 import ocsp
from sqlalchemy import func, select

from ca.leftovers import abandon_stale_reservations
from core.store.models import AuditEvent, Certificate, IdentityProof, Timestamp
from tests.support.builders import NATURAL, csr_pem
from tests.support.live import (
    WORKERS,
    Answer,
    Browser,
    LiveHome,
    Person,
    at_once,
    live_home,
    pg_start,
    pg_stop,
    sign_body,
    wait_until,
)
from tests.support.ocsp import OCSP_REQUEST, get_path, request_der
from tests.support.postgres import PgCluster, throwaway_cluster
from tests.support.tsa import QUERY, REPLY, TimeStampResp, failure_of, query

pytestmark = [pytest.mark.slow]

UNAVAILABLE = "urn:sceau:problem:unavailable"
RECOVERY_SECONDS = 15.0  # "within seconds"; measured well under one


# -- what is asked, and how each answer is judged -----------------------------------------


@dataclass
class Material:
    """What the probes need, made while the database answered."""

    live: LiveHome
    proof_id: str  # verified, delegated: issues again and again
    serial: str  # an issued certificate, fetched
    fresh: list[x509.Certificate]  # certificates never asked of OCSP nor revoked yet
    persons_ca: x509.Certificate
    credential_id: str  # seal-lcp: the platform's token signs
    officer: Person
    tsa_serials: list[int] = field(default_factory=list)  # tokens granted
    up: bool = True  # does the database answer (as far as the test made it)?
    logins: int = 0

    def take(self) -> x509.Certificate:
        return self.fresh.pop()


def _issue(m: Material) -> Answer:
    body = {"profile": "person-lcp", "identity_proof": m.proof_id, "csr": csr_pem()}
    return m.live.api("POST", "/ca/api/v1/certificates", body)


def _fetch_certificate(m: Material) -> Answer:
    return m.live.api("GET", f"/ca/api/v1/certificates/{m.serial}")


def _revoke(m: Material) -> Answer:
    serial = format(m.take().serial_number, "x")
    return m.live.api("POST", f"/ca/api/v1/certificates/{serial}/revoke", {"reason": "superseded"})


def _submit_proof(m: Material) -> Answer:
    return m.live.api("POST", "/ra/api/v1/identity-proofs", NATURAL)


def _fetch_proof(m: Material) -> Answer:
    return m.live.api("GET", f"/ra/api/v1/identity-proofs/{m.proof_id}")


def _crl(m: Material) -> Answer:
    return m.live.call("GET", "/crl/persons.crl")


def _ocsp_post(m: Material) -> Answer:
    _epochs_due(m)
    der = request_der(m.take(), m.persons_ca, nonce=secrets.token_bytes(16))
    return m.live.call("POST", "/ocsp", der, {"Content-Type": OCSP_REQUEST})


def _ocsp_get(m: Material) -> Answer:
    _epochs_due(m)
    return m.live.call("GET", get_path(request_der(m.take(), m.persons_ca)))


def _epochs_due(m: Material) -> None:
    """Wait until every worker's view of the revocation epochs is due for a re-read: the
    first OCSP request a worker gets reads them from the database (ocsp.cache.EpochWatch)."""
    time.sleep(m.live.config.ocsp.revocation_check_ms / 1000 + 0.05)


def _tsa(m: Material) -> Answer:
    answer = m.live.call("POST", "/tsa", query(), {"Content-Type": QUERY})
    if answer.status == 200 and _granted(answer):
        token = TimeStampResp.load(answer.body)["time_stamp_token"]
        tst = token["content"]["encap_content_info"]["content"].parsed
        m.tsa_serials.append(int(tst["serial_number"].native))
    return answer


def _csc_sign_hash(m: Material) -> Answer:
    digest = hashlib.sha256(secrets.token_bytes(8)).digest()
    return m.live.api("POST", "/csc/v2/signatures/signHash", sign_body(m.credential_id, [digest]))


def _officer_login(m: Material) -> Answer:
    # A wrong password while down (nothing can count it); the right one once back, with
    # the next step's code (the one before the outage used this step's: no replay).
    browser = Browser(m.live)
    if not m.up:
        return browser.login(m.officer, password="wrong")
    m.logins += 1
    return browser.login(m.officer, code=m.officer.code(m.logins - 1))


def _healthz(m: Material) -> Answer:
    return m.live.call("GET", "/healthz")


Probe = Callable[[Material], Answer]
PROBES: dict[str, Probe] = {
    "issue": _issue,
    "fetch-certificate": _fetch_certificate,
    "revoke": _revoke,
    "submit-proof": _submit_proof,
    "fetch-proof": _fetch_proof,
    "crl": _crl,
    "ocsp-post": _ocsp_post,
    "ocsp-get": _ocsp_get,
    "tsa": _tsa,
    "csc-sign-hash": _csc_sign_hash,
    "officer-login": _officer_login,
    "healthz": _healthz,
}
# What each answers when it works.
UP_STATUS = {
    "issue": 201,
    "submit-proof": 201,
    "officer-login": 303,
}
# SQLite with writes failing: what only reads keeps answering (an OCSP request with a
# nonce is signed for it alone; one without is stored pre-signed first: a write).
READS = {"fetch-certificate", "fetch-proof", "crl", "ocsp-post", "healthz"}
# Probes sent several times a round while the database is away, a moment apart: each TSA
# worker grants the one token whose record it queued before its record writer failed
# (tsa/records.py, batch mode), then refuses.
REPEAT = {"tsa": 4}


def check_unavailable(name: str, answer: Answer) -> None:
    """The answer of ``name`` when the database does not answer."""
    assert answer.status != 500, f"{name}: {answer}"
    if name == "healthz":  # liveness: the process answers, whatever its dependencies
        assert answer.status == 200, answer
    elif name in {"ocsp-post", "ocsp-get"}:
        assert answer.status == 503, f"{name}: {answer}"
        assert answer.media_type == "application/ocsp-response", answer
        status = ocsp.load_der_ocsp_response(answer.body).response_status
        assert status is ocsp.OCSPResponseStatus.TRY_LATER
    elif name == "tsa":
        assert answer.status == 200 and answer.media_type == REPLY, answer
        resp = TimeStampResp.load(answer.body)
        # Batch mode (the default): a worker answers the tokens whose records it queued
        # before its writer failed once (recorded later, check_nothing_half_written),
        # then systemFailure.
        if resp["status"]["status"].native != "granted":
            assert failure_of(resp) == "system_failure"
    elif name == "csc-sign-hash":
        assert answer.status == 503, f"{name}: {answer}"
        assert answer.json()["error"] == "temporarily_unavailable", answer
    elif name == "officer-login":  # a page, not an API: the error page, in HTML
        assert answer.status == 503 and answer.media_type == "text/html", answer
    else:
        assert answer.status == 503 and answer.problem_type == UNAVAILABLE, f"{name}: {answer}"
        assert int(answer.headers["retry-after"]) > 0, answer


def check_down(name: str, answers: list[Answer], *, reads_work: bool) -> None:
    for answer in answers:
        if reads_work and name in READS:  # reads do not need the disk to take anything
            check_working(name, answer)
        else:
            check_unavailable(name, answer)
    if name == "tsa":  # each worker grants at most one before its writer fails, then refuses
        assert len([a for a in answers if _granted(a)]) <= WORKERS, len(answers)


def _granted(answer: Answer) -> bool:
    return bool(TimeStampResp.load(answer.body)["status"]["status"].native == "granted")


def check_working(name: str, answer: Answer) -> None:
    assert answer.status == UP_STATUS.get(name, 200), f"{name}: {answer}"
    if name in {"ocsp-post", "ocsp-get"}:
        status = ocsp.load_der_ocsp_response(answer.body).response_status
        assert status is ocsp.OCSPResponseStatus.SUCCESSFUL
    if name == "tsa":
        assert _granted(answer)


# -- one outage ------------------------------------------------------------------------------


@dataclass
class Outage:
    before: dict[str, Any]  # what the database held when it went away
    after: dict[str, Any]  # ... and once it was back, before anything new was asked
    events: list[AuditEvent]  # appended from the outage to that moment
    healed_proof: str  # the proof whose submission answered 201 first
    down: dict[str, list[Answer]]  # each probe's answers while the database was away
    up: dict[str, Answer]  # each probe once it was back
    recovered_in: float  # seconds from "back" to the first write that worked
    material: Material


def material(live: LiveHome) -> Material:
    proof_id = live.proof()
    issued = at_once([live.issue] * 20)  # 3 probes take one each, 4 rounds, and retries
    fresh = [x509.load_pem_x509_certificate(c["certificate"].encode()) for c in issued]
    persons = live.call("GET", "/certs/persons.crt")
    assert persons.status == 200
    person = live.officer()
    return Material(
        live=live,
        proof_id=proof_id,
        serial=live.issue(proof_id=proof_id)["serial"],
        fresh=fresh,
        persons_ca=x509.load_der_x509_certificate(persons.body),
        credential_id=live.seal_credential(),
        officer=person,
    )


def run_outage(live: LiveHome, stop: Callable[[], None], start: Callable[[], None]) -> Outage:
    m = material(live)
    for name, probe in PROBES.items():  # everything works first
        check_working(name, probe(m))
    time.sleep(1.5)  # the jobs' reaction to the probes (CRL, OCSP) is over
    before = snapshot(live)
    workers = live.server.worker_pids()
    stop()
    m.up = False
    try:
        down: dict[str, list[Answer]] = {name: [] for name in PROBES}
        for _ in range(2):  # at once, then once every cache and background writer noticed
            for name, probe in PROBES.items():
                for _ in range(REPEAT.get(name, 1)):
                    down[name].append(probe(m))
                    if name in REPEAT:
                        time.sleep(0.25)  # the worker's writer tried its batch meanwhile
            time.sleep(1.5)
    finally:
        start()
        m.up = True
    recovered: list[Answer] = []

    def healed() -> bool:
        recovered[:] = [_submit_proof(m)]
        return recovered[0].status == 201

    recovered_in = wait_until(healed, timeout=RECOVERY_SECONDS)
    # Healed by itself: the same server, the same workers.
    assert live.server.worker_pids() == workers, live.server.log_tail()
    after = snapshot(live)
    after["proofs"] -= 1  # the one that answered 201 just now
    new_events = events_since(live, before.pop("audit_seq"))
    after.pop("audit_seq")
    up = {name: until_working(name, probe, m) for name, probe in PROBES.items()}
    return Outage(before, after, new_events, recovered[0].json()["id"], down, up, recovered_in, m)


def until_working(name: str, probe: Probe, m: Material) -> Answer:
    """The probe's first answer that works, tried for a few seconds (a TSA worker whose
    record writer failed retries its batch every second before it grants again); else
    its last answer."""
    deadline = time.monotonic() + RECOVERY_SECONDS
    while True:
        answer = probe(m)
        try:
            check_working(name, answer)
        except AssertionError:
            if time.monotonic() > deadline:
                return answer
            time.sleep(0.2)
        else:
            return answer


def snapshot(live: LiveHome) -> dict[str, Any]:
    with live.ctx.db.read() as session:
        by_status = dict(
            session.execute(
                select(Certificate.status, func.count()).group_by(Certificate.status)
            ).all()
        )
        return {
            "certificates": by_status,
            "proofs": session.scalar(select(func.count()).select_from(IdentityProof)),
            "audit_seq": session.scalar(select(func.max(AuditEvent.seq))),
        }


def events_since(live: LiveHome, seq: int) -> list[AuditEvent]:
    with live.ctx.db.read() as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.seq > seq).order_by(AuditEvent.seq)
            ).all()
        )


def check_nothing_half_written(live: LiveHome, outage: Outage) -> None:
    # Nothing of what was refused: the rows as they were, and between the last event
    # before the outage and now only the proof that answered 201 first and the jobs'.
    assert outage.after == outage.before
    unexplained = [
        (e.actor, e.action, e.details)
        for e in outage.events
        if not e.actor.startswith("system:") and e.details.get("proof") != outage.healed_proof
    ]
    assert unexplained == []
    # A timestamp granted while its record waited in a worker's queue is recorded.
    granted = {format(s, "x") for s in outage.material.tsa_serials}
    wait_until(lambda: granted <= _timestamps(live), timeout=5)
    assert live.count_certificates("reserved") == 0
    verified = live.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _timestamps(live: LiveHome) -> set[str]:
    with live.ctx.db.read() as session:
        return set(session.scalars(select(Timestamp.serial)).all())


# The answers found wrong, each reported with its place in the code (see the report).
# -- PostgreSQL --------------------------------------------------------------------------------


@dataclass
class PgLive:
    live: LiveHome
    cluster: PgCluster


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory, softhsm_conf: Path) -> Iterator[PgLive]:
    base = tmp_path_factory.mktemp("faults-postgresql")
    cluster = throwaway_cluster(base)  # ours: stopped and started by these tests
    try:
        url = cluster.create_database("faults")
        with live_home(base, softhsm_conf, url, backend="postgresql", label="faults-pg") as live:
            yield PgLive(live, cluster)
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def pg_outage(pg: PgLive) -> Outage:
    return run_outage(pg.live, lambda: pg_stop(pg.cluster), lambda: pg_start(pg.cluster))


@pytest.mark.postgres
@pytest.mark.parametrize("name", list(PROBES))
def test_postgresql_stopped_answers_503_then_heals(pg_outage: Outage, name: str) -> None:
    check_down(name, pg_outage.down[name], reads_work=False)
    check_working(name, pg_outage.up[name])


@pytest.mark.postgres
def test_postgresql_outage_leaves_nothing_half_written(pg: PgLive, pg_outage: Outage) -> None:
    assert pg_outage.recovered_in < RECOVERY_SECONDS
    check_nothing_half_written(pg.live, pg_outage)
    assert not [str(a) for a in pg_outage.up.values() if a.status >= 500]


STREAM_MAX = 200  # issuances per stream at most: the outage ends every stream long before


@pytest.mark.postgres
def test_postgresql_stopped_in_the_middle_of_issuance(pg: PgLive, pg_outage: Outage) -> None:
    """Issuances in four streams, the server stopped once the first answers are in, so that
    some are cut whatever the machine's speed: each is answered 201 or 503; each row is
    issued with its event, or a reservation the leftovers job resolves."""
    live = pg.live
    proof_id = live.proof()
    with live.ctx.db.read() as session:
        known = set(session.scalars(select(Certificate.id)).all())
    body = {"profile": "person-lcp", "identity_proof": proof_id}
    answers: list[Answer] = []
    first_answers, cut = threading.Event(), threading.Event()

    def stream() -> None:
        for _ in range(STREAM_MAX):
            answer = live.api("POST", "/ca/api/v1/certificates", body | {"csr": csr_pem()})
            answers.append(answer)
            if len(answers) >= 4:
                first_answers.set()
            if answer.status == 503:
                cut.set()
            if cut.is_set():
                return

    streams = [threading.Thread(target=stream) for _ in range(4)]
    for thread in streams:
        thread.start()
    try:
        assert first_answers.wait(60), "no issuance answered"
        pg_stop(pg.cluster)
    finally:
        for thread in streams:
            thread.join(120)
        pg_start(pg.cluster)
    assert {a.status for a in answers} <= {201, 503}, [str(a) for a in answers]
    assert 503 in {a.status for a in answers}, "no issuance met the outage"
    wait_until(lambda: _submit_proof_ok(live), timeout=RECOVERY_SECONDS)
    with live.ctx.db.read() as session:
        rows = session.execute(
            select(Certificate.id, Certificate.serial, Certificate.status).where(
                Certificate.proof_id == proof_id
            )
        ).all()
    rows = [r for r in rows if r.id not in known]
    answered = {a.json()["serial"] for a in answers if a.status == 201}
    assert answered <= {r.serial for r in rows if r.status == "issued"}
    issued_events = {e.details["serial"] for e in live.events("certificate.issued", proof=proof_id)}
    assert {r.serial for r in rows if r.status == "issued"} == issued_events
    assert {r.status for r in rows} <= {"issued", "reserved", "failed"}
    # What an outage left reserved, the leftovers job marks abandoned, once, with its event.
    reserved = {r.serial for r in rows if r.status == "reserved"}
    later = datetime.now(UTC) + timedelta(minutes=11)
    assert abandon_stale_reservations(live.ctx.db, now=later) == len(reserved)
    assert live.count_certificates("reserved") == 0
    abandoned = {e.details["serial"] for e in live.events("certificate.failed")} & reserved
    assert abandoned == reserved


def _submit_proof_ok(live: LiveHome) -> bool:
    return live.api("POST", "/ra/api/v1/identity-proofs", NATURAL).status == 201


# -- SQLite: every write fails, as on a full disk --------------------------------------------


@pytest.fixture(scope="module")
def sqlite_live(tmp_path_factory: pytest.TempPathFactory, softhsm_conf: Path) -> Iterator[LiveHome]:
    base = tmp_path_factory.mktemp("faults-sqlite")
    with live_home(base, softhsm_conf, None, backend="sqlite", label="faults-sqlite") as live:
        yield live


def limit_writes(live: LiveHome, soft: int) -> None:
    """Set the workers' RLIMIT_FSIZE soft limit (bytes; RLIM_INFINITY lifts it)."""
    pids = live.server.worker_pids()
    assert len(pids) == live.server.workers, pids
    for pid in pids:
        _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))


@pytest.fixture(scope="module")
def sqlite_outage(sqlite_live: LiveHome) -> Outage:
    return run_outage(
        sqlite_live,
        lambda: limit_writes(sqlite_live, 1),
        lambda: limit_writes(sqlite_live, resource.RLIM_INFINITY),
    )


@pytest.mark.parametrize("name", list(PROBES))
def test_sqlite_unwritable_answers_503_then_heals(sqlite_outage: Outage, name: str) -> None:
    check_down(name, sqlite_outage.down[name], reads_work=True)
    check_working(name, sqlite_outage.up[name])


def test_sqlite_unwritable_leaves_nothing_half_written(
    sqlite_live: LiveHome, sqlite_outage: Outage
) -> None:
    assert sqlite_outage.recovered_in < RECOVERY_SECONDS
    check_nothing_half_written(sqlite_live, sqlite_outage)
    assert not [str(a) for a in sqlite_outage.up.values() if a.status >= 500]
