"""The per-process token bucket: the rate limiter of a process without the shared limit (acrvpc.cloud.ratelimit)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """A thread-safe token bucket: ``qps`` tokens per second, at most ``burst`` saved up.

    Callers reserve a token and wait until it is due (:meth:`reserve`), so waiting callers are
    served in order and nobody polls.

    Args:
        qps: tokens per second (> 0).
        burst: bucket size (default ``qps``, at least 1); the bucket starts full.
        clock: monotonic seconds (tests may pass their own).
    """

    def __init__(self, qps: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if qps <= 0:
            raise ValueError("qps must be > 0 (no bucket at all means no limit)")
        self.qps = float(qps)
        self.burst = max(1.0, float(burst) if burst else self.qps)
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._stamp = clock()

    def reserve(self) -> float:
        """Take the next token.

        Returns:
            Seconds to wait before making the call the token is for (0 when one was free).
        """
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.qps)
            self._stamp = now
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def acquire(self) -> float:
        """Take the next token, sleeping until it is due.

        Returns:
            The seconds slept.
        """
        wait = self.reserve()
        if wait > 0:
            time.sleep(wait)
        return wait
