"""Fault injection: latency on every call and "fail the next N calls of action X with code C"."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .errors import RpcError

# HTTP status that goes with a well-known injected code, when the caller gives none.
_STATUS_FOR = {
    "Throttling.User": 400, "Throttling": 400, "Throttling.Api": 400, "ServiceUnavailable": 503,
    "InternalError": 500, "Forbidden.RAM": 403, "InvalidParameter": 400,
}


@dataclass
class InjectedFault:
    action: str
    remaining: int
    code: str
    status: int
    message: str


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latency_ms = 0.0
        self._fail_next: list[InjectedFault] = []

    def fail_next(self, action: str, count: int = 1, code: str = "ServiceUnavailable", status: int | None = None,
                  message: str = "Injected by the acr-vpc-build sandbox.") -> None:
        with self._lock:
            self._fail_next.append(InjectedFault(action, count, code, status or _STATUS_FOR.get(code, 400), message))

    def take(self, action: str) -> RpcError | None:
        """The injected error for this call of ``action``, if any (consumes one)."""
        with self._lock:
            for fault in self._fail_next:
                if fault.action == action and fault.remaining > 0:
                    fault.remaining -= 1
                    return RpcError(fault.message, code=fault.code, status=fault.status)
            return None

    def clear(self) -> None:
        with self._lock:
            self.latency_ms = 0.0
            self._fail_next.clear()
