"""Remote signing service (CSC API v2, ``/csc/v2/...``), plus /healthz and /metrics.
In production: ``gunicorn 'signing.app:create_app()'``."""

from __future__ import annotations

from flask import Flask

from ca.config import SceauConfig
from ca.context import ServiceContext
from ca.web import install_common
from signing import views
from signing.engine import SigningEngine
from signing.otp import FileOtpSender


def create_app(config: SceauConfig | None = None, ctx: ServiceContext | None = None) -> Flask:
    ctx = ctx or ServiceContext.open(config)
    app = Flask(__name__)
    ctx.attach(app)
    install_common(
        app, "signing", max_body_bytes=ctx.config.service.max_body_bytes, schema=ctx.schema()
    )
    signing = ctx.config.signing
    app.extensions[views.EXTENSION] = SigningEngine(
        ctx.db,
        ctx.keys,
        ctx.authority.issuers,
        signing,
        FileOtpSender(ctx.config.home / signing.otp_outbox),
    )
    app.register_blueprint(views.bp)
    return app
