"""Remote signing service (CSC API v2, ``/csc/v2/...``), plus /healthz and /metrics.
In production: ``gunicorn 'signing.app:create_app()'``."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask

from ca.config import SceauConfig
from ca.context import ServiceContext
from ca.jobs import JobRunner
from ca.web import install_common
from signing import views
from signing.engine import SigningEngine
from signing.otp import otp_sender

log = logging.getLogger(__name__)


JOBS = "sceau_signing_jobs"


def create_app(
    config: SceauConfig | None = None,
    ctx: ServiceContext | None = None,
    *,
    start_jobs: bool = True,  # the key clean-up (ca.jobs.JobRunner); tests turn it off
) -> Flask:
    ctx = ctx or ServiceContext.open(config)
    app = Flask(__name__)
    ctx.attach(app)
    install_common(
        app, "signing", max_body_bytes=ctx.config.service.max_body_bytes, schema=ctx.schema()
    )
    signing = ctx.config.signing
    engine = SigningEngine(
        ctx.db,
        ctx.keys,
        ctx.authority.issuers,
        signing,
        otp_sender(ctx.config),
        ctx.sealer,
        ctx.profiles,
    )
    app.extensions[views.EXTENSION] = engine
    if start_jobs:
        runner = JobRunner(ctx.db)
        runner.every(
            "signing-key-cleanup",
            timedelta(minutes=signing.key_cleanup_interval_minutes),
            lambda now: log.info("destroyed %d retired keys", engine.destroy_retired_keys(now)),
        )
        runner.start()
        app.extensions[JOBS] = runner
    app.register_blueprint(views.bp)
    return app
