"""OCSP responder (RFC 6960, the RFC 9919 lightweight profile): ``/ocsp``.

Wires the engine to the core (status from ``pki.status``, responder keys in the token,
pre-signed responses in the database), the per-worker answer cache in front of Flask,
and the scheduled jobs (pre-signing, responder renewal).
"""

from __future__ import annotations

from datetime import timedelta

from flask import Flask

from core.http.service import make_service, provide, provided
from core.jobs import JobRunner
from ocsp import views
from ocsp.cache import AnswerCache, EpochWatch
from ocsp.engine import Engine
from ocsp.jobs import register_jobs
from pki.context import PkiContext, context
from pki.status import DatabaseStatusSource


def create_app(ctx: PkiContext) -> Flask:
    settings = ctx.config.ocsp  # checked by core.config.OcspConfig when it loaded
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
