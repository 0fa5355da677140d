"""Public repository: CRLs at ``/crl/<issuer>.crl`` and ``/crl/<issuer>-<shard>.crl``, CA
certificates at ``/certs/<issuer>.crt`` (AIA caIssuers), policy documents at ``/policies/``;
and the CRL publication jobs."""

from __future__ import annotations

from flask import Flask

from ca.config import SceauConfig
from ca.context import ServiceContext
from ca.jobs import JobRunner
from ca.web import install_common
from crl import policies, views
from crl.publisher import CrlPublisher
from crl.schedule import check_config, register_jobs

JOBS = "crl.jobs"


def create_app(
    config: SceauConfig | None = None,
    ctx: ServiceContext | None = None,
    *,
    start_jobs: bool = True,  # scheduled jobs (ca.jobs.JobRunner); tests turn them off
) -> Flask:
    ctx = ctx or ServiceContext.open(config)
    check_config(ctx.config.crl)
    app = Flask(__name__)
    ctx.attach(app)
    install_common(
        app, "crl", max_body_bytes=ctx.config.service.max_body_bytes, schema=ctx.schema()
    )
    app.extensions[views.CACHE] = views.NewestCrls(ctx.db)
    app.register_blueprint(views.bp)
    policies.install(app, ctx.config, ctx.profiles)  # /policies/: the published documents
    if start_jobs:
        runner = JobRunner(ctx.db)
        register_jobs(runner, CrlPublisher(ctx.authority), ctx.config.crl)
        runner.start()
        app.extensions[JOBS] = runner
    return app
