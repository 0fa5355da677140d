"""The record of every token issued (the ``timestamps`` table), written in batches.

A commit per token would cap the TSA at the database's commit rate. Instead each process
has one :class:`RecordWriter`: request threads queue a record, one background thread
inserts whatever has queued in one transaction, at most every ``FLUSH_INTERVAL`` or as
soon as ``BATCH_SIZE`` records wait.

Durability, two modes (``[tsa] record``):

* ``"batch"`` (default): the token is answered as soon as its record is queued. A crash
  of the process (SIGKILL, power loss) loses the records of at most the last
  ``FLUSH_INTERVAL`` of tokens; a graceful stop (SIGTERM, gunicorn restart) flushes the
  queue first. While the database refuses a batch, the batch is retried and the TSA
  issues no new token (systemFailure): the records at risk stay bounded.
* ``"sync"``: a token is answered only once the transaction holding its record has
  committed (group commit: concurrent requests share one); if that fails the token is
  discarded unseen and the client gets systemFailure. Every token that left is recorded,
  at the price of a commit's latency on each request.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from core.store.db import Database
from core.store.models import Timestamp
from tsa.response import PKIFailure, TsaRejection

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.1  # seconds: the most a batch-mode crash can lose
BATCH_SIZE = 1000  # records per transaction at most
# Records queued and not yet committed above which new tokens are refused: bounds what a
# database outage can leave unrecorded (about 10 s at full speed).
MAX_PENDING = 20_000
RETRY_DELAY = 1.0  # seconds between attempts at a batch the database refused
CLOSE_TIMEOUT = 10.0  # seconds a stopping process waits for its last batch

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INSERT = insert(Timestamp)


@dataclass(frozen=True)
class TimestampRecord:
    serial: int
    unix_micros: int  # genTime
    hash_algorithm: str
    imprint: bytes
    policy: str
    client: str | None  # the authenticated client's name; None when the TSA runs open
    signer_id: int

    def row(self) -> dict[str, object]:
        return {
            "serial": format(self.serial, "x"),
            "gen_time": _EPOCH + timedelta(microseconds=self.unix_micros),
            "hash_algorithm": self.hash_algorithm,
            "imprint": self.imprint.hex(),
            "policy": self.policy,
            "client": self.client,
            "signer_id": self.signer_id,
        }


class RecordWriter:
    """One per process: a queue and the thread that drains it into the database."""

    def __init__(self, db: Database, *, mode: str = "batch") -> None:
        self._db = db
        self._sync = mode == "sync"
        self._cond = threading.Condition()
        self._queue: list[TimestampRecord] = []
        self._queued = 0  # records ever queued (a ticket number)
        self._done = 0  # records ever committed or, in sync mode, given up
        self._failed: list[range] = []  # sync mode: tickets given up (rare: a range a batch)
        self._failing = False  # the last attempt at a batch failed
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pid = 0

    def record(self, rec: TimestampRecord) -> None:
        """Queue ``rec``; in sync mode, return once it is committed. Raises a
        systemFailure TsaRejection when the token must not be answered."""
        with self._cond:
            self._ensure_thread()
            if self._failing or self._queued - self._done >= MAX_PENDING:
                raise TsaRejection(
                    PKIFailure.SYSTEM_FAILURE, "timestamp records cannot be written now"
                )
            self._queue.append(rec)
            self._queued += 1
            ticket = self._queued
            # Wake the writer: a batch starts (it then gathers for FLUSH_INTERVAL), is full,
            # or, in sync mode, someone waits.
            if self._sync or len(self._queue) in (1, BATCH_SIZE):
                self._cond.notify_all()
            if not self._sync:
                return
            while self._done < ticket:
                self._cond.wait()
            if any(ticket in failed for failed in self._failed):
                raise TsaRejection(
                    PKIFailure.SYSTEM_FAILURE, "the timestamp record could not be written"
                )

    def flush(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Wait until every record queued so far is committed; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._queued
            self._cond.notify_all()
            while self._done < target:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return self._done >= target
                self._cond.wait(left)
        return True

    def close(self) -> None:
        """Flush and stop the thread (at process exit, or when the app is torn down)."""
        with self._cond:
            thread = self._thread
            if thread is None or self._pid != os.getpid():
                return
            self._stopping = True
            self._cond.notify_all()
        thread.join(CLOSE_TIMEOUT)
        with self._cond:
            lost = len(self._queue)
        if lost:
            log.error("%d timestamp records could not be written before exit", lost)

    def _ensure_thread(self) -> None:
        # Started in the process that issues tokens: a thread does not survive fork, so a
        # gunicorn worker forked from a master that built the app starts its own.
        if self._thread is not None and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._queue, self._queued, self._done, self._failed = [], 0, 0, []
        self._stopping = self._failing = False
        self._thread = threading.Thread(target=self._run, name="tsa-records", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._sync and not self._stopping and len(self._queue) < BATCH_SIZE:
                    # Batch mode: let a batch gather for up to FLUSH_INTERVAL.
                    self._cond.wait(FLUSH_INTERVAL)
                batch = self._queue[:BATCH_SIZE]
                del self._queue[:BATCH_SIZE]
                if not batch and self._stopping:
                    return
            if batch:
                self._write(batch)

    def _write(self, batch: list[TimestampRecord]) -> None:
        try:
            with self._db.write() as session:
                # A Core executemany: the ORM's bulk path costs half as much again.
                session.connection().execute(_INSERT, [r.row() for r in batch])
        except Exception:
            log.exception("writing %d timestamp records failed", len(batch))
            with self._cond:
                if self._sync:
                    # Their tokens are discarded unseen: nothing left to record.
                    self._failed.append(range(self._done + 1, self._done + len(batch) + 1))
                    self._done += len(batch)
                    self._cond.notify_all()
                    return
                # Batch mode: the tokens left already; keep the records, try again, and
                # refuse new tokens meanwhile.
                self._failing = True
                if not self._stopping:
                    self._queue[:0] = batch
                    self._cond.wait(RETRY_DELAY)  # close() cuts the wait short
                    return
                # Stopping and still failing: give up rather than hang the exit.
                self._done += len(batch)
                self._cond.notify_all()
            log.error("%d timestamp records lost at exit", len(batch))
            return
        with self._cond:
            self._done += len(batch)
            self._failing = False
            self._cond.notify_all()
