"""OCSP responder (RFC 6960, the RFC 9919 lightweight profile): ``/ocsp``.

Wires the engine to the core (status from ``pki.status``, responder keys in the token,
pre-signed responses in the database), the per-worker answer cache in front of Flask,
and the scheduled jobs (pre-signing, responder renewal).
"""

from __future__ import annotations

from datetime import timedelta

from flask import Flask

from core.config import OcspConfig
from core.errors import ConfigError
from core.http.service import make_service, provide, provided
from core.jobs import JobRunner
from ocsp import views
from ocsp.cache import AnswerCache, EpochWatch
from ocsp.engine import Engine
from ocsp.jobs import register_jobs
from pki.context import PkiContext, context
from pki.status import DatabaseStatusSource


def check_config(config: OcspConfig) -> None:
    if config.response_validity_hours < 1:
        raise ConfigError("[ocsp] response_validity_hours must be at least 1")
    if not 1 <= config.revocation_check_ms <= 1000:
        # Revocation must be visible within a second (issue 5); 0 would poll per request.
        raise ConfigError("[ocsp] revocation_check_ms must be between 1 and 1000")
    if not 0 < config.presign_interval_minutes * 60 < config.response_validity_hours * 1800:
        raise ConfigError(
            "[ocsp] presign_interval_minutes must be positive and under half of"
            " response_validity_hours, or responses would go stale before being re-signed"
        )
    if config.max_request_bytes < 64 or config.max_request_certs < 1 or config.cache_entries < 1:
        raise ConfigError("[ocsp] max_request_bytes, max_request_certs, cache_entries too small")


def create_app(ctx: PkiContext) -> Flask:
    settings = ctx.config.ocsp
    check_config(settings)
    app = make_service(__name__, "ocsp", ctx)
    app.url_map.converters["ocsp_request"] = views.RequestPath
    source = DatabaseStatusSource(ctx.db)
    engine = Engine(
        db=ctx.db,
        keys=ctx.keys,
        source=source,
        registry=ctx.issuers,
        validity=timedelta(hours=settings.response_validity_hours),
        max_cert_ids=settings.max_request_certs,
    )
    provide(app, engine)
    provide(app, source)
    svc = views.OcspService(
        engine=engine,
        epochs=EpochWatch(source.epochs, settings.revocation_check_ms / 1000),
        cache=AnswerCache(settings.cache_entries),
        config=settings,
    )
    provide(app, svc)
    app.register_blueprint(views.bp)
    # Flask's __call__ goes through wsgi_app: the cache layer answers before Flask does.
    app.wsgi_app = views.CachedAnswers(app.wsgi_app, svc)  # type: ignore[method-assign]
    return app


def register_app_jobs(runner: JobRunner, app: Flask) -> None:
    """Pre-signing, re-signing after revocations, responder renewal (ocsp/jobs.py)."""
    register_jobs(runner, context(app), provided(Engine, app), provided(DatabaseStatusSource, app))
