"""The log of every call the sandbox received (served at ``GET /_sandbox/calls``)."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

# Parameters never recorded, even though the sandbox's are not real secrets.
_REDACT = {"AccessKeyId", "Signature", "SecurityToken", "AccessToken", "Password", "token", "private_token"}


@dataclass
class Call:
    seq: int
    product: str  # cr | ecs | vpc | gitlab
    action: str  # RPC Action, or "METHOD /api/v4/route" for GitLab
    writes: bool
    status: int
    code: str  # "" on success, else the error code
    time: float  # sandbox seconds
    params: dict[str, Any] = field(default_factory=dict)


class CallLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[Call] = []

    def record(
        self,
        product: str,
        action: str,
        writes: bool,
        status: int,
        code: str,
        time: float,
        params: dict[str, Any] | None = None,
    ) -> None:
        clean = {k: v for k, v in (params or {}).items() if k not in _REDACT}
        with self._lock:
            self._calls.append(Call(len(self._calls) + 1, product, action, writes, status, code, time, clean))

    def list(self, since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(c) for c in self._calls if c.seq > since]

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
