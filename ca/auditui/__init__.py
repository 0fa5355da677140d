"""The auditors' read-only web UI at ``/audit`` (login and sessions from ca.webui): the audit
log filtered and paged, an event with its checkpoint and inclusion proof, issuance
statistics, and verifiable exports."""

from __future__ import annotations

from flask import Flask

from ca.auditui.views import READERS, bp
from ca.webui import NavLink, WebUi, install_webui

UI = WebUi(
    prefix="/audit",
    title="Audit",
    home_endpoint="audit.events",
    nav=(
        NavLink("audit.events", "Events", frozenset(READERS)),
        NavLink("audit.stats", "Issuance statistics", frozenset(READERS)),
    ),
    roles=frozenset(READERS),
)


def install(app: Flask) -> None:
    install_webui(app, UI, bp)
