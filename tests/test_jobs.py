"""The cluster lease: one holder at a time, on SQLite and PostgreSQL, under contention."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from core.jobs import JobRunner, take_lease
from tests.support.pki import Pki


def test_one_holder_until_the_lease_lapses(pki: Pki) -> None:
    db, now, lease = pki.ctx.db, datetime.now(UTC), timedelta(seconds=30)
    name = f"job-{now.timestamp()}"
    assert take_lease(db, name, "a", now=now, lease=lease)
    assert not take_lease(db, name, "b", now=now + timedelta(seconds=10), lease=lease)
    assert take_lease(db, name, "a", now=now + timedelta(seconds=10), lease=lease)  # renewal
    assert take_lease(db, name, "b", now=now + timedelta(seconds=41), lease=lease)


def test_contended_lease_has_one_winner(pki: Pki) -> None:
    name = f"race-{datetime.now(UTC).timestamp()}"
    now = datetime.now(UTC)
    with ThreadPoolExecutor(max_workers=8) as pool:
        wins = list(
            pool.map(
                lambda h: take_lease(
                    pki.ctx.db, name, f"i{h}", now=now, lease=timedelta(minutes=1)
                ),
                range(16),
            )
        )
    assert wins.count(True) == 1


def test_runners_share_a_tick(pki: Pki) -> None:
    ran: list[str] = []
    runners = [JobRunner(pki.ctx.db, holder=f"instance-{n}") for n in range(2)]
    name = f"tick-{datetime.now(UTC).timestamp()}"
    results = [
        r.run_once(name, lambda _now, n=n: ran.append(f"{n}"), timedelta(minutes=1))
        for n, r in enumerate(runners)
    ]
    assert results == [True, False] and ran == ["0"]
