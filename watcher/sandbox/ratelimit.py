"""A rate limit per API key, as HeyGen's gateway enforces one: a token bucket of
``rate_limit_per_second`` tokens a second holding at most ``rate_limit_burst``; a request that
finds it empty is answered 429 with ``Retry-After`` and not performed.

HeyGen publishes no numbers, so the sandbox has none by default (``rate_limit_per_second`` 0);
tests and benchmarks set one to see how the client behaves against it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._limits: tuple[float, int] = (0.0, 0)

    def take(self, key: str, per_second: float, burst: int) -> int | None:
        """Spend one of ``key``'s tokens: None when there was one, else the whole seconds to
        wait (``Retry-After`` speaks delta-seconds) until there is."""
        if per_second <= 0:
            return None
        capacity = max(1, burst)
        now = self._clock()
        with self._lock:
            if self._limits != (per_second, capacity):
                # A changed limit starts every key afresh (full buckets).
                self._limits = (per_second, capacity)
                self._buckets.clear()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(float(capacity), now)
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.at) * per_second)
            bucket.at = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return None
            return max(1, math.ceil((1 - bucket.tokens) / per_second))

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
