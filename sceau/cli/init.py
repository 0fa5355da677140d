"""`sceau init`: the development home and key ceremony (sceau.home)."""

from __future__ import annotations

import argparse

from sceau.cli.common import home
from sceau.home import init_home


def run(args: argparse.Namespace) -> int:
    config, steps, ceremony = init_home(
        home(args),
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
