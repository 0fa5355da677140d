"""CA service: the certificate API (``/ca/api/v1``) and its OpenAPI description."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from flask import Flask, Response

from ca import api, auditui
from ca.config import SceauConfig
from ca.config_audit import record_config
from ca.context import ServiceContext, context
from ca.openapi import openapi_document
from ca.web import install_common


def create_app(config: SceauConfig | None = None, ctx: ServiceContext | None = None) -> Flask:
    ctx = ctx or ServiceContext.open(config)
    app = Flask(__name__)
    ctx.attach(app)
    install_common(app, "ca", max_body_bytes=ctx.config.service.max_body_bytes, schema=ctx.schema())
    app.register_blueprint(api.bp)
    auditui.install(app)  # /audit: the auditors' read-only UI
    # A changed sceau.toml is a configuration change: audited when the CA starts on it.
    record_config(ctx.db, ctx.config, now=datetime.now(UTC), actor="system:ca-service")

    @app.get("/ca/openapi.json")
    def openapi() -> Response:
        document = openapi_document(
            context().config.service.base_url,
            [p.id for p in context().profiles.subscriber_profiles()],
        )
        return Response(json.dumps(document, indent=1), mimetype="application/json")

    return app
