"""What the browser tests share: a live server on the test PKI's WSGI app, Debian's
Chromium driven by Playwright, and screenshots under tests/output/screenshots/ (ignored
by git), where a reviewer looks at the pages the run saw."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from werkzeug.serving import make_server

from tests.conftest import Pki

SHOTS = Path(__file__).parent / "output" / "screenshots"


@pytest.fixture
def live(pki: Pki) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, pki.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Debian's chromium: Playwright's own browser download is unreachable here, and as root
    # Chromium needs --no-sandbox.
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"], headless=True
        )
        yield chromium
        chromium.close()


def shot(page: Page, pki: Pki, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{pki.backend}-{name}.png"), full_page=True)
