"""What the browser tests share: a live server on a WSGI app, Debian's Chromium driven by
Playwright, and screenshots under tests/output/screenshots/ (ignored by git), where a
reviewer looks at the pages the run saw. tests/conftest.py makes the fixtures."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, sync_playwright
from werkzeug.serving import make_server

from tests.support.clients import LOOPBACK
from tests.support.officers import Person
from tests.support.pki import Pki

SHOTS = Path(__file__).parents[1] / "output" / "screenshots"


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` served by werkzeug in a thread on a free loopback port: its base URL."""
    server = make_server(LOOPBACK, 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    # Debian's chromium: Playwright's own browser download is unreachable here, and as root
    # Chromium needs --no-sandbox.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"], headless=True
        )
        yield browser
        browser.close()


def shot(page: Page, pki: Pki, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{pki.backend}-{name}.png"), full_page=True)


def fill_login(page: Page, person: Person) -> None:
    """Fill the officer or auditor login form on ``page`` as ``person`` and send it."""
    page.get_by_label("Name").fill(person.name)
    page.get_by_label("Password").fill(person.password)
    page.get_by_label("Authenticator code").fill(person.code())
    page.get_by_role("button", name="Log in").click()
