"""Every service in one process, dispatched by URL prefix as nginx does in production.

The prefix is not stripped: each application sees the full path, in development and in
production alike (deploy/nginx/sceau.conf).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ca.app import create_app as create_ca
from ca.config import SceauConfig
from ca.context import ServiceContext
from crl.app import create_app as create_crl
from ocsp.app import create_app as create_ocsp
from registration.app import create_app as create_registration
from signing.app import create_app as create_signing
from tsa.app import create_app as create_tsa

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
    ctx: ServiceContext | None = None,
    *,
    start_jobs: bool = True,
) -> PrefixDispatcher:
    # One context for all services: one PKCS#11 session and one database pool per process.
    ctx = ctx or ServiceContext.open(config)
    ca_app = create_ca(ctx=ctx)
    registration = create_registration(ctx=ctx, start_jobs=start_jobs)
    crl = create_crl(ctx=ctx, start_jobs=start_jobs)
    return PrefixDispatcher(
        ca_app,  # /healthz, /metrics and /ca/... (the process's metrics cover every service)
        {
            "/ra/": registration,
            "/ca/": ca_app,
            "/audit/": ca_app,
            "/tsa/": create_tsa(ctx=ctx, start_jobs=start_jobs),
            "/ocsp/": create_ocsp(ctx=ctx, start_jobs=start_jobs),
            "/crl/": crl,
            "/certs/": crl,
            "/policies/": crl,
            "/csc/": create_signing(ctx=ctx, start_jobs=start_jobs),
        },
    )
