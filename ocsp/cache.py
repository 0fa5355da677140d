"""The two caches in front of the signer.

* :class:`PresignedStore`: the ``ocsp_responses`` table, shared by every worker and every
  instance. One row per certificate, holding a response without nonce. Revocation deletes
  the row in its own transaction (``ca.issuance.revoke``), and a reader never trusts a
  row blindly: a response signed from a status read just before a revocation committed
  could be written after it, so :mod:`ocsp.engine` compares every row it reads with the
  certificate's current status.
* :class:`AnswerCache`: per worker process, the finished answer (DER and HTTP headers)
  keyed by the raw request (GET path or POST body), so that a repeated request costs a
  dictionary lookup. Each entry carries the status epoch of its CA
  (``issuer_status.epoch``, moved by every revocation); :class:`EpochWatch` re-reads the
  epochs at most every ``revocation_check_ms``, and an entry whose epoch is no longer
  current is a miss. So a revocation is answered within that delay by every worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from core.errors import SceauError
from core.store.db import Database
from core.store.models import OcspResponse
from ocsp import der

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredResponse:
    """The pre-signed responses of one certificate, signed together: one per CertID hash
    (ocsp.engine.PRESIGNED_HASHES, in that order), each with a single SingleResponse.
    The row's ``der`` holds them as SEQUENCE OF OCSPResponse. (RFC 9919 section 2.2.1
    would also allow one response with both CertIDs, but clients that expect a single
    SingleResponse, such as cryptography's accessors, then fail.)"""

    responses: tuple[bytes, ...]
    this_update: datetime
    next_update: datetime

    def fresh(self, now: datetime) -> bool:
        """Before the middle of its validity: past it, a newer response is due (the
        refresh rule of the scheduled job, RFC 9919 section 6.1 'refresh before max-age')."""
        return now < self.next_update - (self.next_update - self.this_update) / 2


class PresignedStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        insert: Any = sqlite.insert if db.engine.dialect.name == "sqlite" else postgresql.insert
        self._insert = insert

    def get(self, issuer_id: str, serial: str) -> StoredResponse | None:
        with self._db.read() as session:
            row = session.execute(
                select(OcspResponse.der, OcspResponse.this_update, OcspResponse.next_update).where(
                    OcspResponse.issuer_id == issuer_id, OcspResponse.serial == serial
                )
            ).first()
        if row is None:
            return None
        try:
            responses = tuple(der.elements(row.der))
        except (ValueError, IndexError):
            return None  # not what put() writes: re-signed and replaced
        if not responses or any(r[:1] != b"\x30" for r in responses):
            return None
        return StoredResponse(responses, row.this_update, row.next_update)

    def put(self, issuer_id: str, serial: str, stored: StoredResponse) -> None:
        """Insert or replace; never replace a row with an older one (a slow writer racing
        the scheduled job)."""
        values = {
            "der": der.sequence(*stored.responses),
            "this_update": stored.this_update,
            "next_update": stored.next_update,
        }
        table = OcspResponse.__table__
        statement = (
            self._insert(table)
            .values(issuer_id=issuer_id, serial=serial, **values)
            .on_conflict_do_update(
                index_elements=["issuer_id", "serial"],
                set_=values,
                where=table.c.this_update <= stored.this_update,
            )
        )
        with self._db.write() as session:
            session.execute(statement)

    def purge(self, *, before: datetime) -> int:
        """Delete responses that expired before ``before``: no client may use them."""
        with self._db.write() as session:
            result: Any = session.execute(
                delete(OcspResponse).where(OcspResponse.next_update < before)
            )
            return int(result.rowcount or 0)


class EpochWatch:
    """This process's view of the per-CA status epochs, re-read at most every ``interval``
    seconds, by the request that finds it due (no thread to start after fork or to stop)."""

    def __init__(self, read: Callable[[], dict[str, int]], interval: float) -> None:
        self._read = read
        self._interval = interval
        self._epochs: dict[str, int] = {}
        self._due = float("-inf")
        self._lock = threading.Lock()

    def current(self) -> dict[str, int]:
        if time.monotonic() >= self._due and self._lock.acquire(blocking=False):
            # One thread re-reads; the others answer from the view of a moment ago.
            try:
                self._epochs = self._read()
            except (SQLAlchemyError, SceauError) as exc:
                # Keep the last view: with the database unreachable, no revocation can
                # be recorded either (core.store.db raises UnavailableError).
                log.warning("reading issuer_status epochs failed: %s", exc)
            finally:
                self._due = time.monotonic() + self._interval
                self._lock.release()
        return self._epochs


@dataclass(frozen=True, slots=True)
class CacheEntry:
    issuer_id: str
    epoch: int  # the CA's status epoch read before the status behind this answer
    expires: float  # time.time() past which the entry is not served (RFC 9919 refresh)
    body: bytes
    get_headers: list[tuple[str, str]]  # all but the per-request Cache-Control max-age
    post_headers: list[tuple[str, str]]


class AnswerCache:
    def __init__(self, max_entries: int) -> None:
        self._entries: dict[str | bytes, CacheEntry] = {}
        self._max = max_entries
        self._lock = threading.Lock()

    def get(self, key: str | bytes, epochs: dict[str, int], now: float) -> CacheEntry | None:
        # Lock-free: a dict lookup is atomic under the GIL.
        entry = self._entries.get(key)
        if entry is None or now >= entry.expires or epochs.get(entry.issuer_id, 0) != entry.epoch:
            return None
        return entry

    def put(self, key: str | bytes, entry: CacheEntry) -> None:
        with self._lock:
            if len(self._entries) >= self._max:
                # Emptied rather than trimmed: one O(1) step, and the next requests
                # refill it from the database, not from the HSM.
                self._entries = {}
            self._entries[key] = entry
