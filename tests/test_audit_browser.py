"""The auditor UI in real headless Chromium against a live server: an auditor logs in with
password and TOTP, filters the log, opens an event (checkpoint, proven inclusion), exports
the filtered range and the export verifies offline; an RA officer cannot reach /audit.

Screenshots land in tests/output/screenshots/ (ignored by git), beside the officer UI's."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from audit.export import verify_export
from core.accounts.officers import Role
from tests.support.audit import append_events, checkpoint_maker
from tests.support.browser import fill_login, shot
from tests.support.officers import ADMIN, new_person
from tests.support.pki import Pki

# Chromium against a live server: slow.
pytestmark = pytest.mark.slow


@pytest.fixture
def issued(pki: Pki) -> str:
    tag = f"client:browser-{datetime.now(UTC).strftime('%H%M%S%f')}"
    serials = [format(0xBEE00 + i, "x") for i in range(12)]
    append_events(
        pki.ctx.db,
        (
            (tag, "certificate.issued", {"profile": "person-lcp", "serial": s}, datetime.now(UTC))
            for s in serials
        ),
    )
    with checkpoint_maker(pki) as maker:
        maker.make(datetime.now(UTC))
    return tag


def test_auditor_filters_opens_and_exports(
    pki: Pki, live: str, browser: Browser, issued: str, tmp_path: Path
) -> None:
    auditor = new_person(pki, Role.AUDITOR)
    page = browser.new_context(accept_downloads=True).new_page()
    page.goto(f"{live}/audit/")
    expect(page).to_have_url(f"{live}/audit/login?next=/audit/")
    shot(page, pki, "audit-login")
    fill_login(page, auditor)
    expect(page).to_have_url(f"{live}/audit/")
    expect(page.get_by_role("heading", name="Audit events")).to_be_visible()

    page.get_by_label("Actor").fill(issued)
    page.get_by_label("Serial").fill("0xBEE07")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("certificate.issued")
    shot(page, pki, "audit-filtered")

    page.get_by_label("Serial").fill("")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(12)

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Export with checkpoints and proofs").click()
    target = tmp_path / "export.jsonl"
    download_info.value.save_as(target)
    report = verify_export(target.read_text())
    assert report.failure is None and report.events == 12 and report.checkpoints >= 1

    page.locator("tbody tr").first.get_by_role("link").click()
    expect(page.get_by_role("heading", name="Audit event")).to_be_visible()
    expect(page.get_by_text("proven", exact=True)).to_be_visible()
    shot(page, pki, "audit-event")

    page.get_by_role("link", name="Issuance statistics").click()
    expect(
        page.get_by_role("heading", name="Certificates issued per profile and month")
    ).to_be_visible()
    shot(page, pki, "audit-stats")


def test_ra_officer_cannot_reach_audit(pki: Pki, live: str, browser: Browser) -> None:
    officer = new_person(pki, Role.RA_OFFICER)
    page = browser.new_context().new_page()
    # At the auditor UI's own login: refused.
    page.goto(f"{live}/audit/login")
    fill_login(page, officer)
    expect(page.get_by_text("no access")).to_be_visible()
    # Logged in at /ra/admin, the shared cookie still does not open /audit.
    page.goto(f"{live}{ADMIN}/login")
    fill_login(page, officer)
    expect(page).to_have_url(f"{live}{ADMIN}/queue")
    response = page.goto(f"{live}/audit/")
    assert response is not None and response.status == 403
    expect(page.get_by_text("may not do this")).to_be_visible()
    shot(page, pki, "audit-ra-officer-forbidden")
