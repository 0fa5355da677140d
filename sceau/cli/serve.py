"""`sceau serve`: every service in one gunicorn server (sceau.devserver)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from core.config import load_config
from sceau.cli.common import home
from sceau.devserver import create_app
from sceau.services import frozen


class DevServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, args: argparse.Namespace, where: Path) -> None:
        self.args = args
        self.home = where
        super().__init__()

    def load_config(self) -> None:
        args = self.args
        self.cfg.set("bind", f"{args.host}:{args.port}")
        self.cfg.set("workers", args.workers)
        self.cfg.set("threads", args.threads)
        # Problem+json for unparsable requests; headers gathered off-thread (slowloris).
        self.cfg.set("worker_class", "core.http.worker.ProblemThreadWorker")
        self.cfg.set("keepalive", 5)
        self.cfg.set("accesslog", "-" if args.access_log else None)
        self.cfg.set("timeout", 60)
        # gunicorn's control socket defaults to one path per user ($HOME/.gunicorn): two
        # dev servers would take each other's.
        self.cfg.set("control_socket", str(self.home / "gunicorn.ctl"))

    def load(self) -> Any:
        # Runs in each worker after fork: every worker opens its own PKCS#11 session.
        return frozen(create_app(load_config(self.home)))


def run(args: argparse.Namespace) -> int:
    where = home(args)
    config = load_config(where)
    base = config.service.base_url.rstrip("/")
    bind = f"{args.host}:{args.port}"
    print(
        f"""Sceau is starting on http://{bind} (public base URL {base}), home {where}.
Next:
  curl {base}/healthz
  .venv/bin/sceau client add acme-sign --profile person-lcp --profile seal-lcp --home {where}
  then POST {base}/ra/api/v1/identity-proofs and {base}/ca/api/v1/certificates
  (API description: {base}/ca/openapi.json; walkthrough in README.md)""",
        flush=True,
    )
    DevServer(args, where).run()
    return 0
