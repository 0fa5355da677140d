"""The one place that wires the services together: each service's app with what it needs
from the others (the CA's key custodian and issuance listeners, the audit service's
timestamper), and each service's scheduled jobs.

Development runs every service in one process (``sceau.devserver``); production runs each
under its own gunicorn (deploy/systemd/sceau@.service):

    gunicorn -c /etc/sceau/gunicorn.conf.py 'sceau.services:create_app("tsa")'

where deploy/gunicorn.conf.py's ``post_worker_init`` hook starts the worker's jobs.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from audit import app as audit_app
from audit.checkpoint_job import CLIENT, HttpTimestamper, Timestamper
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
from tsa.authority import TimestampAuthority

SERVICES = ("ca", "registration", "tsa", "ocsp", "crl", "signing", "audit")

JOBS: dict[str, Callable[[JobRunner, Flask], None]] = {
    "ca": ca_app.register_app_jobs,
    "registration": registration_app.register_app_jobs,
    "ocsp": ocsp_app.register_app_jobs,
    "crl": crl_app.register_app_jobs,
    "signing": signing_app.register_app_jobs,
    "audit": audit_app.register_app_jobs,
}


class LocalTimestamper:
    """The audit checkpoints' Timestamper answered by this process's TSA engine, no HTTP."""

    def __init__(self, authority: TimestampAuthority) -> None:
        self.authority = authority

    def timestamp(self, request: bytes) -> bytes:
        answer, _failure = self.authority.respond(request, client=CLIENT)
        return answer  # a rejection is a TimeStampResp too; the maker reads its status


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
    return build(name, PkiContext.open())


def start_jobs(name: str, app: Flask) -> JobRunner:
    """Called by deploy/gunicorn.conf.py in each worker, after fork."""
    runner = JobRunner(context(app).db)
    register_jobs(runner, name, app)
    runner.start()
    return runner
