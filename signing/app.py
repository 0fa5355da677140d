"""Remote signing service (CSC API v2, ``/csc/v2/...``), plus /healthz and /metrics.
In production: ``gunicorn 'signing.app:create_app()'``."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask
from werkzeug.exceptions import HTTPException

from core.http.service import make_service, provide, provided
from core.jobs import JobRunner
from pki.context import PkiContext, context
from signing import views
from signing.custodian import sweep_orphan_keys
from signing.engine import SigningEngine
from signing.otp import otp_sender

log = logging.getLogger(__name__)

KEY_SWEEP_INTERVAL = timedelta(hours=1)


def create_app(ctx: PkiContext) -> Flask:
    app = make_service(__name__, "signing", ctx)
    engine = SigningEngine(
        db=ctx.db,
        keys=ctx.keys,
        issuers=ctx.issuers,
        config=ctx.config.signing,
        otp_sender=otp_sender(ctx.config),
        sealer=ctx.sealer,
        profiles=ctx.profiles,
    )
    provide(app, engine)
    app.register_blueprint(views.bp)
    # The common handlers answer problem+json; this service answers CSC's error object.
    app.register_error_handler(HTTPException, views.http_error)
    app.register_error_handler(Exception, views.unexpected_error)
    return app


def register_app_jobs(runner: JobRunner, app: Flask) -> None:
    """The clean-up of retired subscriber keys, and the sweep of keys no record names."""
    engine = provided(SigningEngine, app)
    runner.every(
        "signing-key-sweep",
        KEY_SWEEP_INTERVAL,
        lambda now: log.info(
            "%d unrecorded keys destroyed",
            len(sweep_orphan_keys(engine.db, engine.keys, now=now)),
        ),
    )
    runner.every(
        "signing-key-cleanup",
        timedelta(minutes=context(app).config.signing.key_cleanup_interval_minutes),
        lambda now: log.info("destroyed %d retired keys", engine.destroy_retired_keys(now)),
    )
