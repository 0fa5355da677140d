"""Public repository: CRLs at ``/crl/<issuer>.crl`` and ``/crl/<issuer>-<shard>.crl``, CA
certificates at ``/certs/<issuer>.crt`` (AIA caIssuers), policy documents at ``/policies/``;
and the CRL publication jobs."""

from __future__ import annotations

from flask import Flask

from core.http.service import make_service, provide
from core.jobs import JobRunner
from crl import policies, views
from crl.publisher import CrlPublisher
from crl.schedule import register_jobs
from pki.context import PkiContext, context


def create_app(ctx: PkiContext) -> Flask:
    app = make_service(__name__, "crl", ctx)
    provide(app, views.NewestCrls(ctx.db))
    app.register_blueprint(views.bp)
    policies.install(app, ctx.config, ctx.profiles)  # /policies/: the published documents
    return app


def register_app_jobs(runner: JobRunner, app: Flask) -> None:
    """CRL publication on schedule and after revocations (crl/schedule.py)."""
    ctx = context(app)
    register_jobs(runner, CrlPublisher(ctx), ctx.config.crl)
