"""Scheduled jobs that a cluster runs once: a lease in the database, then APScheduler.

Every instance (each gunicorn worker of each machine) may run the same schedule; a job
runs only where its lease was taken. The lease is a row in ``job_locks`` taken by a
conditional UPDATE, which both SQLite (write lock) and PostgreSQL (row lock, re-checked
after the competing transaction commits) serialise, so two instances never both win.
A lease is not released when the job ends: it lapses after ``lease``, so the other
instances skip the same tick instead of repeating the work a moment later.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import CursorResult, update
from sqlalchemy.exc import IntegrityError

from core.errors import SceauError
from core.store.db import Database
from core.store.models import JobLock

log = logging.getLogger(__name__)

Job = Callable[[datetime], None]


def instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def take_lease(db: Database, name: str, holder: str, *, now: datetime, lease: timedelta) -> bool:
    """True when ``holder`` now holds the lease ``name`` until ``now + lease``."""
    try:
        with db.write() as session:
            result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                update(JobLock)
                .where(
                    JobLock.name == name, (JobLock.expires_at <= now) | (JobLock.holder == holder)
                )
                .values(holder=holder, expires_at=now + lease)
            )
            if result.rowcount:
                return True
            if session.get(JobLock, name) is not None:
                return False  # held by another instance
            session.add(JobLock(name=name, holder=holder, expires_at=now + lease))
        return True
    except IntegrityError:
        return False  # another instance created the row first


class JobRunner:
    """An APScheduler background scheduler whose jobs run under a cluster lease."""

    def __init__(self, db: Database, holder: str | None = None) -> None:
        self.db = db
        self.holder = holder or instance_id()
        self.scheduler = BackgroundScheduler(timezone=UTC)

    def every(
        self, name: str, interval: timedelta, job: Job, *, lease: timedelta | None = None
    ) -> None:
        """Run ``job(now)`` every ``interval`` on one instance of the cluster."""
        self.scheduler.add_job(
            self.run_once,
            "interval",
            seconds=interval.total_seconds(),
            args=[name, job, lease or interval * 0.9],
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            replace_existing=True,
        )

    def run_once(self, name: str, job: Job, lease: timedelta) -> bool:
        """Take the lease and run; False when another instance holds it. Never raises:
        a failing job is logged and tried again at its next tick."""
        now = datetime.now(UTC)
        try:
            if not take_lease(self.db, name, self.holder, now=now, lease=lease):
                return False
            job(now)
        except SceauError as exc:
            # A dependency away (database, HSM) is said once a tick, without a traceback:
            # the job runs again at its next tick, and /readyz tells the operator why.
            log.warning("scheduled job %s did not run: %s", name, exc.detail)
        except Exception:
            log.exception("scheduled job %s failed", name)
        return True

    def start(self) -> None:
        self.scheduler.start()

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
