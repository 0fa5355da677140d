"""`sceau crl publish`: every CRL built, signed in the token and stored now."""

from __future__ import annotations

import argparse

from crl.publisher import CrlPublisher
from sceau.cli.common import now, opened, operator


def publish(args: argparse.Namespace) -> int:
    # load_config has checked the [crl] schedule (core.config.CrlConfig).
    with opened(args) as ctx:
        published = CrlPublisher(ctx, actor=operator()).publish_all(now())
    for crl in published:
        print(
            f"{crl.url}: number {crl.number}, {crl.entries} entries, {crl.size} bytes,"
            f" next update {crl.next_update.isoformat()}"
        )
    return 0
