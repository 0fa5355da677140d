"""The one skeleton of every Sceau service: a Flask app carrying the service context, the
common HTTP behaviour (``core.http.problems``), and the objects its views need.

Objects are provided by type and found by type (``provide(app, engine)``, then
``provided(Engine)`` in a view): one convention for every service, checked by mypy. A
factory builds; it starts nothing. Scheduled jobs are registered on a ``JobRunner`` by the
service's ``register_jobs`` and started by ``sceau/`` (development) or the gunicorn hook
(production).
"""

from __future__ import annotations

from typing import TypeVar, cast

from flask import Flask, current_app

from core.accounts.throttle import FailureThrottle
from core.context import ServiceContext
from core.http.problems import install_common
from core.http.readiness import install_readiness

T = TypeVar("T")


def make_service(
    import_name: str,
    service: str,
    ctx: ServiceContext,
    *,
    max_body_bytes: int | None = None,
) -> Flask:
    """A service's Flask app: ``service`` names it in metrics, /healthz and logs."""
    app = Flask(import_name)
    ctx.attach(app)
    install_common(
        app,
        service,
        max_body_bytes=max_body_bytes or ctx.config.service.max_body_bytes,
        schema=ctx.schema(),
    )
    install_readiness(app, ctx.db, ctx.keys)  # GET /readyz: database and HSM answer
    # Failed API tokens, per client address (core.accounts.clients.authenticate).
    provide(app, FailureThrottle(ctx.config.service.auth_failures_per_minute))
    return app


def _key(kind: type[object]) -> str:
    return f"sceau:{kind.__module__}.{kind.__qualname__}"


def provide(app: Flask, value: object, kind: type[object] | None = None) -> None:
    """Make ``value`` the app's object of its type (or of ``kind``)."""
    app.extensions[_key(kind or type(value))] = value


def provided(kind: type[T], app: Flask | None = None) -> T:
    """The object of type ``kind`` that the app was given (the current app by default)."""
    # provide() stored it under its own type's key: the cast only restates that.
    return cast(T, (app or current_app).extensions[_key(kind)])
