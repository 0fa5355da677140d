"""Timestamping service (RFC 3161, RFC 5816, ETSI EN 319 422): POST /tsa, plus /healthz
and /metrics. In production: ``gunicorn 'tsa.app:create_app()'``."""

from __future__ import annotations

import logging

from flask import Flask

from ca.config import SceauConfig
from ca.context import ServiceContext
from ca.jobs import JobRunner
from ca.web import install_common
from tsa import checkpoint_job, views
from tsa.access import Authenticator, RateLimiter
from tsa.authority import TimestampAuthority
from tsa.clock import TimeSource

log = logging.getLogger(__name__)


def create_app(
    config: SceauConfig | None = None,
    ctx: ServiceContext | None = None,
    *,
    start_jobs: bool = True,  # scheduled jobs (ca.jobs.JobRunner): the audit checkpoints
    clock: TimeSource | None = None,  # tests pass a fake; default from [tsa] clock_check
) -> Flask:
    ctx = ctx or ServiceContext.open(config)
    tsa = ctx.config.tsa
    app = Flask(__name__)
    ctx.attach(app)
    install_common(
        app, "tsa", max_body_bytes=ctx.config.service.max_body_bytes, schema=ctx.schema()
    )
    authority = TimestampAuthority.from_config(
        ctx.config, ctx.db, ctx.keys, ctx.profiles, clock=clock
    )
    service = views.TsaService(
        authority,
        Authenticator(ctx.db, tsa.auth),
        RateLimiter(tsa.rate_limit, tsa.rate_burst),
    )
    app.extensions[views.EXTENSION] = service
    app.register_blueprint(views.bp)
    # Flask's way to put WSGI middleware in front of an application (tsa/views.py).
    app.wsgi_app = views.FastPath(app.wsgi_app, service)  # type: ignore[method-assign]
    if start_jobs:
        # Audit checkpoints are timestamped by this engine (tsa/checkpoint_job.py).
        runner = JobRunner(ctx.db)
        maker = checkpoint_job.checkpoint_maker(ctx, authority)
        checkpoint_job.register(runner, maker, ctx.config.audit)
        runner.start()
        app.extensions[checkpoint_job.JOB_NAME] = runner
    if clock is None and tsa.clock_check == "off":
        log.warning(
            'TSA CLOCK CHECK OFF ([tsa] clock_check = "off" in %s): tokens state the system'
            " time without checking that NTP keeps it within %d ms of UTC. Not acceptable"
            ' for a trust service (EN 319 421 TIS-7.7.1-07); set clock_check = "kernel".',
            ctx.config.home,
            tsa.accuracy_ms,
        )
    return app
