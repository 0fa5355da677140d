"""GET /readyz: whether this process can serve now, that is whether its database and its
HSM answer (design.md, "One URL map" and "Failure").

``/healthz`` is liveness and stays 200 while the process answers: restarting a process
because its database is down would not bring the database back. ``/readyz`` is readiness,
for a load balancer or an orchestrator to route around an instance whose dependencies do
not answer:

* 200 ``{"status": "ready", "database": "ok", "hsm": "ok"}``;
* 503 ``application/problem+json`` with ``Retry-After``, the same two members saying which
  dependency is ``"down"``, and a detail naming it (never a path, a URL or a label).

Each check is cheap (the database: one trivial query; the HSM: ``KeyStore.check``, a few
tens of microseconds, which opens the session if need be) and the answer is kept
``READY_TTL`` seconds per app (one app per process in production). While one probe checks,
concurrent probes get the previous answer instead of queueing behind a dependency that
hangs: a probe storm costs nothing and holds one thread at most. Each check also sets
``sceau_dependency_up{dependency=...}``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from flask import Flask, Response

from core import metrics
from core.errors import RETRY_AFTER_SECONDS, ErrorKind, SceauError
from core.hsm.keystore import KeyStore
from core.http.problems import problem
from core.store.db import Database

log = logging.getLogger("sceau.web")

READY_TTL = 1.0  # seconds an answer is kept
_SQLITE_TIMEOUT = 1.0  # seconds; the check's own connection, never the pool's
_NAMES = {"database": "the database", "hsm": "the signing device"}


@dataclass
class Readiness:
    db: Database
    keys: KeyStore
    ttl: float = READY_TTL
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _answer: dict[str, bool] | None = field(default=None, repr=False)
    _at: float = field(default=0.0, repr=False)

    def state(self) -> dict[str, bool]:
        """Dependency name -> whether it answered, at most ``ttl`` seconds ago."""
        answer = self._answer
        if answer is not None and time.monotonic() - self._at < self.ttl:
            return answer
        # The first probe of all waits for its answer; later ones do not wait for a check
        # in progress (a database that hangs until its timeout), they get the last answer.
        if not self._lock.acquire(blocking=answer is None):
            assert answer is not None  # acquire blocks while there is none
            return answer
        try:
            if self._answer is not None and time.monotonic() - self._at < self.ttl:
                return self._answer  # another probe checked while this one waited
            answer = {"database": database_answers(self.db), "hsm": hsm_answers(self.keys)}
            for name, up in answer.items():
                metrics.DEPENDENCY_UP.labels(name).set(1 if up else 0)
            self._answer, self._at = answer, time.monotonic()
            return answer
        finally:
            self._lock.release()


def database_answers(db: Database) -> bool:
    url = db.engine.url
    try:
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            # A pooled connection keeps the file it opened, even once that file is moved
            # away or deleted, and a new one would create an empty database in its place:
            # the check opens the configured file itself, read-write and never creating
            # it, and reads its schema (which a file that is not a database fails).
            assert url.database is not None
            own = sqlite3.connect(
                f"file:{quote(url.database)}?mode=rw", uri=True, timeout=_SQLITE_TIMEOUT
            )
            try:
                own.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                own.close()
        else:
            with db.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # whatever the failure, the answer is "down", never a 500
        first_line = (str(exc).strip().splitlines() or [""])[0]
        log.warning(
            "readiness: the database does not answer: %s: %s", type(exc).__name__, first_line
        )
        return False
    return True


def hsm_answers(keys: KeyStore) -> bool:
    try:
        keys.check()
    except SceauError:  # the key store logged the specifics
        return False
    return True


def install_readiness(app: Flask, db: Database, keys: KeyStore) -> None:
    readiness = Readiness(db, keys)

    @app.get("/readyz", endpoint="readyz")
    def _readyz() -> Response:
        state = readiness.state()
        members = {name: "ok" if up else "down" for name, up in state.items()}
        down = [_NAMES[name] for name, up in state.items() if not up]
        if not down:
            body = {"status": "ready", **members}
            return Response(json.dumps(body), mimetype="application/json")
        verb = "does" if len(down) == 1 else "do"
        return problem(
            ErrorKind.UNAVAILABLE,
            f"not ready: {' and '.join(down)} {verb} not answer",
            retry_after=RETRY_AFTER_SECONDS,
            database=members["database"],
            hsm=members["hsm"],
        )
