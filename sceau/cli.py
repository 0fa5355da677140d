"""The `sceau` command line (design.md, "Command line")."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.accounts.clients import create_client
from core.config import default_home, load_config
from core.errors import SceauError
from core.store.db import Database
from pki.profiles import ProfileSet

log = logging.getLogger("sceau")


def _home(args: argparse.Namespace) -> Path:
    return Path(args.home).resolve() if args.home else default_home()


def _operator() -> str:
    try:
        return f"operator:{getpass.getuser()}"
    except (KeyError, OSError):
        return "operator:unknown"


def cmd_init(args: argparse.Namespace) -> int:
    from sceau.home import init_home

    config, steps, ceremony = init_home(
        _home(args),
        base_url=args.base_url,
        documents_url=args.documents_url,
        database_url=args.database_url,
        token_label=args.token_label,
    )
    print(f"Sceau home: {config.home}")
    for step in steps + ceremony:
        print(f"  - {step}")
    if not ceremony:
        print("  - the CAs existed already: nothing changed")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from gunicorn.app.base import BaseApplication

    home = _home(args)
    config = load_config(home)
    bind = f"{args.host}:{args.port}"

    class _Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", bind)
            self.cfg.set("workers", args.workers)
            self.cfg.set("threads", args.threads)
            self.cfg.set("accesslog", "-" if args.access_log else None)
            self.cfg.set("timeout", 60)
            # gunicorn's control socket defaults to one path per user
            # ($HOME/.gunicorn): two dev servers would take each other's.
            self.cfg.set("control_socket", str(home / "gunicorn.ctl"))

        def load(self) -> Any:
            # Runs in each worker after fork: every worker opens its own PKCS#11 session.
            from sceau.devserver import create_app

            return create_app(load_config(home))

    base = config.service.base_url.rstrip("/")
    print(
        f"""Sceau is starting on http://{bind} (public base URL {base}), home {home}.
