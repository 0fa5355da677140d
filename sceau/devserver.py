"""Every service in one process, dispatched by URL prefix as nginx does in production.

The prefix is not stripped: each application sees the full path, in development and in
production alike (deploy/nginx/sceau.conf).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from core.config import SceauConfig
from core.http.service import provided
from core.jobs import JobRunner
from pki.context import PkiContext
from sceau import services
from sceau.timestamping import LocalTimestamper
from tsa.authority import TimestampAuthority

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class PrefixDispatcher:
    def __init__(self, default: WsgiApp, routes: dict[str, WsgiApp]) -> None:
        self.default = default
        # Longest prefix first, so "/ca/" never shadows a longer route.
        self.routes = sorted(routes.items(), key=lambda item: -len(item[0]))

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        for prefix, app in self.routes:
            if path == prefix.rstrip("/") or path.startswith(prefix):
                return app(environ, start_response)
        return self.default(environ, start_response)


def create_app(
    config: SceauConfig | None = None,
    ctx: PkiContext | None = None,
    *,
    start_jobs: bool = True,
) -> PrefixDispatcher:
    # One context for all services: one PKCS#11 session and one database pool per process.
    ctx = ctx or PkiContext.open(config)
    apps = {name: services.build(name, ctx) for name in services.SERVICES if name != "audit"}
    # The audit checkpoints are timestamped by this process's TSA, without HTTP.
    tsa = provided(TimestampAuthority, apps["tsa"])
    apps["audit"] = services.build("audit", ctx, LocalTimestamper(tsa))
    if start_jobs:
        runner = JobRunner(ctx.db)
        for name, app in apps.items():
            services.register_jobs(runner, name, app)
        runner.start()
    crl = apps["crl"]
    return PrefixDispatcher(
        apps["ca"],  # /healthz, /metrics and /ca/... (the process's metrics cover every service)
        {
            "/ra/": apps["registration"],
            "/ca/": apps["ca"],
            "/audit/": apps["audit"],
            "/tsa/": apps["tsa"],
            "/ocsp/": apps["ocsp"],
            "/crl/": crl,
            "/certs/": crl,
            "/policies/": crl,
            "/csc/": apps["signing"],
        },
    )
