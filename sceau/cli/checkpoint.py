"""`sceau audit checkpoint`: a checkpoint of the audit log signed in the token and
timestamped by this process's own TSA engine."""

from __future__ import annotations

import argparse

from audit.checkpoint_job import checkpoint_maker
from sceau.cli.common import now, opened
from sceau.timestamping import LocalTimestamper
from tsa.authority import TimestampAuthority


def checkpoint(args: argparse.Namespace) -> int:
    with opened(args) as ctx:
        # Timestamped by this process's own TSA engine, without HTTP.
        authority = TimestampAuthority.from_config(ctx.config, ctx.db, ctx.keys, ctx.profiles)
        try:
            made = checkpoint_maker(ctx, LocalTimestamper(authority)).make(now())
        finally:
            authority.records.close()
    if made is None:
        print("audit log already checkpointed at its head: nothing to do")
        return 0
    print(
        f"audit checkpoint: {made.tree_size} events, Merkle root {made.root_hash},"
        f" signed with {made.key_label}, timestamped {made.at.isoformat()}"
    )
    return 0
