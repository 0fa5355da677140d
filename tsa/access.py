"""Who may ask for a token, and how often: optional client authentication and per-client
rate limits (``[tsa] auth``, ``rate_limit``, ``rate_burst``).

Both live in the worker process: the authentication cache and the token buckets are not
shared between gunicorn workers or machines, so a cluster of W workers admits up to W
times ``rate_limit`` from one client. That is enough to stop one platform from starving
the others; an exact cluster-wide quota belongs in front of the service (nginx
``limit_req``), not in a database round trip per token.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from core.accounts.clients import authenticate
from core.store.db import Database

# An authenticated client is remembered this long, sparing a database read per token; a
# client disabled meanwhile is refused after at most this delay.
AUTH_CACHE_SECONDS = 30.0
AUTH_CACHE_SIZE = 1024
BUCKETS_MAX = 10_000  # clients tracked per process; the least recently seen go first


class Authenticator:
    """Resolves an Authorization header to a client name, or raises UNAUTHENTICATED."""

    def __init__(self, db: Database, mode: str) -> None:
        # mode is one of core.config's [tsa] auth choices (checked when the file loads)
        self.db = db
        self.required = mode == "token"
        self._lock = threading.Lock()
        # SHA-256 of the header -> (client name, monotonic expiry): no token kept in memory.
        self._cache: OrderedDict[bytes, tuple[str, float]] = OrderedDict()

    def client(self, authorization: str | None) -> str | None:
        """The client's name; None when the TSA is open (any header is then ignored)."""
        if not self.required:
            return None
        key = hashlib.sha256((authorization or "").encode()).digest()
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[1] > now:
                return cached[0]
        name = authenticate(self.db, authorization).name  # raises for an unknown token
        with self._lock:
            self._cache[key] = (name, now + AUTH_CACHE_SECONDS)
            self._cache.move_to_end(key)
            while len(self._cache) > AUTH_CACHE_SIZE:
                self._cache.popitem(last=False)
        return name


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per client: ``rate`` per second, holding up to ``burst``."""

    def __init__(self, rate: int, burst: int) -> None:
        self.rate = float(rate)
        self.burst = float(burst or rate)
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def retry_after(self, client: str) -> float:
        """0 when ``client`` may have a token now (and one is taken), else the seconds to
        wait before one is available (and nothing is taken: asking again answers alike)."""
        if not self.enabled:
            return 0.0
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                bucket = self._buckets[client] = _Bucket(self.burst, now)
                while len(self._buckets) > BUCKETS_MAX:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(client)
                bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
                bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate
