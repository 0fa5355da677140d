"""Registration authority service: identity proofs (``/ra/...``)."""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Flask, Response, request

from ca.config import SceauConfig
from ca.context import ServiceContext
from ca.errors import ErrorKind
from ca.jobs import JobRunner
from ca.web import install_common, problem
from registration import admin, api, retention, webhooks

log = logging.getLogger(__name__)

JOBS = "sceau_registration_jobs"


def create_app(
    config: SceauConfig | None = None,
    ctx: ServiceContext | None = None,
    *,
    start_jobs: bool = True,  # retention purge, webhook delivery (ca.jobs); tests turn it off
) -> Flask:
    ctx = ctx or ServiceContext.open(config)
    app = Flask(__name__)
    ctx.attach(app)
    body_limit = ctx.config.service.max_body_bytes
    upload_limit = ctx.config.registration.max_upload_bytes
    # Evidence uploads (up to max_upload_bytes) are the one exception to the body limit:
    # the common check lets the larger size through, the hook below puts the service
    # limit back on every other route, both before a byte of the body is read.
    install_common(
        app, "registration", max_body_bytes=max(body_limit, upload_limit), schema=ctx.schema()
    )
    app.config["MAX_CONTENT_LENGTH"] = body_limit

    @app.before_request
    def _body_limit() -> Response | None:
        limit = upload_limit if request.endpoint == api.UPLOAD_ENDPOINT else body_limit
        if request.content_length is not None and request.content_length > limit:
            return problem(ErrorKind.TOO_LARGE, f"body larger than {limit} bytes")
        return None

    app.register_blueprint(api.bp)
    admin.install(app)  # the officer UI, /ra/admin
    if start_jobs:
        runner = JobRunner(ctx.db)
        settings = ctx.config.registration
        runner.every(
            "identity-proof-retention",
            timedelta(minutes=settings.retention_purge_interval_minutes),
            lambda now: retention.run_purge(ctx.db, settings, now=now),
        )
        runner.every(
            "webhook-delivery",
            timedelta(seconds=max(5, min(60, settings.webhook_retry_seconds))),
            lambda now: log.debug(
                "webhooks: %d delivered",
                webhooks.deliver_due(ctx.db, ctx.sealer, settings, now=now),
            ),
        )
        runner.start()
        app.extensions[JOBS] = runner
    return app
