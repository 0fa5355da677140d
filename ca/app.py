"""CA service: the certificate API (``/ca/api/v1``) and its OpenAPI description."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from flask import Flask, Response

from ca import api
from ca.issuance import CertificateAuthority
from ca.leftovers import abandon_stale_reservations as abandon_stale
from ca.openapi import openapi_document
from core.audit.config_audit import record_config
from core.http.service import make_service, provide
from core.jobs import JobRunner
from pki.context import PkiContext, context
from pki.custody import IssuanceListener, KeyCustodian

log = logging.getLogger(__name__)

LEFTOVER_CHECK = timedelta(minutes=5)


def create_app(
    ctx: PkiContext,
    *,
    custodian: KeyCustodian,
    listeners: Sequence[IssuanceListener] = (),
) -> Flask:
    """``custodian`` keeps the keys generated in our token, ``listeners`` hear of each
    issuance (both wired by ``sceau/``: the CA writes certificate rows only)."""
    app = make_service(__name__, "ca", ctx)
    provide(app, CertificateAuthority(ctx, custodian, listeners))
    app.register_blueprint(api.bp)
    # A changed sceau.toml is a configuration change: audited when the CA starts on it.
    record_config(ctx.db, ctx.config, now=datetime.now(UTC), actor="system:ca-service")
    document = json.dumps(
        openapi_document(
            ctx.config.service.base_url, [p.id for p in ctx.profiles.subscriber_profiles()]
        ),
        indent=1,
    )

    @app.get("/ca/openapi.json")
    def openapi() -> Response:
        return Response(document, mimetype="application/json")

    return app


def register_app_jobs(runner: JobRunner, app: Flask) -> None:
    """Reservations left by an issuance that never finished (ca/leftovers.py)."""
    db = context(app).db
    runner.every(
        "certificate-reservations",
        LEFTOVER_CHECK,
        lambda now: log.info("%d stale reservations abandoned", abandon_stale(db, now=now)),
    )
