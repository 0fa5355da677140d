"""OCSP responder (RFC 6960, a later issue); for now /healthz and /metrics."""

from __future__ import annotations

from flask import Flask

from ca.config import SceauConfig
from ca.context import ServiceContext
from ca.web import install_common


def create_app(
    config: SceauConfig | None = None,
    ctx: ServiceContext | None = None,
    *,
    start_jobs: bool = True,  # scheduled jobs (ca.jobs.JobRunner); tests turn them off
) -> Flask:
    ctx = ctx or ServiceContext.open(config)
    app = Flask(__name__)
    ctx.attach(app)
    install_common(
        app, "ocsp", max_body_bytes=ctx.config.service.max_body_bytes, schema=ctx.schema()
    )
    return app
