"""`sceau policies render [--check]`: the generated tables of policies/*.md."""

from __future__ import annotations

import argparse
import sys

from crl.policy_facts import Facts, PolicyDataError, render_all, stale_documents


def render(args: argparse.Namespace) -> int:
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
