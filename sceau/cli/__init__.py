"""The `sceau` command line (README, "Command line"): the parser and ``main``.

The commands live by subject in this package (init, serve, clients, officers, proofs,
audit, crl, policies). A command names its handler as ``"module:function"``; ``main``
imports that module only when the command runs, so `sceau --help` or `sceau proof hold`
does not load the machinery of every other command (gunicorn, the services, the ceremony).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable
from typing import Any, cast

from core.errors import SceauError

Handler = Callable[[argparse.Namespace], int]


class _Commands:
    """The subcommands of one subject (``sceau <subject> <command>``), handled by
    ``sceau.cli.<module>``."""

    def __init__(self, sub: Any, subject: str, help_text: str, module: str) -> None:
        parser = sub.add_parser(subject, help=help_text)
        self.sub = parser.add_subparsers(dest=f"{subject}_command", required=True)
        self.module = module

    def add(
        self, name: str, help_text: str, handler: str, *, home: bool = True
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self.sub.add_parser(name, help=help_text)
        if home:
            parser.add_argument("--home", default=argparse.SUPPRESS, help="home folder")
        parser.set_defaults(handler=f"{self.module}:{handler}")
        return parser

    def on_proof(self, name: str, help_text: str, handler: str) -> argparse.ArgumentParser:
        """A command on one identity proof, named by its ID."""
        parser = self.add(name, help_text, handler)
        parser.add_argument("proof_id")
        return parser


def _add_home_commands(sub: Any) -> None:
    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
        parser.add_argument("--home", default=argparse.SUPPRESS, help="home folder")
        parser.set_defaults(handler=f"{name}:run")
        return parser

    p = command("init", "development key ceremony, config and schema (idempotent)")
    p.add_argument("--base-url", default="http://127.0.0.1:8000", help="public base URL")
    p.add_argument("--documents-url", default="", help="https base of CPS/PDS URLs")
    p.add_argument("--database-url", default=None, help="SQLAlchemy URL (default SQLite)")
    p.add_argument("--token-label", default="sceau", help="PKCS#11 token label")

    p = command("serve", "run every service in one gunicorn server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--access-log", action="store_true")


def _add_account_commands(sub: Any) -> None:
    client = _Commands(sub, "client", "platform API clients", "clients")
    p = client.add("add", "create a client and print its token once", "add")
    p.add_argument("name")
    p.add_argument("--profile", action="append", required=True, help="repeat for each profile")
    p = client.add(
        "webhook-secret",
        "create or replace a client's webhook secret, printed once",
        "webhook_secret",
    )
    p.add_argument("name")

    officer = _Commands(sub, "officer", "officer and auditor accounts", "officers")
    p = officer.add("add", "create an account; print its password and TOTP once", "add")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=["ra-officer", "auditor", "admin"])


def _add_record_commands(sub: Any) -> None:
    proof = _Commands(sub, "proof", "identity proofs", "proofs")
    p = proof.on_proof("approve", "record an officer's approval of a pending proof", "approve")
    p.add_argument("--officer", required=True, help="the approving officer's name")
    p = proof.on_proof("hold", "put a proof on legal hold: the retention purge skips it", "hold")
    p.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    proof.on_proof("release", "lift a legal hold", "release")
    p = proof.on_proof("export", "subject-access export: record.json and the files", "export")
    p.add_argument("--out", required=True, help="folder that receives <proof id>/ or .zip")
    p.add_argument("--zip", action="store_true", help="one zip archive instead of a folder")

    retention = _Commands(sub, "retention", "identity-proof retention", "proofs")
    retention.add("purge", "purge the records past retention now", "purge")

    leftovers = _Commands(sub, "leftovers", "what failures left behind", "leftovers")
    leftovers.add("list", "stale certificate reservations and keys no record names", "show")
    leftovers.add(
        "resolve", "abandon the stale reservations, destroy the unrecorded keys now", "resolve"
    )


def _add_trust_commands(sub: Any) -> None:
    crl = _Commands(sub, "crl", "certificate revocation lists", "crl")
    crl.add("publish", "build, sign and publish every CRL now", "publish")

    audit = _Commands(sub, "audit", "audit log", "audit")
    p = audit.add(
        "verify", "check the chain, checkpoints and timestamps; exit 1 on tampering", "verify"
    )
    p.add_argument("--export", metavar="FILE", help="verify an export offline (no database)")
    p = audit.add("checkpoint", "sign and timestamp a checkpoint of the log now", "checkpoint")
    p.set_defaults(handler="checkpoint:checkpoint")

    policies = _Commands(sub, "policies", "certification policy documents", "policies")
    p = policies.add(
        "render", "refresh the generated tables in policies/*.md", "render", home=False
    )
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sceau", description="Sceau certification authority")
    parser.add_argument("--home", help="home folder (default $SCEAU_HOME, else ./.sceau)")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_home_commands(sub)
    _add_account_commands(sub)
    _add_record_commands(sub)
    _add_trust_commands(sub)
    return parser


def handler(name: str) -> Handler:
    """The function ``"module:function"`` of this package names."""
    module, _, function = name.partition(":")
    return cast(Handler, getattr(importlib.import_module(f"{__name__}.{module}"), function))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Imported before logging is set up: what libraries log while they load (alembic's
    # plugins...) is not for the operator.
    command = handler(args.handler)
    # APScheduler logs every run of every job at INFO (several a second); failures of our
    # jobs are logged by core.jobs itself.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return int(command(args))
    except SceauError as exc:
        print(f"sceau: {exc.detail}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
