"""The officer UI in real headless Chromium against a live server: an officer logs in with
password and TOTP, opens the queue, reviews a proof with its document image and approves it;
the platform then obtains a person-qcp-n-qscd certificate (key generated in the HSM) through
the CA API; a qualified seal needs a second, different officer; an auditor cannot approve.

Screenshots of the main pages land in tests/output/screenshots/ (ignored by git)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from core.accounts.officers import Role
from tests.support.browser import fill_login, shot
from tests.support.builders import LEGAL, NATURAL
from tests.support.clients import http_request
from tests.support.evidence import png
from tests.support.officers import ADMIN, Person, new_person, submit
from tests.support.pki import Pki

# Chromium against a live server: slow.
pytestmark = pytest.mark.slow


def log_in(browser: Browser, base: str, person: Person, **context: Any) -> Page:
    page = browser.new_context(**context).new_page()
    page.goto(f"{base}{ADMIN}/queue")
    expect(page).to_have_url(f"{base}{ADMIN}/login?next=/ra/admin/queue")
    fill_login(page, person)
    expect(page).to_have_url(f"{base}{ADMIN}/queue")
    expect(page.get_by_role("heading", name="Work queue")).to_be_visible()
    return page


def issue(base: str, token: str, profile: str, proof_id: str) -> tuple[int, dict[str, Any]]:
    """The platform's call to the CA API, over the wire: no CSR, key generated in the HSM."""
    status, _, body = http_request(
        int(base.rsplit(":", 1)[1]),
        "POST",
        "/ca/api/v1/certificates",
        json.dumps({"profile": profile, "identity_proof": proof_id}).encode(),
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=60,
    )
    return status, json.loads(body)


def approve_in_browser(page: Page, base: str, proof_id: str) -> None:
    page.goto(f"{base}{ADMIN}/proofs/{proof_id}")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_have_text("Your approval is recorded.")


def test_officers_in_chromium(pki: Pki, live: str, browser: Browser) -> None:
    api = pki.client("person-qcp-n-qscd", "seal-qcp-l-qscd")
    person_proof = submit(api, NATURAL, "face-to-face", image=png(320, 200, (30, 110, 70)))
    seal_proof = submit(api, LEGAL, "registry", image=png(320, 400, (150, 60, 40)))
    other_proof = submit(api, NATURAL, "remote-video", image=png())
    alice = new_person(pki, Role.RA_OFFICER, "alice")
    bob = new_person(pki, Role.RA_OFFICER, "bob")
    audrey = new_person(pki, Role.AUDITOR, "audrey")

    # The login page, then the queue, oldest first.
    page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
    page.goto(f"{live}{ADMIN}/login")
    shot(page, pki, "login")
    page.close()
    page = log_in(browser, live, alice, viewport={"width": 1366, "height": 900})
    rows = page.locator("table.queue tbody tr")
    ids = [rows.nth(i).locator("td").nth(2).inner_text() for i in range(rows.count())]
    assert ids.index(person_proof) < ids.index(seal_proof) < ids.index(other_proof)
    shot(page, pki, "queue")

    # Review: the submitted data beside the document image, decrypted on demand.
    page.get_by_role("link", name=person_proof).click()
    expect(page.get_by_role("heading", name=f"Identity proof {person_proof}")).to_be_visible()
    expect(page.locator(".review .data")).to_contain_text("Dupont")
    image = page.locator(".evidence img")
    expect(image).to_be_visible()
    assert image.evaluate("img => img.complete && img.naturalWidth") == 320
    shot(page, pki, "review")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_have_text("Your approval is recorded.")

    # The platform obtains a qualified certificate on the approved proof.
    status, body = issue(live, api.token, "person-qcp-n-qscd", person_proof)
    assert status == 201, body
    assert body["credential_id"] and body["profile"] == "person-qcp-n-qscd"

    # The subject page lists the proof and the new certificate.
    page.goto(f"{live}{ADMIN}/proofs/{person_proof}/subject")
    expect(page.locator("table.certificates")).to_contain_text(body["serial"])
    shot(page, pki, "subject")

    # A qualified seal: Alice's approval alone is not enough; Bob's completes it.
    approve_in_browser(page, live, seal_proof)
    expect(page.locator(".actions")).to_contain_text("1 more approval(s)")
    status, refused = issue(live, api.token, "seal-qcp-l-qscd", seal_proof)
    assert status == 422 and "needs 2 officer approvals" in refused["detail"]
    bob_page = log_in(browser, live, bob, viewport={"width": 820, "height": 1180})  # a tablet
    expect(bob_page.locator("table.queue")).to_contain_text(seal_proof)
    approve_in_browser(bob_page, live, seal_proof)
    shot(bob_page, pki, "review-tablet")
    status, sealed = issue(live, api.token, "seal-qcp-l-qscd", seal_proof)
    assert status == 201, sealed

    # An auditor reads but cannot approve; the proof it opened stays pending.
    auditor_cannot_approve(pki, log_in(browser, live, audrey), live, other_proof)
    status, pending = issue(live, api.token, "person-qcp-n-qscd", other_proof)
    assert status == 422 and "pending" in pending["detail"]


def auditor_cannot_approve(pki: Pki, auditor: Page, live: str, other_proof: str) -> None:
    """An auditor reads but cannot approve: no button, and a forged POST gets the 403 page."""
    auditor.goto(f"{live}{ADMIN}/proofs/{other_proof}")
    expect(auditor.locator(".evidence img")).to_be_visible()
    expect(auditor.get_by_role("button", name="Approve")).to_have_count(0)
    token = auditor.locator("form.logout input[name=csrf_token]").get_attribute("value")
    forged = auditor.request.post(
        f"{live}{ADMIN}/proofs/{other_proof}/approve", form={"csrf_token": token or ""}
    )
    assert forged.status == 403 and "may not do this" in forged.text()
    auditor.goto(f"{live}{ADMIN}/officers")
    expect(auditor.get_by_role("heading", name="403 · Forbidden")).to_be_visible()
    shot(auditor, pki, "forbidden")
