"""`sceau officer add`: officer and auditor accounts for /ra/admin and /audit."""

from __future__ import annotations

import argparse

from core.accounts.officers import create_officer, parse_role
from sceau.cli.common import now, opened, operator


def add(args: argparse.Namespace) -> int:
    with opened(args) as ctx:
        new = create_officer(
            ctx.db, ctx.sealer, args.name, parse_role(args.role), now=now(), actor=operator()
        )
    # Shown once, on the terminal only (never logged): the account is unusable without them.
    print(f"officer {new.name} ({new.role}) created. Give them, once and privately:")
    print(f"  password: {new.password}")
    print(f"  TOTP (scan or paste into an authenticator app): {new.provisioning_uri}")
    return 0
