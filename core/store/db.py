"""Engine and transactions, SQLite and PostgreSQL alike.

SQLite: WAL, a busy timeout, and write transactions opened with BEGIN IMMEDIATE, because a
deferred transaction that reads then writes fails at once (SQLITE_BUSY_SNAPSHOT) when
another process wrote in between, where IMMEDIATE queues behind the busy timeout.

A database that does not answer (down, read-only, full, locked past the busy timeout, a
pool that cannot connect) surfaces from :meth:`Database.read` and :meth:`Database.write`
as ``UnavailableError`` (503 with Retry-After in every service), the transaction rolled
back, so nothing is half-written. A transaction PostgreSQL aborts for a deadlock or a
serialization failure is marked retryable; :meth:`Database.transact` runs it again. A
caller's text that PostgreSQL cannot hold (a NUL character) is an invalid request
(``SceauError(INVALID)``), as it is no outage.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from core.errors import ErrorKind, SceauError, UnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")

# PostgreSQL SQLSTATEs of a transaction aborted so that another could go on: run it again.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock
TRANSACT_ATTEMPTS = 4

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves, below
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            immediate = conn.get_execution_options().get("sceau_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        # SQLite has one writer at a time. Threads of a process queue here, in order,
        # instead of sleeping in SQLite's busy handler whose back-off (up to 100 ms a
        # turn) made the issuance tail ten times the median; other processes still wait
        # in the busy handler.
        self._write_lock: threading.RLock | None = (
            threading.RLock() if url.startswith("sqlite") else None
        )
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(
            self.engine.execution_options(sceau_write=True), expire_on_commit=False
        )

    @contextmanager
    def read(self) -> Iterator[Session]:
        with _answered(), self._read() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction: commits on success, rolls back on any exception."""
        with _answered(), contextlib.ExitStack() as stack:
            if self._write_lock is not None:
                stack.enter_context(self._write_lock)
            session = stack.enter_context(self._write())
            stack.enter_context(session.begin())
            yield session

    def transact(self, body: Callable[[Session], T]) -> T:
        """Run ``body`` in a write transaction, again (after a short random pause) when the
        database aborted it for a deadlock or a serialization failure; ``body`` must do
        nothing outside the session, since it may run more than once."""
        for attempt in range(1, TRANSACT_ATTEMPTS + 1):
            try:
                with self.write() as session:
                    return body(session)
            except UnavailableError as exc:
                if not exc.retryable or attempt == TRANSACT_ATTEMPTS:
                    raise
                log.warning("transaction aborted by the database (attempt %d): retrying", attempt)
                time.sleep(random.uniform(0, 0.02 * 2**attempt))  # noqa: S311 - a jitter
        raise AssertionError("unreachable")  # the loop returns or raises

    def dispose(self) -> None:
        self.engine.dispose()


_UNANSWERED = (OperationalError, InterfaceError, PoolTimeoutError)


@contextmanager
def _answered() -> Iterator[None]:
    """Around a transaction of read() or write(), once it has rolled back: a database that
    does not answer is an UnavailableError, a caller's NUL character an invalid request
    (module docstring); anything else goes on as it is."""
    try:
        yield
    except _UNANSWERED as exc:
        raise unavailable(exc) from exc
    except DataError as exc:
        if not holds_nul(exc):
            raise
        raise SceauError(ErrorKind.INVALID, NUL_DETAIL) from exc


def unavailable(exc: Exception) -> UnavailableError:
    """The UnavailableError for a database failure; its text names no statement or table
    (the operator's log gets the driver's first line)."""
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    sqlstate = getattr(cause, "sqlstate", None)
    first_line = (str(cause).strip().splitlines() or [""])[0]
    log.error("database unavailable: %s: %s", type(cause).__name__, first_line)
    if sqlstate in _RETRYABLE_SQLSTATES:
        return UnavailableError(
            "the database aborted a concurrent transaction; retry", retryable=True
        )
    return UnavailableError("the database is not answering; retry later")


# psycopg's words when a str parameter holds U+0000, which PostgreSQL's text types cannot
# store (it refuses the parameter before the statement is sent). SQLite takes such a value
# and simply matches nothing.
_NUL_REFUSED = "cannot contain NUL (0x00)"
NUL_DETAIL = "a text value holds a NUL character (U+0000)"


def holds_nul(exc: DataError) -> bool:
    """Was a caller's text refused for a NUL character (an id in a URL or a JSON body, a
    login name)? That is the caller's mistake: read() and write() raise it as INVALID (422,
    CSC's invalid_request), where it used to reach core.http.problems as a database error
    and be answered 503 "the database is not answering". Other DataErrors go on as before."""
    return _NUL_REFUSED in str(exc.orig)


def _alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(db: Database) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    cfg = _alembic_config(db.url)
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def schema_version(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_version() -> str | None:
    return ScriptDirectory.from_config(_alembic_config("sqlite://")).get_current_head()
