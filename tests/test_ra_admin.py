"""The officer UI (/ra/admin) through Flask's test client: login, CSRF, sessions, roles,
decisions (four-eyes, never one's own), escaping, evidence views, revocation, search."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from werkzeug.test import Client as WsgiClient

from core.accounts.officers import Role
from core.store.models import AuditEvent, Certificate, IdentityProof, OfficerSession
from tests.support.builders import LEGAL, NATURAL
from tests.support.evidence import png
from tests.support.officers import ADMIN, form_token, login, new_person, page_token, submit
from tests.support.pki import Pki
from tests.support.rows import count_rows


def proof_row(pki: Pki, proof_id: str) -> IdentityProof:
    with pki.ctx.db.read() as session:
        row = session.get(IdentityProof, proof_id)
    assert row is not None
    return row


def events(pki: Pki, action: str, actor: str | None = None) -> list[AuditEvent]:
    with pki.ctx.db.read() as session:
        query = select(AuditEvent).where(AuditEvent.action == action)
        if actor:
            query = query.where(AuditEvent.actor == actor)
        return list(session.scalars(query.order_by(AuditEvent.seq)))


def test_review_and_approve(pki: Pki) -> None:
    api = pki.client("person-qcp-n-qscd")
    proof_id = submit(api, NATURAL, "face-to-face", image=png())
    alice = new_person(pki, Role.RA_OFFICER)
    http = login(pki, alice)
    queue = http.get(f"{ADMIN}/queue")
    assert queue.status_code == 200 and proof_id in queue.text
    review = http.get(f"{ADMIN}/proofs/{proof_id}")
    assert review.status_code == 200
    assert "Jeanne" in review.text and "X4RTBPFW4" in review.text
    assert review.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in review.headers["Content-Security-Policy"]
    file_url = review.text.split(f"{ADMIN}/proofs/{proof_id}/files/")[1].split('"')[0]
    image = http.get(f"{ADMIN}/proofs/{proof_id}/files/{file_url}")
    assert image.status_code == 200 and image.data == png()
    assert image.headers["Content-Type"] == "image/png"
    assert image.headers["Content-Disposition"].startswith("inline")
    assert image.headers["Cache-Control"] == "no-store"
    assert events(pki, "identity_proof.file_viewed", f"officer:{alice.name}")

    token = page_token(http, f"{ADMIN}/proofs/{proof_id}")
    resp = http.post(f"{ADMIN}/proofs/{proof_id}/approve", data={"csrf_token": token})
    assert resp.status_code == 303
    assert proof_row(pki, proof_id).status == "verified"
    issued = api.post(
        "/ca/api/v1/certificates", {"profile": "person-qcp-n-qscd", "identity_proof": proof_id}
    )
    assert issued.status_code == 201, issued.json


def test_csrf_missing_or_wrong_changes_nothing(pki: Pki) -> None:
    api = pki.client("person-qcp-n-qscd")
    proof_id = submit(api, NATURAL, "face-to-face")
    http = login(pki, new_person(pki, Role.RA_OFFICER))
    before = len(events(pki, "identity_proof.approved"))
    missing = http.post(f"{ADMIN}/proofs/{proof_id}/approve", data={})
    assert missing.status_code == 400 and "anti-forgery" in missing.text
    wrong = http.post(f"{ADMIN}/proofs/{proof_id}/approve", data={"csrf_token": "0" * 64})
    assert wrong.status_code == 403 and "anti-forgery" in wrong.text
    rejected = http.post(
        f"{ADMIN}/proofs/{proof_id}/reject", data={"csrf_token": "x", "reason": "forged"}
    )
    assert rejected.status_code == 403
    assert proof_row(pki, proof_id).status == "pending"
    assert len(events(pki, "identity_proof.approved")) == before
    # Another session's token is no good here either.
    other = login(pki, new_person(pki, Role.RA_OFFICER))
    stolen = page_token(other)
    resp = http.post(f"{ADMIN}/proofs/{proof_id}/approve", data={"csrf_token": stolen})
    assert resp.status_code == 403 and proof_row(pki, proof_id).status == "pending"


def test_login_form_csrf(pki: Pki) -> None:
    person = new_person(pki, Role.RA_OFFICER)
    http = WsgiClient(pki.app)
    form = {"name": person.name, "password": person.password, "code": person.code()}
    assert http.post(f"{ADMIN}/login", data=form).status_code == 400
    http.get(f"{ADMIN}/login")  # sets the form's cookie
    assert http.post(f"{ADMIN}/login", data={**form, "csrf_token": "forged"}).status_code == 403
    assert not events(pki, "officer.login", f"officer:{person.name}")


def test_login_page_and_cookie(pki: Pki) -> None:
    person = new_person(pki, Role.RA_OFFICER)
    http = WsgiClient(pki.app)
    assert http.get(f"{ADMIN}/queue").status_code == 302  # to the login page
    page = http.get(f"{ADMIN}/login")
    for header in ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"):
        assert header in page.headers
    assert page.headers["Cache-Control"] == "no-store"
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    wrong = http.post(
        f"{ADMIN}/login",
        data={"csrf_token": token, "name": person.name, "password": "x", "code": "123456"},
    )
    assert wrong.status_code == 401 and "wrong name, password or code" in wrong.text
    token = form_token(wrong.text)  # each login form has its own token
    resp = http.post(
        f"{ADMIN}/login",
        data={
            "csrf_token": token,
            "name": person.name,
            "password": person.password,
            "code": person.code(),
            "next": "https://evil.example/steal",  # never followed off this UI
        },
    )
    assert resp.status_code == 303 and resp.headers["Location"] == f"{ADMIN}/queue"
    cookie = next(v for k, v in resp.headers.items() if k == "Set-Cookie" and "sceau-session=" in v)
    # base_url is http:// in the tests: Secure would never come back (see core.webui.core).
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    with pki.ctx.db.read() as session:
        value = cookie.split("=", 1)[1].split(";")[0]
        assert session.get(OfficerSession, value) is None  # only its hash is stored
    assert events(pki, "officer.login", f"officer:{person.name}")


def test_session_expiry_and_logout(pki: Pki) -> None:
    person = new_person(pki, Role.RA_OFFICER)
    http = login(pki, person)
    assert http.get(f"{ADMIN}/queue").status_code == 200
    idle = pki.config.registration.session_idle_minutes
    with pki.ctx.db.write() as session:
        rows = session.scalars(
            select(OfficerSession).where(OfficerSession.officer_id == officer_id(pki, person.name))
        ).all()
        assert len(rows) == 1
        rows[0].last_seen_at = datetime.now(UTC) - timedelta(minutes=idle, seconds=1)
    assert http.get(f"{ADMIN}/queue").status_code == 302  # idle: logged out, row gone
    assert session_count(pki, person.name) == 0

    http = login(pki, person)
    with pki.ctx.db.write() as session:
        session.execute(
            update(OfficerSession)
            .where(OfficerSession.officer_id == officer_id(pki, person.name))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert http.get(f"{ADMIN}/queue").status_code == 302  # absolute limit reached

    http = login(pki, person)
    token = page_token(http)
    assert http.post(f"{ADMIN}/logout", data={"csrf_token": token}).status_code == 303
    assert session_count(pki, person.name) == 0
    assert http.get(f"{ADMIN}/queue").status_code == 302
    assert events(pki, "officer.logout", f"officer:{person.name}")


def officer_id(pki: Pki, name: str) -> int:
    from core.store.models import Officer

    with pki.ctx.db.read() as session:
        return int(session.scalars(select(Officer.id).where(Officer.name == name)).one())


def session_count(pki: Pki, name: str) -> int:
    return count_rows(
        pki.ctx.db, OfficerSession, OfficerSession.officer_id == officer_id(pki, name)
    )


XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_every_text_is_escaped(pki: Pki) -> None:
    api = pki.client("person-lcp")
    proof_id = submit(api, NATURAL, "face-to-face", image=png(), given_name=XSS, surname=XSS + "s")
    admin = new_person(pki, Role.ADMIN)
    http = login(pki, admin)
    token = page_token(http)
    assert (
        http.post(
            f"{ADMIN}/proofs/{proof_id}/legal-hold", data={"csrf_token": token, "reason": XSS}
        ).status_code
        == 303
    )
    assert (
        http.post(
            f"{ADMIN}/proofs/{proof_id}/reject", data={"csrf_token": token, "reason": XSS}
        ).status_code
        == 303
    )
    pages = [
        http.get(f"{ADMIN}/proofs/{proof_id}"),
        http.get(f"{ADMIN}/proofs/{proof_id}/subject"),
        http.get(f"{ADMIN}/search", query_string={"field": "name", "q": f"{XSS} {XSS}s"}),
        http.get(f"{ADMIN}/search", query_string={"field": XSS, "q": XSS}),
        http.get(f"{ADMIN}/queue", query_string={"kind": XSS, "method": XSS, "age": XSS}),
        http.get(f"{ADMIN}/proofs/{XSS}"),
        http.get(f"{ADMIN}/login", query_string={"next": XSS}),
    ]
    for page in pages:
        assert page.status_code in {200, 303, 404}, page.text
        assert "<script>" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;" in pages[0].text  # given name, reason, hold, all shown escaped
    assert pages[0].text.count("&lt;script&gt;") >= 4
    assert proof_id in pages[2].text  # the search found the subject by its full name


def test_roles(pki: Pki) -> None:
    api = pki.client("person-qcp-n-qscd")
    proof_id = submit(api, NATURAL, "face-to-face", image=png())
    auditor = login(pki, new_person(pki, Role.AUDITOR))
    assert auditor.get(f"{ADMIN}/queue").status_code == 200
    review = auditor.get(f"{ADMIN}/proofs/{proof_id}")
    assert review.status_code == 200 and "/approve" not in review.text
    token = page_token(auditor)
    for action, data in [("approve", {}), ("reject", {"reason": "no"})]:
        resp = auditor.post(
            f"{ADMIN}/proofs/{proof_id}/{action}", data={"csrf_token": token, **data}
        )
        assert resp.status_code == 403 and "your role (auditor) may not do this" in resp.text
    assert proof_row(pki, proof_id).status == "pending"
    assert auditor.get(f"{ADMIN}/officers").status_code == 403
    officer = login(pki, new_person(pki, Role.RA_OFFICER))
    assert officer.get(f"{ADMIN}/officers").status_code == 403
    hold = officer.post(
        f"{ADMIN}/proofs/{proof_id}/legal-hold",
        data={"csrf_token": page_token(officer), "reason": "court"},
    )
    assert hold.status_code == 403 and proof_row(pki, proof_id).legal_hold is None
    admin = login(pki, new_person(pki, Role.ADMIN))
    assert admin.get(f"{ADMIN}/officers").status_code == 200
    # Not logged in: no page, no action.
    anonymous = WsgiClient(pki.app)
    assert anonymous.get(f"{ADMIN}/proofs/{proof_id}").status_code == 302
    assert anonymous.post(f"{ADMIN}/proofs/{proof_id}/approve").status_code == 401


def test_never_approve_your_own_submission(pki: Pki) -> None:
    api = pki.client("person-qcp-n-qscd")
    proof_id = submit(api, NATURAL, "face-to-face")
    person = new_person(pki, Role.RA_OFFICER)
    with pki.ctx.db.write() as session:
        session.execute(
            update(IdentityProof)
            .where(IdentityProof.id == proof_id)
            .values(submitted_by=f"officer:{person.name}")
        )
    http = login(pki, person)
    review = http.get(f"{ADMIN}/proofs/{proof_id}")
    assert "You submitted this proof" in review.text and "/approve" not in review.text
    resp = http.post(f"{ADMIN}/proofs/{proof_id}/approve", data={"csrf_token": page_token(http)})
    assert resp.status_code == 403 and "may not approve it" in resp.text
    assert proof_row(pki, proof_id).status == "pending"


def test_four_eyes_for_a_qualified_seal(pki: Pki) -> None:
    api = pki.client("seal-qcp-l-qscd")
    proof_id = submit(api, LEGAL, "registry")
    first = login(pki, new_person(pki, Role.RA_OFFICER))
    token = page_token(first)
    assert (
        first.post(f"{ADMIN}/proofs/{proof_id}/approve", data={"csrf_token": token}).status_code
        == 303
    )
    assert proof_row(pki, proof_id).status == "verified"
    body = {"profile": "seal-qcp-l-qscd", "identity_proof": proof_id}
    early = api.post("/ca/api/v1/certificates", body)
    assert early.status_code == 422 and "needs 2 officer approvals" in early.json["detail"]
    again = first.post(f"{ADMIN}/proofs/{proof_id}/approve", data={"csrf_token": token})
    assert again.status_code == 409 and proof_id in first.get(f"{ADMIN}/queue").text
    second = login(pki, new_person(pki, Role.RA_OFFICER))
    resp = second.post(
        f"{ADMIN}/proofs/{proof_id}/approve", data={"csrf_token": page_token(second)}
    )
    assert resp.status_code == 303
    assert proof_id not in second.get(f"{ADMIN}/queue").text
    assert api.post("/ca/api/v1/certificates", body).status_code == 201


def test_search_subject_page_and_revocation(pki: Pki) -> None:
    from tests.support.builders import csr_pem

    api = pki.client("person-lcp")
    email = f"r{datetime.now(UTC).timestamp():.0f}@example.org"
    proof_id = submit(api, NATURAL, "face-to-face", email=email, surname="Révocation")
    officer = login(pki, new_person(pki, Role.RA_OFFICER))
    token = page_token(officer)
    officer.post(f"{ADMIN}/proofs/{proof_id}/approve", data={"csrf_token": token})
    issued = api.post(
        "/ca/api/v1/certificates",
        {"profile": "person-lcp", "identity_proof": proof_id, "csr": csr_pem()},
    )
    assert issued.status_code == 201
    serial = issued.json["serial"]
    for field, q in [
        ("email", email.upper()),
        ("name", "jeanne  REVOCATION"),
        ("serial", serial.upper()),
    ]:
        found = officer.get(f"{ADMIN}/search", query_string={"field": field, "q": q})
        assert proof_id in found.text, field
    assert (
        "a serial number is hexadecimal"
        in officer.get(f"{ADMIN}/search", query_string={"field": "serial", "q": "zz"}).text
    )
    page = officer.get(f"{ADMIN}/proofs/{proof_id}/subject")
    assert page.status_code == 200 and serial in page.text
    with pki.ctx.db.read() as session:
        cert = session.scalars(select(Certificate).where(Certificate.serial == serial)).one()
    bad = officer.post(
        f"{ADMIN}/certificates/{cert.id}/revoke", data={"csrf_token": token, "reason": "whim"}
    )
    assert bad.status_code == 422
    resp = officer.post(
        f"{ADMIN}/certificates/{cert.id}/revoke",
        data={"csrf_token": token, "reason": "keyCompromise"},
    )
    assert resp.status_code == 303
    fetched = api.get(f"/ca/api/v1/certificates/{serial}")
    assert fetched.json["status"] == "revoked"
    assert fetched.json["revocation"]["reason"] == "keyCompromise"
    revoked = [e for e in events(pki, "certificate.revoked") if e.details["serial"] == serial]
    assert revoked and revoked[0].actor.startswith("officer:")
    twice = officer.post(
        f"{ADMIN}/certificates/{cert.id}/revoke",
        data={"csrf_token": token, "reason": "keyCompromise"},
    )
    assert twice.status_code == 409
