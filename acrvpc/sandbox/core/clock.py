"""Scalable sandbox time.

Asynchronous resources (ENIs attaching, builds running) store the sandbox time at which
they started and derive their state from :meth:`SandboxClock.now` when read, so no
background threads are needed and tests can jump ahead with :meth:`advance`.
"""

from __future__ import annotations

import threading
import time


class SandboxClock:
    """Sandbox seconds = real seconds x ``time_scale`` + manual advances."""

    def __init__(self, time_scale: float = 1.0) -> None:
        self._lock = threading.Lock()
        self._scale = float(time_scale)
        self._base_real = time.monotonic()
        self._base_sandbox = 0.0
        self._epoch0 = time.time()

    @property
    def time_scale(self) -> float:
        return self._scale

    def now(self) -> float:
        with self._lock:
            return self._base_sandbox + (time.monotonic() - self._base_real) * self._scale

    def set_scale(self, time_scale: float) -> None:
        with self._lock:
            now = self._base_sandbox + (time.monotonic() - self._base_real) * self._scale
            self._base_real, self._base_sandbox, self._scale = time.monotonic(), now, float(time_scale)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._base_sandbox += seconds

    def epoch_ms(self) -> int:
        """Wall-clock milliseconds as the API reports them (real epoch + sandbox offset)."""
        return int((self._epoch0 + self.now()) * 1000)
