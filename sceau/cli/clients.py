"""`sceau client add | webhook-secret`: the platforms' API clients."""

from __future__ import annotations

import argparse

from core.accounts.clients import create_client
from registration.webhooks import create_webhook_secret
from sceau.cli.common import now, opened, operator


def add(args: argparse.Namespace) -> int:
    with opened(args) as ctx:
        token = create_client(
            ctx.db, ctx.profiles, args.name, args.profile, now=now(), actor=operator()
        )
    print(f"Client {args.name!r} created for {', '.join(args.profile)}.")
    print("API token (shown once, store it now):")
    print(token)
    return 0


def webhook_secret(args: argparse.Namespace) -> int:
    with opened(args) as ctx:
        secret = create_webhook_secret(ctx.db, ctx.sealer, args.name, actor=operator(), now=now())
    print(f"Webhook secret of client {args.name!r} (shown once; any earlier one is replaced):")
    print(secret)
    return 0
