"""Timestamping service (RFC 3161, RFC 5816, ETSI EN 319 422): POST /tsa, plus /healthz
and /metrics. In production: ``gunicorn 'sceau.services:create_app("tsa")'``."""

from __future__ import annotations

import logging

from flask import Flask

from core.http.service import make_service, provide
from pki.context import PkiContext
from tsa import views
from tsa.access import Authenticator, RateLimiter
from tsa.authority import TimestampAuthority
from tsa.clock import TimeSource

log = logging.getLogger(__name__)


def create_app(
    ctx: PkiContext,
    *,
    clock: TimeSource | None = None,  # tests pass a fake; default from [tsa] clock_check
) -> Flask:
    tsa = ctx.config.tsa
    app = make_service(__name__, "tsa", ctx)
    authority = TimestampAuthority.from_config(
        ctx.config, ctx.db, ctx.keys, ctx.profiles, clock=clock
    )
    provide(app, authority)
    service = views.TsaService(
        authority,
        Authenticator(ctx.db, tsa.auth),
        RateLimiter(tsa.rate_limit, tsa.rate_burst),
    )
    provide(app, service)
    app.register_blueprint(views.bp)
    # Flask's way to put WSGI middleware in front of an application (tsa/views.py).
    app.wsgi_app = views.FastPath(app.wsgi_app, service)  # type: ignore[method-assign]
    if clock is None and tsa.clock_check == "off":
        log.warning(
            'TSA CLOCK CHECK OFF ([tsa] clock_check = "off" in %s): tokens state the system'
            " time without checking that NTP keeps it within %d ms of UTC. Not acceptable"
            ' for a trust service (EN 319 421 TIS-7.7.1-07); set clock_check = "kernel".',
            ctx.config.home,
            tsa.accuracy_ms,
        )
    return app
