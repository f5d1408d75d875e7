"""Fault injection: what can go wrong between a client and the cloud, on demand and reproducibly.

Kinds of fault, checked in this order for every API call (admin routes are never faulted):

1. **Scripted**: "the next N calls of action X" fail with a code (:meth:`Faults.fail_next`), drop
   the connection (:meth:`Faults.drop_next`) or answer late (:meth:`Faults.slow_next`).
2. **Quotas**: token buckets per product (:attr:`Faults.qps`, or :meth:`Faults.set_quota` for one
   product) and per (product, action) (:attr:`Faults.qps_per_action`, or ``set_quota(action=...)``),
   refilled in REAL time (``time.monotonic``), not the scaled sandbox clock: API quotas are wall
   clock. A call over quota answers ``Throttling.User`` (HTTP 400, the documented error body; the
   SDK raises ``ClientException``), or on GitLab 429 with ``Retry-After`` (seconds) as GitLab's rate
   limiter does. ``throttle_retry_after=True`` adds ``x-acs-retry-after`` (ms) to Alibaba throttling
   answers, which makes the SDK raise ``ThrottlingException`` instead. A call needs a token from
   every bucket that applies; a refused call takes none.
3. **Rates**, one seeded draw per call (:meth:`Faults.seed`): ``drop_rate`` (close the socket
   without an answer), ``error_rate`` (``ServiceUnavailable`` 503 or ``InternalError`` 500; GitLab
   502 or 503), ``slow_rate`` (answer ``slow_ms`` late). ``scope`` limits the rates to some products.

``latency_ms`` is added to every call. The server sleeps outside ``world.lock`` (a slow or latent
call never blocks the others) and records every injected fault in the call log with its code:
the error code, ``Dropped`` (status 0) for a dropped connection, ``Slow`` for a late answer that
succeeded (its status is the real one: the action ran and may have changed state).

Assumptions:
- Faults strike after the signature is verified and the action is known, and before the
  handler runs, except a slow answer: the handler runs after the delay, so a write lands although
  the client has given up (the case ClientTokens exist for).
- A per-product quota applies to GitLab too (product ``gitlab``, actions are routes such as
  ``GET /projects/:id``).
- A bucket holds ``burst`` tokens (default: one second's worth, at least 1) and starts full.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import RpcError

# HTTP status that goes with a well-known injected code, when the caller gives none.
_STATUS_FOR = {
    "Throttling.User": 400,
    "Throttling": 400,
    "Throttling.Api": 400,
    "ServiceUnavailable": 503,
    "InternalError": 500,
    "Forbidden.RAM": 403,
    "InvalidParameter": 400,
}
_RPC_5XX = (
    ("ServiceUnavailable", 503, "The request has failed due to a temporary failure of the server."),
    ("InternalError", 500, "The request processing has failed due to some unknown error."),
)
_GITLAB_5XX = (502, 503)
_GITLAB_REASON = {
    429: "Retry later",
    500: "500 Internal Server Error",
    502: "502 Bad Gateway",
    503: "503 Service Unavailable",
}
THROTTLE_MESSAGE = "Request was denied due to user flow control."
DEFAULT_MESSAGE = "Injected by the acr-vpc-build sandbox."
GITLAB = "gitlab"
# Settings readable and writable as a whole (admin route, CLI).
SETTINGS = (
    "latency_ms",
    "qps",
    "qps_per_action",
    "error_rate",
    "drop_rate",
    "slow_rate",
    "slow_ms",
    "seed",
    "throttle_retry_after",
    "scope",
)


@dataclass
class Fault:
    """What the server does to one call instead of (or before) answering it normally."""

    kind: str  # "error" | "drop" | "slow"
    code: str = ""
    status: int = 0
    message: str = ""
    delay_ms: float = 0.0
    retry_after_s: float | None = None  # throttling: when a token is next free
    soft: bool = False  # CR: HTTP 200 + IsSuccess=false

    def gitlab_answer(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        """This error fault as a GitLab answer: ``(status, body, headers)``."""
        headers = {}
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        return self.status, {"message": _GITLAB_REASON.get(self.status, self.message)}, headers


class InjectedError(RpcError):
    """An injected Alibaba Cloud error answer; ``headers`` go on the HTTP response."""

    def __init__(self, fault: Fault, throttle_header: bool = False) -> None:
        super().__init__(fault.message, code=fault.code, status=fault.status)
        self.soft = fault.soft
        self.headers: dict[str, str] = {}
        if fault.retry_after_s is not None and throttle_header:
            self.headers["x-acs-retry-after"] = str(max(1, math.ceil(fault.retry_after_s * 1000)))


@dataclass
class _Scripted:
    kind: str
    action: str
    product: str | None
    remaining: int
    code: str = ""
    status: int = 0
    message: str = ""
    delay_ms: float = 0.0
    soft: bool = False

    def matches(self, product: str, action: str) -> bool:
        return self.remaining > 0 and self.action == action and self.product in (None, product)


class _Bucket:
    """A token bucket refilled at ``rate`` per real second, holding at most ``capacity`` tokens."""

    def __init__(self, rate: float, burst: float | None, now: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, float(burst) if burst else rate)
        self.tokens = self.capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait(self) -> float:
        """Seconds until one token is free (0 when one is)."""
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


class Faults:
    """All fault settings of one sandbox world (thread-safe; never sleeps).

    Args:
        monotonic: the real-time clock for quotas (tests of this class may pass their own).
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self._rng = random.Random()
        self._seed: int | None = None
        self._scripted: list[_Scripted] = []
        self._quotas: dict[tuple[str, str | None], tuple[float, float | None]] = {}
        self._buckets: dict[tuple[str, str | None], _Bucket] = {}
        self._reset_settings()

    def _reset_settings(self) -> None:
        self.latency_ms = 0.0
        self.qps = 0.0  # per product, every product; 0 = no quota
        self.qps_per_action = 0.0  # per (product, action), every action; 0 = no quota
        self.error_rate = 0.0
        self.drop_rate = 0.0
        self.slow_rate = 0.0
        self.slow_ms = 15_000.0  # longer than the clients' read timeout (10 s)
        self.throttle_retry_after = False
        self.scope: list[str] = []  # products the rates apply to; empty = all

    # -- scripted faults ----------------------------------------------------------------------
    def fail_next(
        self,
        action: str,
        count: int = 1,
        code: str = "ServiceUnavailable",
        status: int | None = None,
        message: str = DEFAULT_MESSAGE,
        *,
        product: str | None = None,
        soft: bool = False,
    ) -> None:
        """Fail the next ``count`` calls of ``action`` with ``code``.

        Args:
            action: an RPC Action (``CreateSecurityGroup``) or a GitLab route (``GET /user``).
            count: how many calls.
            code: the error code; on GitLab routes the HTTP status is what counts.
            status: the HTTP status (default: the usual one for ``code``, else 400).
            message: the error message.
            product: only calls of this product (``cr``, ``ecs``, ``vpc``, ``gitlab``); default any.
            soft: CR only: answer HTTP 200 with ``IsSuccess=false`` and this code.
        """
        status = status or (int(code) if code.isdigit() else _STATUS_FOR.get(code, 400))
        self._script(_Scripted("error", action, product, count, code, int(status), message, soft=soft))

    def drop_next(self, action: str, count: int = 1, *, product: str | None = None) -> None:
        """Close the connection without an answer on the next ``count`` calls of ``action``."""
        self._script(_Scripted("drop", action, product, count))

    def slow_next(
        self, action: str, count: int = 1, delay_ms: float | None = None, *, product: str | None = None
    ) -> None:
        """Answer the next ``count`` calls of ``action`` ``delay_ms`` late (default: :attr:`slow_ms`)."""
        self._script(
            _Scripted("slow", action, product, count, delay_ms=self.slow_ms if delay_ms is None else float(delay_ms))
        )

    def _script(self, entry: _Scripted) -> None:
        if entry.remaining < 1:
            raise ValueError("count must be 1 or more")
        with self._lock:
            self._scripted.append(entry)

    # -- quotas -------------------------------------------------------------------------------
    def set_quota(self, qps: float, *, product: str, action: str | None = None, burst: float | None = None) -> None:
        """Set the quota of one product (``action=None``) or one action of a product.

        Args:
            qps: calls per real second; 0 removes this quota (the defaults apply again).
            product: ``cr``, ``ecs``, ``vpc`` or ``gitlab``.
            action: an action (or GitLab route) of that product; ``None`` for the product as a whole.
            burst: the bucket size (default: ``qps``, at least 1).
        """
        if qps < 0 or (burst is not None and burst < 1):
            raise ValueError("qps must be >= 0 and burst >= 1")
        with self._lock:
            key = (product, action)
            if qps:
                self._quotas[key] = (float(qps), burst)
            else:
                self._quotas.pop(key, None)
            self._buckets.pop(key, None)

    def quotas(self) -> dict[str, float]:
        """The explicit quotas, as ``{"ecs": 5, "ecs CreateNetworkInterface": 1}``."""
        with self._lock:
            return {(p if a is None else f"{p} {a}"): q for (p, a), (q, _) in self._quotas.items()}

    def _bucket(self, key: tuple[str, str | None], now: float) -> _Bucket | None:
        rate, burst = self._quotas.get(key) or ((self.qps if key[1] is None else self.qps_per_action), None)
        if not rate:
            return None
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[key] = _Bucket(rate, burst, now)
        bucket.refill(now)
        return bucket

    def _throttle(self, product: str, action: str) -> float | None:
        """Take a token from every bucket that applies; if one is empty, take none and return the wait."""
        now = self._monotonic()
        buckets = [b for b in (self._bucket((product, None), now), self._bucket((product, action), now)) if b]
        waits = [b.wait() for b in buckets]
        if any(waits):
            return max(waits)
        for b in buckets:
            b.tokens -= 1
        return None

    # -- rates --------------------------------------------------------------------------------
    def seed(self, value: int | None) -> None:
        """Seed the random draws (``None``: seed from the system, not reproducible)."""
        with self._lock:
            self._seed = value
            self._rng = random.Random(value)

    def _draw(self, product: str) -> Fault | None:
        if self.scope and product not in self.scope:
            return None
        if not (self.drop_rate or self.error_rate or self.slow_rate):
            return None
        r = self._rng.random()
        if r < self.drop_rate:
            return Fault("drop", "Dropped")
        if r < self.drop_rate + self.error_rate:
            if product == GITLAB:
                status = self._rng.choice(_GITLAB_5XX)
                return Fault("error", str(status), status, _GITLAB_REASON[status])
            code, status, message = self._rng.choice(_RPC_5XX)
            return Fault("error", code, status, message)
        if r < self.drop_rate + self.error_rate + self.slow_rate:
            return Fault("slow", "Slow", delay_ms=self.slow_ms)
        return None

    # -- the decision -------------------------------------------------------------------------
    def decide(self, product: str, action: str) -> Fault | None:
        """What to do to this call of ``product``/``action``: ``None`` to answer it normally.

        Consumes one scripted fault or one quota token when it applies, and one random draw when
        any rate is set.
        """
        with self._lock:
            for entry in self._scripted:
                if entry.matches(product, action):
                    entry.remaining -= 1
                    self._scripted = [s for s in self._scripted if s.remaining > 0]
                    if entry.kind == "error":
                        code = str(entry.status) if product == GITLAB else entry.code
                        return Fault("error", code, entry.status, entry.message, soft=entry.soft)
                    if entry.kind == "drop":
                        return Fault("drop", "Dropped")
                    return Fault("slow", "Slow", delay_ms=entry.delay_ms)
            wait = self._throttle(product, action)
            if wait is not None:
                if product == GITLAB:
                    return Fault("error", "429", 429, _GITLAB_REASON[429], retry_after_s=wait)
                return Fault("error", "Throttling.User", 400, THROTTLE_MESSAGE, retry_after_s=wait)
            return self._draw(product)

    def error_for(self, fault: Fault) -> InjectedError:
        """The RPC error answer of an error fault, with ``x-acs-retry-after`` when asked for."""
        return InjectedError(fault, throttle_header=self.throttle_retry_after)

    # -- settings as data (admin route, CLI) --------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """Every setting, the explicit quotas and the scripted faults still pending."""
        with self._lock:
            pending = [
                {"kind": s.kind, "action": s.action, "product": s.product, "remaining": s.remaining, "code": s.code}
                for s in self._scripted
            ]
        values: dict[str, Any] = {name: getattr(self, name) for name in SETTINGS if name != "seed"}
        values.update(seed=self._seed, quotas=self.quotas(), pending=pending)
        return values

    def update(self, values: dict[str, Any]) -> None:
        """Apply settings by name (all validated first).

        Raises:
            ValueError: an unknown name or a value out of range; nothing is changed then.
        """
        unknown = set(values) - set(SETTINGS)
        if unknown:
            raise ValueError(f"unknown fault setting(s) {sorted(unknown)}; known: {', '.join(SETTINGS)}")
        new: dict[str, Any] = {}
        for name, value in values.items():
            if name == "seed":
                new[name] = None if value is None else int(value)
            elif name == "throttle_retry_after":
                new[name] = bool(value)
            elif name == "scope":
                new[name] = [str(p) for p in (value or [])]
            else:
                new[name] = float(value)
                if new[name] < 0:
                    raise ValueError(f"{name} must be >= 0")
        rates = {n: new.get(n, getattr(self, n)) for n in ("error_rate", "drop_rate", "slow_rate")}
        if sum(rates.values()) > 1:
            raise ValueError(f"error_rate + drop_rate + slow_rate must be at most 1 (got {rates})")
        for name, value in new.items():
            if name == "seed":
                self.seed(value)
            else:
                setattr(self, name, value)
        if {"qps", "qps_per_action"} & set(new):
            with self._lock:
                self._buckets.clear()

    def clear(self) -> None:
        """Remove every fault and quota; the random draws start again from the seed."""
        with self._lock:
            self._reset_settings()
            self._scripted.clear()
            self._quotas.clear()
            self._buckets.clear()
            self._rng = random.Random(self._seed)
