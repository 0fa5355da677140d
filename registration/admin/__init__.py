"""The RA officers' web UI at ``/ra/admin`` (login and sessions from core.webui)."""

from __future__ import annotations

from flask import Flask

from core.accounts.officers import Role
from core.webui import NavLink, WebUi, install_webui
from registration.admin.views import READERS, bp

UI = WebUi(
    prefix="/ra/admin",
    title="Registration authority",
    home_endpoint="ra_admin.queue",
    nav=(
        NavLink("ra_admin.queue", "Queue", frozenset(READERS)),
        NavLink("ra_admin.search", "Search", frozenset(READERS)),
        NavLink("ra_admin.officers", "Officers", frozenset({Role.ADMIN})),
    ),
)


def install(app: Flask) -> None:
    install_webui(app, UI, bp)
