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
from core.errors import ConfigError
from core.jobs import JobRunner
from crl.publisher import CrlPublisher

PUBLISH_JOB = "crl.publish"
REVOCATIONS_JOB = "crl.revocations"
# The instance that runs the revocation check renews this lease at each tick and keeps the
# job while it lives; another takes over this long after it stops. Longer than a tick, so
# that instances do not take turns (each would first re-read what the last one settled).
REVOCATIONS_LEASE = timedelta(seconds=10)
_DAY_SECONDS = 86_400
_YEAR_HOURS = 366 * 24
_MAX_SHARDS = 4096


def check_config(crl: CrlConfig) -> None:
    """Refuse a schedule that would let a CRL lapse, or break EN 319 411-1's timing."""
    if not 1 <= crl.shards <= _MAX_SHARDS:
        raise ConfigError(f"[crl] shards must be between 1 and {_MAX_SHARDS}")
    if crl.revocation_check_seconds < 1:
        raise ConfigError("[crl] revocation_check_seconds must be at least 1")
    # EN 319 411-1 CSS-6.3.9-05: a new CRL at least every 24 hours.
    if not 1 <= crl.publish_interval_seconds <= _DAY_SECONDS:
        raise ConfigError(f"[crl] publish_interval_seconds must be between 1 and {_DAY_SECONDS}")
    # RFC 5280 section 5.1.2.5: the next CRL is issued before nextUpdate.
    for key, hours in (
        ("next_update_hours", crl.next_update_hours),
        ("arl_next_update_hours", crl.arl_next_update_hours),
    ):
        if hours * 3600 <= crl.publish_interval_seconds:
            raise ConfigError(
                f"[crl] {key} ({hours} h) must exceed publish_interval_seconds"
                f" ({crl.publish_interval_seconds} s), or CRLs lapse before the next one"
            )
    # EN 319 411-1 CSS-6.3.9-13: the ARL's nextUpdate at most a year ahead.
    if crl.arl_next_update_hours > _YEAR_HOURS:
        raise ConfigError(f"[crl] arl_next_update_hours must be at most {_YEAR_HOURS}")


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
