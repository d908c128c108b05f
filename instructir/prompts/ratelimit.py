"""Requests-per-minute and tokens-per-minute limits for concurrent API calls.

Each limit is a bucket that refills continuously at its per-minute rate and holds at most one second's worth
(never less than one request). A call waits until every bucket is non-negative, then takes its share; a large
call may drive a bucket into debt, which later calls wait out. Token use is estimated before the call and
corrected with the real usage after it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class _Bucket:
    def __init__(self, per_minute: float, clock: Callable[[], float]) -> None:
        if per_minute <= 0:
            raise ValueError(f"a rate limit must be positive, got {per_minute}")
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self._clock = clock
        self._stamp = clock()

    def refill(self) -> None:
        now = self._clock()
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate)
        self._stamp = now

    def wait_time(self) -> float:
        """Seconds until the bucket is non-negative again."""
        return 0.0 if self.level >= 0 else -self.level / self.rate


class RateLimiter:
    """Optional RPM and TPM limits shared by all calls of one backend."""

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._requests = _Bucket(requests_per_minute, clock) if requests_per_minute else None
        self._tokens = _Bucket(tokens_per_minute, clock) if tokens_per_minute else None
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        """Wait for a turn under every limit, then take one request and ``tokens`` tokens."""
        buckets = [b for b in (self._requests, self._tokens) if b is not None]
        if not buckets:
            return
        async with self._lock:
            while True:
                for bucket in buckets:
                    bucket.refill()
                wait = max(bucket.wait_time() for bucket in buckets)
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            if self._requests is not None:
                self._requests.level -= 1
            if self._tokens is not None:
                self._tokens.level -= tokens

    def settle(self, estimated: int, actual: int) -> None:
        """Correct the token bucket once a call's real usage is known."""
        if self._tokens is not None:
            self._tokens.refill()
            self._tokens.level += estimated - actual
