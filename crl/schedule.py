"""When CRLs are published: on a schedule, and at once after a revocation.

Two jobs on the cluster's JobRunner (core.jobs), each under its own lease, so that one
instance of the cluster runs each tick:

* ``crl.publish`` publishes every CRL every ``publish_interval_seconds``;
* ``crl.revocations`` checks every ``revocation_check_seconds`` for a CA whose status epoch
  moved and publishes the scopes that gained a revocation (and any scope with no CRL yet,
  so a fresh installation serves CRLs within seconds, not after the first interval).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from core.config import CrlConfig
from core.jobs import JobRunner
from crl.publisher import CrlPublisher

PUBLISH_JOB = "crl.publish"
REVOCATIONS_JOB = "crl.revocations"
# The instance that runs the revocation check renews this lease at each tick and keeps the
# job while it lives; another takes over this long after it stops. Longer than a tick, so
# that instances do not take turns (each would first re-read what the last one settled).
REVOCATIONS_LEASE = timedelta(seconds=10)


def register_jobs(runner: JobRunner, publisher: CrlPublisher, crl: CrlConfig) -> None:
    def publish_all(now: datetime) -> None:
        publisher.publish_all(now)

    def publish_changed(now: datetime) -> None:
        publisher.publish_changed(now)

    runner.every(PUBLISH_JOB, timedelta(seconds=crl.publish_interval_seconds), publish_all)
    runner.every(
        REVOCATIONS_JOB,
        timedelta(seconds=crl.revocation_check_seconds),
        publish_changed,
        lease=REVOCATIONS_LEASE,
    )
