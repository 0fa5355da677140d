"""The auditor UI (/audit) through the WSGI stack: only auditors and admins get in, filters
and keyset pages, an event with its checkpoint and proven inclusion, statistics, exports
that verify offline and are audited themselves; bad input gets a readable page, never 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from werkzeug.test import Client as WsgiClient

from audit.export import verify_export
from core.accounts.officers import Role
from tests.support.audit import append_events, checkpoint_maker
from tests.support.officers import Person, form_token, login, new_person, post_login
from tests.support.pki import Pki

AUDIT = "/audit"


def audit_login(pki: Pki, person: Person) -> WsgiClient:
    return login(pki, person, ui=AUDIT)


@pytest.fixture(scope="module")
def tagged(pki: Pki) -> Iterator[str]:
    """25 issuance events of one made-up client, then a checkpoint covering them."""
    tag = f"client:ui-{datetime.now(UTC).strftime('%H%M%S%f')}"
    details = [
        {
            "profile": "seal-lcp" if i % 5 == 0 else "person-lcp",
            "serial": format(0xABC000 + i, "x"),
            "proof": f"uiproof{i}",
            "subject": "<script>alert(1)</script>",
        }
        for i in range(25)
    ]
    append_events(
        pki.ctx.db,
        (
            (tag, "certificate.issued", d, datetime(2026, 1 + i % 3, 10, tzinfo=UTC))
            for i, d in enumerate(details)
        ),
    )
    with checkpoint_maker(pki) as maker:
        assert maker.make(datetime.now(UTC)) is not None
    yield tag


@pytest.fixture(scope="module")
def auditor(pki: Pki) -> WsgiClient:
    """One auditor session for the module's read-only tests: a login costs an argon2id
    verification (64 MiB), and creating the account a hash."""
    return audit_login(pki, new_person(pki, Role.AUDITOR))


def test_roles(pki: Pki) -> None:
    anonymous = WsgiClient(pki.app)
    resp = anonymous.get(f"{AUDIT}/")
    assert resp.status_code in (302, 303) and "/audit/login" in resp.headers["Location"]
    resp = post_login(anonymous, new_person(pki, Role.RA_OFFICER), ui=AUDIT)
    assert resp.status_code == 403 and "no access" in resp.text
    admin = audit_login(pki, new_person(pki, Role.ADMIN))
    assert admin.get(f"{AUDIT}/").status_code == 200


def test_ra_officer_session_cannot_read_audit(pki: Pki) -> None:
    """Logged in at /ra/admin (the cookie is shared), an RA officer still gets 403 here."""
    http = login(pki, new_person(pki, Role.RA_OFFICER))
    for path in ("/", "/stats", "/events/1"):
        resp = http.get(AUDIT + path)
        assert resp.status_code == 403, path
        assert "auditor" in resp.text


def test_filter_and_keyset_pages(auditor: WsgiClient, tagged: str) -> None:
    resp = auditor.get(f"{AUDIT}/", query_string={"actor": tagged})
    assert resp.status_code == 200
    assert resp.text.count('href="/audit/events/') == 25
    resp = auditor.get(f"{AUDIT}/", query_string={"actor": tagged, "profile": "seal-lcp"})
    assert resp.text.count('href="/audit/events/') == 5
    resp = auditor.get(f"{AUDIT}/", query_string={"serial": "0xABC007"})
    assert resp.text.count('href="/audit/events/') == 1
    resp = auditor.get(f"{AUDIT}/", query_string={"subject": "uiproof3"})
    assert resp.text.count('href="/audit/events/') == 1
    resp = auditor.get(
        f"{AUDIT}/",
        query_string={"actor": tagged, "since": "2026-02-01T00:00", "until": "2026-03-01"},
    )
    assert resp.text.count('href="/audit/events/') == 8  # i % 3 == 1
    # Escaped, never executed.
    assert "<script>alert(1)</script>" not in resp.text


def test_keyset_pagination(pki: Pki, auditor: WsgiClient, tagged: str) -> None:
    from audit.queries import EventFilter, page

    with pki.ctx.db.read() as session:
        one, cursor = page(session, EventFilter(actor=tagged), size=10)
        two, cursor2 = page(session, EventFilter(actor=tagged), before=cursor, size=10)
        three, cursor3 = page(session, EventFilter(actor=tagged), before=cursor2, size=10)
    seqs = [e.seq for e in one + two + three]
    assert len(seqs) == 25 == len(set(seqs)) and seqs == sorted(seqs, reverse=True)
    assert cursor3 is None
    resp = auditor.get(f"{AUDIT}/", query_string={"actor": tagged, "before": str(cursor)})
    assert resp.text.count('href="/audit/events/') == 15


def test_event_detail_with_inclusion(pki: Pki, auditor: WsgiClient, tagged: str) -> None:
    from audit.queries import EventFilter, page

    with pki.ctx.db.read() as session:
        rows, _ = page(session, EventFilter(actor=tagged), size=1)
    resp = auditor.get(f"{AUDIT}/events/{rows[0].seq}")
    assert resp.status_code == 200
    assert "proven" in resp.text and "not proven" not in resp.text
    assert "matches its content" in resp.text and "invalid" not in resp.text
    assert "<script>" not in resp.text and "script" in resp.text  # shown, escaped


def test_stats(auditor: WsgiClient, tagged: str) -> None:
    resp = auditor.get(f"{AUDIT}/stats")
    assert resp.status_code == 200
    assert "2026-01" in resp.text and "seal-lcp" in resp.text


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_verifies_and_is_audited(
    pki: Pki, auditor: WsgiClient, tagged: str, fmt: str
) -> None:
    token = form_token(auditor.get(f"{AUDIT}/").text)
    resp = auditor.post(
        f"{AUDIT}/export", data={"csrf_token": token, "format": fmt, "actor": tagged}
    )
    assert resp.status_code == 200 and "attachment" in resp.headers["Content-Disposition"]
    report = verify_export(resp.text)
    assert report.failure is None and report.events == 25 and report.uncovered == 0
    exported = auditor.get(f"{AUDIT}/", query_string={"action": "audit.exported"})
    assert "audit.exported" in exported.text
    with pki.ctx.db.read() as session:
        from audit.queries import EventFilter, page

        rows, _ = page(session, EventFilter(action="audit.exported"), size=1)
    assert rows[0].details["filter"] == {"actor": tagged} and rows[0].details["events"] == 25
    assert rows[0].details["format"] == fmt


@pytest.mark.parametrize(
    ("path", "query", "status"),
    [
        ("/", {"since": "yesterday"}, 400),
        ("/", {"since": "2026-02-01", "until": "2026-01-01"}, 400),
        ("/", {"before": "-1"}, 400),
        ("/", {"before": "9" * 40}, 400),
        ("/", {"actor": "x" * 500}, 400),
        ("/", {"actor": "a\x00b"}, 400),
        ("/events/999999999", {}, 404),
        ("/events/abc", {}, 404),
    ],
)
def test_bad_input_gets_a_page(
    auditor: WsgiClient, path: str, query: dict[str, str], status: int
) -> None:
    resp = auditor.get(AUDIT + path, query_string=query)
    assert resp.status_code == status
    assert resp.mimetype == "text/html"


def test_export_needs_csrf_and_valid_format(auditor: WsgiClient) -> None:
    assert auditor.post(f"{AUDIT}/export", data={"format": "jsonl"}).status_code == 400
    token = form_token(auditor.get(f"{AUDIT}/").text)
    bad = auditor.post(f"{AUDIT}/export", data={"csrf_token": "x" + token, "format": "csv"})
    assert bad.status_code == 403
    xml = auditor.post(f"{AUDIT}/export", data={"csrf_token": token, "format": "xml"})
    assert xml.status_code == 400 and "jsonl or csv" in xml.text


def test_export_is_json_lines(auditor: WsgiClient, tagged: str) -> None:
    token = form_token(auditor.get(f"{AUDIT}/").text)
    resp = auditor.post(
        f"{AUDIT}/export", data={"csrf_token": token, "format": "jsonl", "serial": "abc001"}
    )
    records = [json.loads(line) for line in resp.text.splitlines()]
    assert records[0]["record"] == "header"
    events = [r for r in records if r["record"] == "event"]
    assert len(events) == 1 and events[0]["details"]["serial"] == "abc001"
