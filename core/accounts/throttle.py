"""Failed API-token attempts per client address: after ``limit`` in a minute, that address
gets 429 with Retry-After until its oldest failure leaves the minute.

Kept in the memory of each process (each gunicorn worker counts its own share): the
throttle has to cost nothing per request, and a guesser that spreads over workers is
still held to ``limit`` times their number. Memory is bounded: at most ``limit``
timestamps per address and ``MAX_ADDRESSES`` addresses, the least recently seen
forgotten first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque

WINDOW_SECONDS = 60.0
MAX_ADDRESSES = 10_000


class FailureThrottle:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, address: str, now: float) -> int | None:
        """Seconds ``address`` must wait before its next attempt, or None when it may try."""
        with self._lock:
            recent = self._recent(address, now)
            if recent is None or len(recent) < self.limit:
                return None
            return max(1, round(recent[0] + WINDOW_SECONDS - now + 0.5))

    def failed(self, address: str, now: float) -> bool:
        """Count a failure; True when it is the one that starts a throttled burst."""
        with self._lock:
            recent = self._recent(address, now)
            if recent is None:
                recent = self._failures[address] = deque(maxlen=self.limit)
                while len(self._failures) > MAX_ADDRESSES:
                    self._failures.popitem(last=False)
            self._failures.move_to_end(address)
            recent.append(now)
            return len(recent) == self.limit

    def _recent(self, address: str, now: float) -> deque[float] | None:
        recent = self._failures.get(address)
        if recent is not None:
            while recent and recent[0] <= now - WINDOW_SECONDS:
                recent.popleft()
        return recent
