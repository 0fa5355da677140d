"""Audit service: the auditors' read-only UI at ``/audit`` (events, proofs of inclusion,
exports). Checkpoints are a job of this service (``audit.checkpoint_job``)."""

from __future__ import annotations

from flask import Flask

from audit import ui
from audit.checkpoint_job import Checkpointing, Timestamper, register_checkpoints
from core.context import ServiceContext, context
from core.http.service import make_service, provide, provided
from core.jobs import JobRunner
from core.webui import NavLink, WebUi, install_webui

UI = WebUi(
    prefix="/audit",
    title="Audit",
    home_endpoint="audit.events",
    nav=(
        NavLink("audit.events", "Events", frozenset(ui.READERS)),
        NavLink("audit.stats", "Issuance statistics", frozenset(ui.READERS)),
    ),
    roles=frozenset(ui.READERS),
)


def create_app(ctx: ServiceContext, *, timestamper: Timestamper) -> Flask:
    """``timestamper`` answers the checkpoints' RFC 3161 requests: our TSA in-process in
    development, over HTTP in production (both wired by ``sceau/``)."""
    app = make_service(__name__, "audit", ctx)
    provide(app, Checkpointing(timestamper))
    install_webui(app, UI, ui.bp)
    return app


def register_app_jobs(runner: JobRunner, app: Flask) -> None:
    """Audit checkpoints: signed in the token and timestamped, every N events or minutes."""
    register_checkpoints(runner, context(app), provided(Checkpointing, app).timestamper)
