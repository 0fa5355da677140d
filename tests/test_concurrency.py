"""The same request many times at once against a live `sceau serve` (2 workers x 4
threads), on SQLite and PostgreSQL, and the invariants that must survive it, read back
from the database and the audit log (design.md, "Principles": Concurrency):

- a certificate is revoked once: one 200, the others 409, the first reason kept, one
  ``certificate.revoked`` event;
- an officer's lockout counts every failure, and no password is checked once the limit is
  reached; the right password is then refused too;
- one approval per officer of an identity proof, however many are sent at once;
- concurrent issuance on one proof: every certificate recorded once, serials unique;
- `sceau crl publish` in several processes at once: CRL numbers strictly increasing per
  scope, no duplicate;
- a one-time code dies after its attempts, is spent once; a SAD signs once;
- a mix of all of it leaves no ``reserved`` row, an intact audit chain, and no 5xx.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from core.store.models import Certificate, Crl, OneTimeCode
from tests.support.builders import LEGAL, csr_pem
from tests.support.live import (
    Answer,
    Browser,
    LiveHome,
    at_once,
    authorize_body,
    live_home,
    sign_body,
    wait_until,
)
from tests.support.pki import BACKENDS, backend_database

pytestmark = [pytest.mark.slow]

CONFLICT = "urn:sceau:problem:conflict"
REASONS = (
    "keyCompromise",
    "superseded",
    "affiliationChanged",
    "cessationOfOperation",
    "privilegeWithdrawn",
    "unspecified",
)
CERTIFICATES = 20  # each revoked by len(REASONS) racing requests
RACED_TOGETHER = 4  # certificates whose revocations race in one burst (24 requests)
WRONG_LOGINS = 40
CRL_PROCESSES = 3
MIX_ROUNDS = 3
RETRY_LOG = "transaction aborted by the database"  # core.store.db.Database.transact


@pytest.fixture(scope="module", params=BACKENDS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, softhsm_conf: Path
) -> Iterator[LiveHome]:
    backend: str = request.param
    base = tmp_path_factory.mktemp(f"concurrency-{backend}")
    url = backend_database(request, backend, "concurrency")
    with live_home(base, softhsm_conf, url, backend=backend, label=f"conc-{backend}") as home:
        yield home


def revoke(live: LiveHome, serial: str, reason: str) -> Answer:
    return live.api("POST", f"/ca/api/v1/certificates/{serial}/revoke", {"reason": reason})


def issue_on(
    live: LiveHome, proof_id: str, profile: str = "person-lcp", csr: bool = True
) -> Answer:
    body = {"profile": profile, "identity_proof": proof_id}
    return live.api("POST", "/ca/api/v1/certificates", body | ({"csr": csr_pem()} if csr else {}))


def test_a_certificate_is_revoked_once_whoever_asks_at_once(live: LiveHome) -> None:
    issued = at_once([live.issue] * CERTIFICATES)
    serials = [c["serial"] for c in issued]
    assert len(set(serials)) == CERTIFICATES
    for start in range(0, CERTIFICATES, RACED_TOGETHER):
        group = serials[start : start + RACED_TOGETHER]
        calls = [functools.partial(revoke, live, s, r) for s in group for r in REASONS]
        answers = at_once(calls)
        for i, serial in enumerate(group):
            mine = answers[i * len(REASONS) : (i + 1) * len(REASONS)]
            assert sorted(a.status for a in mine) == [200] + [409] * (len(REASONS) - 1), [
                str(a) for a in mine
            ]
            assert all(a.problem_type == CONFLICT for a in mine if a.status == 409)
            (winner,) = [r for r, a in zip(REASONS, mine, strict=True) if a.status == 200]
            row = live.certificate(serial)
            assert row.status == "revoked" and row.revocation_reason == winner
            events = live.events("certificate.revoked", serial=serial)
            assert [e.details["reason"] for e in events] == [winner]
    # A later request with another reason changes nothing either.
    late = revoke(live, serials[0], "keyCompromise")
    assert late.status == 409 and late.problem_type == CONFLICT
    assert len(live.events("certificate.revoked", serial=serials[0])) == 1
    assert not live.server_errors()


def test_a_login_burst_checks_no_more_passwords_than_the_limit(live: LiveHome) -> None:
    limit = live.config.registration.max_failed_logins
    person = live.officer()
    browsers = [Browser(live) for _ in range(WRONG_LOGINS)]
    tokens = [b.form_token("/ra/admin/login") for b in browsers]
    form = {"name": person.name, "password": "not-the-password", "code": "000000"}
    answers = at_once(
        [
            functools.partial(b.post, "/ra/admin/login", {**form, "csrf_token": t})
            for b, t in zip(browsers, tokens, strict=True)
        ]
    )
    assert [a.status for a in answers] == [401] * WRONG_LOGINS, [str(a) for a in answers]
    # Every attempt counted; the password checked `limit` times only, then the account
    # locked, and every later attempt refused without a check.
    trail = live.events_of(f"officer:{person.name}")
    failures = Counter(e.details["reason"] for e in trail if e.action == "officer.login_failed")
    assert failures == {"wrong password": limit, "account locked": WRONG_LOGINS - limit}
    assert [e.action for e in trail].count("officer.locked") == 1
    # The right password and a valid code are refused while locked, and not checked.
    right = Browser(live).login(person)
    assert right.status == 401 and "locked" in right.text
    last = live.events_of(f"officer:{person.name}")[-1]
    assert last.action == "officer.login_failed" and last.details["reason"] == "account locked"
    assert not any(e.action == "officer.login" for e in live.events_of(f"officer:{person.name}"))
    assert not live.server_errors()


def test_one_approval_per_officer_however_many_are_sent(live: LiveHome) -> None:
    proof_id = live.proof(LEGAL)  # registry: pending; seal-qcp-l-qscd asks for two officers
    officers = [live.officer(), live.officer()]
    browsers = [Browser(live), Browser(live)]
    for browser, person in zip(browsers, officers, strict=True):
        assert browser.login(person).status == 303
    tokens = [b.form_token("/ra/admin/queue") for b in browsers]
    path = f"/ra/admin/proofs/{proof_id}/approve"
    each = 4  # the same officer four times at once, both officers together
    calls = [
        functools.partial(browser.post, path, {"csrf_token": token})
        for browser, token in zip(browsers, tokens, strict=True)
        for _ in range(each)
    ]
    answers = at_once(calls)
    for n in range(len(officers)):
        mine = sorted(a.status for a in answers[n * each : (n + 1) * each])
        assert mine == [303] + [409] * (each - 1), [str(a) for a in answers]
    row = live.proof_row(proof_id)
    assert row.status == "verified"
    assert sorted(a["by"] for a in row.approvals) == sorted(f"officer:{p.name}" for p in officers)
    approved = live.events("identity_proof.approved", proof=proof_id)
    assert sorted(e.actor for e in approved) == sorted(f"officer:{p.name}" for p in officers)
    assert not live.server_errors()


def test_concurrent_issuance_on_one_proof(live: LiveHome) -> None:
    proof_id = live.proof()
    with_csr = at_once([functools.partial(issue_on, live, proof_id)] * 8)
    # Keys generated in the token (the custodian's credential row in the same transaction).
    seal_proof = live.proof(LEGAL)
    live.approve(seal_proof, "alice")
    in_token = at_once([functools.partial(issue_on, live, seal_proof, "seal-lcp", False)] * 4)
    for answers, proof in ((with_csr, proof_id), (in_token, seal_proof)):
        assert [a.status for a in answers] == [201] * len(answers), [str(a) for a in answers]
        serials = {a.json()["serial"] for a in answers}
        assert len(serials) == len(answers)
        with live.ctx.db.read() as session:
            rows = session.execute(
                select(Certificate.serial, Certificate.status).where(Certificate.proof_id == proof)
            ).all()
        assert sorted(rows) == sorted((s, "issued") for s in serials)
        events = live.events("certificate.issued", proof=proof)
        assert sorted(e.details["serial"] for e in events) == sorted(serials)
    credentials = {a.json()["credential_id"] for a in in_token}
    assert len(credentials) == len(in_token)
    assert not live.server_errors()


def test_concurrent_crl_publication_numbers_strictly_increase(live: LiveHome) -> None:
    revoked = live.issue()
    assert revoke(live, revoked["serial"], "superseded").status == 200
    with live.ctx.db.read() as session:
        before = session.scalar(select(Crl.id).order_by(Crl.id.desc()).limit(1)) or 0
    runs = at_once([functools.partial(live.cli, "crl", "publish")] * CRL_PROCESSES)
    for done in runs:
        assert done.returncode == 0, done.stdout + done.stderr
    with live.ctx.db.read() as session:
        rows = session.execute(
            select(Crl.id, Crl.issuer_id, Crl.shard, Crl.number, Crl.this_update).order_by(Crl.id)
        ).all()
    scopes: dict[tuple[str, int], list[tuple[int, object]]] = {}
    for row in rows:
        scopes.setdefault((row.issuer_id, row.shard), []).append((row.number, row.this_update))
    for scope, published in scopes.items():
        numbers = [n for n, _ in published]
        # Stored in this order under the issuer's lock: strictly increasing, so no duplicate.
        assert all(a < b for a, b in itertools.pairwise(numbers)), (scope, numbers)
        updates = [t for _, t in published]
        assert updates == sorted(updates), scope  # type: ignore[type-var]
    new = [r for r in rows if r.id > before]
    # Every process published every scope (the server's own job may have added more).
    assert len(new) >= CRL_PROCESSES * len(scopes)
    # One crl.published event per stored CRL, and what each process printed was stored.
    stored = {(r.issuer_id, None if r.shard == -1 else r.shard, r.number) for r in new}
    numbers = {r.number for r in new}
    events = [e for e in live.events("crl.published") if e.details["number"] in numbers]
    audited = [(e.details["issuer"], e.details["shard"], e.details["number"]) for e in events]
    assert sorted(audited) == sorted(stored)
    urls = {(e.details["url"], e.details["number"]) for e in events}
    for done in runs:
        for line in done.stdout.splitlines():
            url, _, rest = line.partition(": number ")
            assert (url, int(rest.split(",")[0])) in urls, line
    # What relying parties fetch is the newest.
    served = live.call("GET", "/crl/persons.crl")
    assert served.status == 200
    newest = max(n for n, _ in scopes[("persons", -1)])
    assert served.headers["etag"].strip('"') == f"{newest:x}"
    assert not live.server_errors()


def test_one_time_codes_and_sads_work_once(live: LiveHome) -> None:
    credential_id = live.qualified_credential()
    digests = [hashlib.sha256(b"contract").digest()]

    def many(path: str, body: dict[str, object], n: int) -> list[Answer]:
        return at_once([functools.partial(live.api, "POST", path, body)] * n)

    authorize = "/csc/v2/credentials/authorize"
    code = live.send_otp(credential_id)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    tries, limit = 8, live.config.signing.otp_max_attempts
    answers = many(authorize, authorize_body(credential_id, digests, wrong), tries)
    assert [a.status for a in answers] == [400] * tries, [str(a) for a in answers]
    # Each wrong try counted until the code dies; the others find it locked.
    errors = Counter(a.json()["error"] for a in answers)
    assert errors == {"invalid_otp": limit, "invalid_request": tries - limit}, errors
    with live.ctx.db.read() as session:
        otp = session.scalars(
            select(OneTimeCode).where(OneTimeCode.credential_id == credential_id)
        ).one()
    assert otp.attempts == limit and otp.used_at is None
    dead = live.api("POST", authorize, authorize_body(credential_id, digests, code))
    assert dead.status == 400 and dead.json()["error"] == "invalid_request", dead

    # One fresh code, sent six times at once: one SAD; the others find no code pending.
    code = live.send_otp(credential_id)
    answers = many(authorize, authorize_body(credential_id, digests, code), 6)
    assert sorted(a.status for a in answers) == [200] + [400] * 5, [str(a) for a in answers]
    assert {a.json()["error"] for a in answers if a.status == 400} == {"invalid_otp"}
    (sad,) = [a.json()["SAD"] for a in answers if a.status == 200]

    # That SAD, sent eight times at once: one signature.
    before = len(live.events("signing.sign_hash", credential=credential_id))
    answers = many("/csc/v2/signatures/signHash", sign_body(credential_id, digests, sad), 8)
    assert sorted(a.status for a in answers) == [200] + [400] * 7, [str(a) for a in answers]
    for answer in answers:
        if answer.status == 400:
            assert answer.json()["error"] == "invalid_request"
            assert "already used" in answer.json()["error_description"]
    assert len(live.events("signing.sign_hash", credential=credential_id)) == before + 1
    assert not live.server_errors()


def test_an_issuance_aborted_for_a_deadlock_is_retried(live: LiveHome) -> None:
    """PostgreSQL aborts one of two transactions that wait on each other (40P01). Made to
    happen here: this test holds the audit head, lets an issuance's last transaction lock
    its certificate row and wait for the head, then asks for that row. The issuance is the
    one aborted (its deadlock check fires first), and must be run again, not answered 503
    with its row left ``reserved`` (design.md: retried, never a 5xx)."""
    if live.backend != "postgresql":
        pytest.skip("SQLite has one writer: no deadlock")
    proof_id = live.proof()
    answers: list[Answer] = []
    retries = live.server.log.read_text(errors="replace").count(RETRY_LOG)
    with live.ctx.db.engine.connect() as conn:
        conn.begin()
        conn.execute(text("SET LOCAL deadlock_timeout = '10s'"))  # theirs (1 s) fires first
        conn.execute(text("UPDATE audit_head SET seq = seq WHERE id = 1"))
        issuing = threading.Thread(target=lambda: answers.append(issue_on(live, proof_id)))
        issuing.start()
        waiting = text(
            "SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid"
            " AND l.granted AND l.relation = 'certificates'::regclass"
            " WHERE a.wait_event_type = 'Lock' AND a.query LIKE 'UPDATE audit_head%'"
        )
        wait_until(lambda: live_query(live, waiting) is not None, timeout=20)
        reserved = live_query(
            live,
            text("SELECT id FROM certificates WHERE proof_id = :p AND status = 'reserved'"),
            p=proof_id,
        )
        # Waits for the issuance's row lock while holding the head: a cycle.
        conn.execute(text("UPDATE certificates SET status = status WHERE id = :i"), {"i": reserved})
        conn.rollback()
    issuing.join(60)
    (answer,) = answers
    assert answer.status == 201, answer
    assert live.certificate(answer.json()["serial"]).status == "issued"
    assert live.count_certificates("reserved") == 0
    assert live.server.log.read_text(errors="replace").count(RETRY_LOG) > retries


def live_query(live: LiveHome, statement: Any, **params: Any) -> Any:
    with live.ctx.db.engine.connect() as conn:
        return conn.execute(statement, params).scalar()


def mix_round(live: LiveHome, seal: str) -> None:
    proof_id = live.proof(LEGAL)
    live.approve(proof_id, "alice")  # verified: seal-lcp may issue; a second officer may approve
    earlier = at_once([functools.partial(live.issue, "seal-lcp", proof_id)] * 4)
    officer = Browser(live)
    assert officer.login(live.officer()).status == 303
    token = officer.form_token("/ra/admin/queue")
    guessed = live.officer()
    guessers = [Browser(live) for _ in range(3)]
    forms = [g.form_token("/ra/admin/login") for g in guessers]
    digest = hashlib.sha256(b"mix").digest()
    calls = [functools.partial(issue_on, live, proof_id, "seal-lcp") for _ in range(6)]
    calls += [functools.partial(issue_on, live, live.proof()) for _ in range(4)]
    calls += [functools.partial(revoke, live, c["serial"], "superseded") for c in earlier]
    calls += [
        functools.partial(
            officer.post, f"/ra/admin/proofs/{proof_id}/approve", {"csrf_token": token}
        )
    ]
    calls += [
        functools.partial(
            g.post,
            "/ra/admin/login",
            {"csrf_token": f, "name": guessed.name, "password": "guess", "code": "123456"},
        )
        for g, f in zip(guessers, forms, strict=True)
    ]
    sign = functools.partial(
        live.api, "POST", "/csc/v2/signatures/signHash", sign_body(seal, [digest])
    )
    calls += [sign] * 3
    calls += [functools.partial(live.call, "GET", "/crl/seals.crl") for _ in range(3)]
    answers = at_once(calls)
    assert not [str(a) for a in answers if a.status >= 500]
    assert sorted(a.status for a in answers[:10]) == [201] * 10
    assert [a.status for a in answers[10:14]] == [200] * 4
    assert answers[14].status == 303
    assert [a.status for a in answers[15:18]] == [401] * 3
    assert [a.status for a in answers[18:]] == [200] * 6
    assert live.count_certificates("reserved") == 0


def test_a_mix_leaves_no_reservation_and_an_intact_chain(live: LiveHome) -> None:
    """Issuance, approvals, revocations, logins, signatures and CRL fetches at once, a few
    rounds: the locks of core.audit's order never wait in a cycle (no deadlock answered
    5xx, no ``reserved`` row left behind), then the whole module's answers had no 5xx."""
    seal = live.seal_credential()
    for _ in range(MIX_ROUNDS):
        mix_round(live, seal)

    assert live.count_certificates("reserved") == 0
    with live.ctx.db.read() as session:
        serials = session.execute(select(Certificate.issuer_id, Certificate.serial)).all()
    assert len(serials) == len(set(serials))
    verified = live.cli("audit", "verify")
    assert verified.returncode == 0 and "intact" in verified.stdout, (
        verified.stdout + verified.stderr
    )
    assert not live.server_errors(), [str(a) for a in live.server_errors()]
    log = live.server.log.read_text(errors="replace")
    assert "Traceback" not in log, live.server.log_tail(60)
