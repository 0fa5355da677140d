"""The one place that wires the services together: each service's app with what it needs
from the others (the CA's key custodian and issuance listeners, the audit service's
timestamper), and each service's scheduled jobs.

Development runs every service in one process (``sceau.devserver``); production runs each
under its own gunicorn (deploy/systemd/sceau@.service):

    gunicorn -c /etc/sceau/gunicorn.conf.py 'sceau.services:create_app("tsa")'

where deploy/gunicorn.conf.py's ``post_worker_init`` hook starts the worker's jobs.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import TypeVar

from flask import Flask

from audit import app as audit_app
from audit.checkpoint_job import HttpTimestamper, Timestamper
from ca import app as ca_app
from core.jobs import JobRunner
from crl import app as crl_app
from ocsp import app as ocsp_app
from pki.context import PkiContext, context
from registration import app as registration_app
from registration.retention import RetentionFollowsIssuance
from signing import app as signing_app
from signing.custodian import CredentialCustodian
from tsa import app as tsa_app

T = TypeVar("T")

SERVICES = ("ca", "registration", "tsa", "ocsp", "crl", "signing", "audit")

JOBS: dict[str, Callable[[JobRunner, Flask], None]] = {
    "ca": ca_app.register_app_jobs,
    "registration": registration_app.register_app_jobs,
    "ocsp": ocsp_app.register_app_jobs,
    "crl": crl_app.register_app_jobs,
    "signing": signing_app.register_app_jobs,
    "audit": audit_app.register_app_jobs,
}


def ca_service(ctx: PkiContext) -> Flask:
    return ca_app.create_app(
        ctx,
        custodian=CredentialCustodian(ctx.db, ctx.keys, ctx.config.signing),
        listeners=[RetentionFollowsIssuance(ctx.config.registration.retention_years)],
    )


def build(name: str, ctx: PkiContext, timestamper: Timestamper | None = None) -> Flask:
    """Service ``name``'s app on ``ctx``; the audit service timestamps over HTTP unless
    given a ``timestamper``."""
    match name:
        case "ca":
            return ca_service(ctx)
        case "registration":
            return registration_app.create_app(ctx)
        case "tsa":
            return tsa_app.create_app(ctx)
        case "ocsp":
            return ocsp_app.create_app(ctx)
        case "crl":
            return crl_app.create_app(ctx)
        case "signing":
            return signing_app.create_app(ctx)
        case "audit":
            url = ctx.config.service.base_url.rstrip("/") + "/tsa"
            return audit_app.create_app(ctx, timestamper=timestamper or HttpTimestamper(url))
    raise ValueError(f"no service {name!r}; one of {', '.join(SERVICES)}")


def register_jobs(runner: JobRunner, name: str, app: Flask) -> None:
    """Register service ``name``'s scheduled jobs (if it has any) on ``runner``."""
    if name in JOBS:
        JOBS[name](runner, app)


def create_app(name: str) -> Flask:
    """Production entry point, one service per gunicorn (``SCEAU_HOME`` names the home)."""
    return frozen(build(name, PkiContext.open()))


def frozen(app: T) -> T:
    """``app``, once built, with every object made so far moved out of the garbage
    collector's reach (``gc.freeze``): modules, models and the app itself live as long as
    the worker, and a request's collection then walks only the objects it made, not the
    two hundred thousand the imports left behind."""
    gc.collect()
    gc.freeze()
    return app


def start_jobs(name: str, app: Flask) -> JobRunner:
    """Called by deploy/gunicorn.conf.py in each worker, after fork."""
    runner = JobRunner(context(app).db)
    register_jobs(runner, name, app)
    runner.start()
    return runner