Next:
  curl {base}/healthz
  .venv/bin/sceau client add acme-sign --profile person-lcp --profile seal-lcp --home {home}
  then POST {base}/ra/api/v1/identity-proofs and {base}/ca/api/v1/certificates
  (API description: {base}/ca/openapi.json; walkthrough in README.md)""",
        flush=True,
    )
    _Server().run()
    return 0


def cmd_client_add(args: argparse.Namespace) -> int:
    config = load_config(_home(args))
    db = Database(config.database.url)
    try:
        token = create_client(
            db, ProfileSet.load(), args.name, args.profile, now=datetime.now(UTC), actor=_operator()
        )
    finally:
        db.dispose()
    print(f"Client {args.name!r} created for {', '.join(args.profile)}.")
    print("API token (shown once, store it now):")
    print(token)
    return 0


def cmd_officer_add(args: argparse.Namespace) -> int:
    from core.accounts.officers import create_officer, parse_role
    from core.hsm.envelope import Sealer
    from core.hsm.keystore import KeyStore

    config = load_config(_home(args))
    db = Database(config.database.url)
    keys = KeyStore(config.hsm)
    try:
        new = create_officer(
            db,
            Sealer(keys),
            args.name,
            parse_role(args.role),
            now=datetime.now(UTC),
            actor=_operator(),
        )
    finally:
        keys.close()
        db.dispose()
    # Shown once, on the terminal only (never logged): the account is unusable without them.
    print(f"officer {new.name} ({new.role}) created. Give them, once and privately:")
    print(f"  password: {new.password}")
    print(f"  TOTP (scan or paste into an authenticator app): {new.provisioning_uri}")
    return 0


def cmd_proof_approve(args: argparse.Namespace) -> int:
    from registration.decisions import approve_proof

    config = load_config(_home(args))
    db = Database(config.database.url)
    try:
        proof = approve_proof(
            db,
            args.proof_id,
            args.officer,
            now=datetime.now(UTC),
            max_age=timedelta(days=config.registration.proof_max_age_days),
        )
    finally:
        db.dispose()
    print(f"identity proof {proof.id}: {proof.status}, {len(proof.approvals)} approval(s)")
    return 0


def _print_report(report: Any, source: str) -> int:
    for label, fp in sorted(report.keys.items()):
        print(f"audit key {label}: SHA-256 {fp}")
    for fp in getattr(report, "roots", []):
        print(f"trusted root (from the export; compare with the published one): SHA-256 {fp}")
    if report.failure is not None:
        print(
            f"audit {source} BROKEN at {report.failure}"
            f" ({report.events} events and {report.checkpoints} checkpoints verified before it)"
        )
        return 1
    print(
        f"audit {source} intact: {report.events} events, {report.checkpoints} checkpoints"
        " (signatures and timestamps verified)"
    )
    if report.uncovered:
        print(f"note: {report.uncovered} newest event(s) not yet covered by a checkpoint")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    if args.export:
        from audit.export import ExportUnreadable, verify_export

        try:
            text = Path(args.export).read_text(encoding="utf-8")
            return _print_report(verify_export(text), f"export {args.export}")
        except (OSError, UnicodeDecodeError, ExportUnreadable) as exc:
            print(f"sceau: cannot verify {args.export}: {exc}", file=sys.stderr)
            return 2
    from audit.checkpoints import verify_database

    config = load_config(_home(args))
    db = Database(config.database.url)
    try:
        report = verify_database(db)
    finally:
        db.dispose()
    return _print_report(report, "log")


def cmd_audit_checkpoint(args: argparse.Namespace) -> int:
    from audit.checkpoint_job import checkpoint_maker
    from pki.context import PkiContext
    from sceau.services import LocalTimestamper
    from tsa.authority import TimestampAuthority

    config = load_config(_home(args))
    ctx = PkiContext.open(config)
    authority = TimestampAuthority.from_config(ctx.config, ctx.db, ctx.keys, ctx.profiles)
    try:
        checkpoint = checkpoint_maker(ctx, LocalTimestamper(authority)).make(datetime.now(UTC))
    finally:
        authority.records.close()
        ctx.db.dispose()
    if checkpoint is None:
        print("audit log already checkpointed at its head: nothing to do")
        return 0
    print(
        f"audit checkpoint: {checkpoint.tree_size} events, Merkle root {checkpoint.root_hash},"
        f" signed with {checkpoint.key_label}, timestamped {checkpoint.at.isoformat()}"
    )
    return 0


def cmd_crl_publish(args: argparse.Namespace) -> int:
    from crl.publisher import CrlPublisher
    from crl.schedule import check_config
    from pki.context import PkiContext

    config = load_config(_home(args))
    check_config(config.crl)
    ctx = PkiContext.open(config)
    try:
        published = CrlPublisher(ctx, actor=_operator()).publish_all(datetime.now(UTC))
    finally:
        ctx.db.dispose()
    for crl in published:
        print(
            f"{crl.url}: number {crl.number}, {crl.entries} entries, {crl.size} bytes,"
            f" next update {crl.next_update.isoformat()}"
        )
    return 0


def _registration_context(args: argparse.Namespace) -> Any:
    from pki.context import PkiContext

    return PkiContext.open(load_config(_home(args)))


def cmd_proof_hold(args: argparse.Namespace) -> int:
    from registration.retention import set_legal_hold

    ctx = _registration_context(args)
    try:
        set_legal_hold(ctx.db, args.proof_id, args.reason, actor=_operator(), now=datetime.now(UTC))
    finally:
        ctx.db.dispose()
    print(f"identity proof {args.proof_id}: on legal hold, the retention purge skips it")
    return 0


def cmd_proof_release(args: argparse.Namespace) -> int:
    from registration.retention import release_legal_hold

    ctx = _registration_context(args)
    try:
        proof = release_legal_hold(ctx.db, args.proof_id, actor=_operator(), now=datetime.now(UTC))
    finally:
        ctx.db.dispose()
    print(f"identity proof {args.proof_id}: hold released (retained until {proof.retain_until})")
    return 0


def cmd_proof_export(args: argparse.Namespace) -> int:
    from registration.export import build_export, to_zip, write_directory

    ctx = _registration_context(args)
    try:
        export = build_export(
            ctx.db, ctx.sealer, args.proof_id, actor=_operator(), now=datetime.now(UTC)
        )
    finally:
        ctx.db.dispose()
    out = Path(args.out)
    if args.zip:
        target = out / f"{export.proof_id}.zip"
        out.mkdir(parents=True, exist_ok=True)
        try:
            with open(target, "xb") as handle:
                handle.write(to_zip(export))
        except FileExistsError:
            print(f"sceau: {target} exists already", file=sys.stderr)
            return 2
        target.chmod(0o600)
    else:
        target = write_directory(export, out)
    print(f"subject-access export of {export.proof_id}: {target} ({len(export.files)} file(s))")
    return 0


def cmd_retention_purge(args: argparse.Namespace) -> int:
    from registration.retention import purge_expired

    ctx = _registration_context(args)
    try:
        purged = purge_expired(
            ctx.db, years=ctx.config.registration.retention_years, now=datetime.now(UTC)
        )
    finally:
        ctx.db.dispose()
    print(f"retention purge: {len(purged)} record(s) purged")
    for proof_id in purged:
        print(f"  - {proof_id}")
    return 0


def cmd_client_webhook_secret(args: argparse.Namespace) -> int:
    from registration.webhooks import create_webhook_secret

    ctx = _registration_context(args)
    try:
        secret = create_webhook_secret(
            ctx.db, ctx.sealer, args.name, actor=_operator(), now=datetime.now(UTC)
        )
    finally:
        ctx.db.dispose()
    print(f"Webhook secret of client {args.name!r} (shown once; any earlier one is replaced):")
    print(secret)
    return 0


def cmd_policies_render(args: argparse.Namespace) -> int:
    from crl.policy_facts import Facts, PolicyDataError, render_all, stale_documents

    # The repository's documents state the profiles and the configuration defaults; a
    # running repository service renders its own configuration's figures (crl/policies.py).
    facts = Facts.defaults()
    try:
        if args.check:
            stale = stale_documents(facts)
            for name in stale:
                print(f"policies/{name}.md: generated tables differ from profiles/configuration")
            if stale:
                print("run `sceau policies render` to refresh them")
            return 1 if stale else 0
        changed = render_all(facts)
    except PolicyDataError as exc:
        print(f"sceau: {exc}", file=sys.stderr)
        return 2
    print(f"refreshed: {', '.join(changed)}" if changed else "policy documents up to date")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sceau", description="Sceau certification authority")
    parser.add_argument("--home", help="home folder (default $SCEAU_HOME, else ./.sceau)")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--home", default=argparse.SUPPRESS, help="home folder")
        return p

    p = command("init", "development key ceremony, config and schema (idempotent)")
    p.add_argument("--base-url", default="http://127.0.0.1:8000", help="public base URL")
    p.add_argument("--documents-url", default="", help="https base of CPS/PDS URLs")
    p.add_argument("--database-url", default=None, help="SQLAlchemy URL (default SQLite)")
    p.add_argument("--token-label", default="sceau", help="PKCS#11 token label")
    p.set_defaults(func=cmd_init)

    p = command("serve", "run every service in one gunicorn server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--access-log", action="store_true")
    p.set_defaults(func=cmd_serve)

    client = sub.add_parser("client", help="platform API clients").add_subparsers(
        dest="client_command", required=True
    )
    p = client.add_parser("add", help="create a client and print its token once")
    p.add_argument("--home", default=argparse.SUPPRESS)
    p.add_argument("name")
    p.add_argument("--profile", action="append", required=True, help="repeat for each profile")
    p.set_defaults(func=cmd_client_add)
    p = client.add_parser(
        "webhook-secret", help="create or replace a client's webhook secret, printed once"
    )
    p.add_argument("--home", default=argparse.SUPPRESS)
    p.add_argument("name")
    p.set_defaults(func=cmd_client_webhook_secret)

    officer = sub.add_parser("officer", help="officer and auditor accounts").add_subparsers(
        dest="officer_command", required=True
    )
    p = officer.add_parser("add", help="create an account; print its password and TOTP once")
    p.add_argument("--home", default=argparse.SUPPRESS)
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=["ra-officer", "auditor", "admin"])
    p.set_defaults(func=cmd_officer_add)

    proof = sub.add_parser("proof", help="identity proofs").add_subparsers(
        dest="proof_command", required=True
    )
    p = proof.add_parser("approve", help="record an officer's approval of a pending proof")
    p.add_argument("--home", default=argparse.SUPPRESS)
    p.add_argument("proof_id")
    p.add_argument("--officer", required=True, help="the approving officer's name")
    p.set_defaults(func=cmd_proof_approve)
    p = proof.add_parser("hold", help="put a proof on legal hold: the retention purge skips it")
    p.add_argument("--home", default=argparse.SUPPRESS)
    p.add_argument("proof_id")
    p.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    p.set_defaults(func=cmd_proof_hold)
    p = proof.add_parser("release", help="lift a legal hold")
    p.add_argument("--home", default=argparse.SUPPRESS)
    p.add_argument("proof_id")
    p.set_defaults(func=cmd_proof_release)
    p = proof.add_parser("export", help="subject-access export: record.json and the files")
    p.add_argument("--home", default=argparse.SUPPRESS)
    p.add_argument("proof_id")
    p.add_argument("--out", required=True, help="folder that receives <proof id>/ or .zip")
    p.add_argument("--zip", action="store_true", help="one zip archive instead of a folder")
    p.set_defaults(func=cmd_proof_export)

    retention = sub.add_parser("retention", help="identity-proof retention").add_subparsers(
        dest="retention_command", required=True
    )
    p = retention.add_parser("purge", help="purge the records past retention now")
    p.add_argument("--home", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_retention_purge)

    crl = sub.add_parser("crl", help="certificate revocation lists").add_subparsers(
        dest="crl_command", required=True
    )
    p = crl.add_parser("publish", help="build, sign and publish every CRL now")
    p.add_argument("--home", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_crl_publish)

    audit = sub.add_parser("audit", help="audit log").add_subparsers(
        dest="audit_command", required=True
    )
    p = audit.add_parser(
        "verify", help="check the chain, checkpoints and timestamps; exit 1 on tampering"
    )
    p.add_argument("--home", default=argparse.SUPPRESS)
    p.add_argument("--export", metavar="FILE", help="verify an export offline (no database)")
    p.set_defaults(func=cmd_audit_verify)
    p = audit.add_parser("checkpoint", help="sign and timestamp a checkpoint of the log now")
    p.add_argument("--home", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_audit_checkpoint)

    policies = sub.add_parser("policies", help="certification policy documents").add_subparsers(
        dest="policies_command", required=True
    )
    p = policies.add_parser("render", help="refresh the generated tables in policies/*.md")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    p.set_defaults(func=cmd_policies_render)
    return parser


def main(argv: list[str] | None = None) -> int:
    # APScheduler logs every run of every job at INFO (several a second); failures of our
    # jobs are logged by core.jobs itself.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SceauError as exc:
        print(f"sceau: {exc.detail}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
