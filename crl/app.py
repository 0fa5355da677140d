"""Public repository: CA certificates at ``/certs/<issuer>.crt`` (AIA caIssuers).

CRL publication (``/crl/<issuer>.crl``) arrives with the revocation-status issue.
"""

from __future__ import annotations

from flask import Flask, Response

from ca.config import SceauConfig
from ca.context import ServiceContext, context
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
        app, "crl", max_body_bytes=ctx.config.service.max_body_bytes, schema=ctx.schema()
    )

    @app.get("/certs/<issuer_id>.crt")
    def ca_certificate(issuer_id: str) -> Response:
        issuer = context().authority.issuers.find(issuer_id)
        # RFC 5280 section 4.2.2.1: a single DER certificate, application/pkix-cert.
        return Response(
            issuer.certificate,
            mimetype="application/pkix-cert",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    return app
