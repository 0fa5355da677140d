"""Registration authority service: identity proofs (``/ra/...``)."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from flask import Flask, Response, request

from core.errors import ErrorKind
from core.http.problems import problem
from core.http.service import make_service
from core.jobs import JobRunner
from pki.context import PkiContext, context
from registration import admin, api, retention, webhooks
from registration.openapi import openapi_document

log = logging.getLogger(__name__)


def create_app(ctx: PkiContext) -> Flask:
    body_limit = ctx.config.service.max_body_bytes
    upload_limit = ctx.config.registration.max_upload_bytes
    # Evidence uploads (up to max_upload_bytes) are the one exception to the body limit:
    # the common check lets the larger size through, the hook below puts the service
    # limit back on every other route, both before a byte of the body is read.
    app = make_service(__name__, "registration", ctx, max_body_bytes=max(body_limit, upload_limit))
    app.config["MAX_CONTENT_LENGTH"] = body_limit

    @app.before_request
    def _body_limit() -> Response | None:
        limit = upload_limit if request.endpoint == api.UPLOAD_ENDPOINT else body_limit
        if request.content_length is not None and request.content_length > limit:
            return problem(ErrorKind.TOO_LARGE, f"body larger than {limit} bytes")
        return None

    app.register_blueprint(api.bp)
    admin.install(app)  # the officer UI, /ra/admin
    document = json.dumps(openapi_document(ctx.config.service.base_url), indent=1)

    @app.get("/ra/openapi.json")
    def openapi() -> Response:
        return Response(document, mimetype="application/json")

    return app


def register_app_jobs(runner: JobRunner, app: Flask) -> None:
    """The retention purge and webhook delivery."""
    ctx = context(app)
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
            "webhooks: %d delivered", webhooks.deliver_due(ctx.db, ctx.sealer, settings, now=now)
        ),
    )
