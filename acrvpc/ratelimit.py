"""Client-side rate limiting: every Alibaba Cloud call takes a token first, per (product, region).

Alibaba Cloud answers ``Throttling.User`` when an account calls an API faster than its quota.
Task retries ride that out, but a fleet of concurrent runs that keeps hitting the quota wastes
calls and retries, and can starve itself. So every client :mod:`acrvpc.cloud` builds is wrapped
(:func:`guard`): its ``call_api`` (every action of the CR, ECS and VPC SDKs goes through
``call_api``/``call_api_async``; checked in their ``client.py``) first reserves a token from the
process-wide :class:`TokenBucket` of its product and region, and sleeps until the token is due.

Quota per product: ``ACRVPC_QPS_<PRODUCT>`` calls per second (``ACRVPC_QPS_ECS=20``), default
:data:`DEFAULT_QPS`; ``0`` means no limit. ``ACRVPC_BURST_<PRODUCT>`` sets how many calls may go at
once after a quiet spell (default: half a second's worth, at least 1; a burst smaller than the
server's leaves room for network jitter, so a limiter at the server's rate still never trips it).

The bucket is per process. Runs in one worker process share it (task runs are threads); for N
worker processes against one account, set ``ACRVPC_QPS_<PRODUCT>`` to the quota divided by N.

Why not Prefect's global concurrency limits (``prefect.concurrency.sync.rate_limit``)? They do
span processes and hosts, but:

- each acquisition is a round trip to the Prefect server (plus an event), so limiting every SDK
  call would double the calls and make the Prefect database the hot path of every API call;
- the limit must exist on the server beforehand (``prefect gcl create ... --slot-decay-per-second``),
  otherwise ``rate_limit`` skips with a warning (``strict=False``) or fails (``strict=True``);
- the plain stage functions and the CLI commands that call them (``acrvpc teardown``,
  ``preflight``, ``plan``) run without any Prefect server, and must still stay under quota.

Deployments with many worker hosts can add a coarse ``rate_limit("acrvpc-ecs")`` around a task
on their self-hosted server (it works with OSS ``prefect server``); this module stays the fine one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any, Callable

DEFAULT_QPS = 20.0
QPS_ENV = "ACRVPC_QPS_{product}"
BURST_ENV = "ACRVPC_BURST_{product}"

logger = logging.getLogger(__name__)


class TokenBucket:
    """A thread-safe token bucket: ``qps`` tokens per second, at most ``burst`` saved up.

    Callers reserve a token and wait until it is due (:meth:`reserve`), so waiting callers are
    served in order and nobody polls.

    Args:
        qps: tokens per second (> 0).
        burst: bucket size (default ``qps``, at least 1); the bucket starts full.
        clock: monotonic seconds (tests may pass their own).
    """

    def __init__(self, qps: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
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


_buckets: dict[tuple[str, str], TokenBucket] = {}
_buckets_lock = threading.Lock()


def _env_number(name: str, default: float | None) -> float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0:
        raise ValueError(f"{name}={raw!r}: write a number of calls per second (0 for no limit)")
    return value


def quota(product: str) -> tuple[float, float | None]:
    """The configured ``(qps, burst)`` of a product (``qps`` 0 = no limit).

    Args:
        product: ``cr``, ``ecs`` or ``vpc``.

    Returns:
        ``ACRVPC_QPS_<PRODUCT>`` (default :data:`DEFAULT_QPS`) and ``ACRVPC_BURST_<PRODUCT>``
        (default half of qps, at least 1).

    Raises:
        ValueError: a variable is not a non-negative number (the message names it).
    """
    upper = product.upper()
    qps = _env_number(QPS_ENV.format(product=upper), DEFAULT_QPS) or 0.0
    burst = _env_number(BURST_ENV.format(product=upper), None)
    return qps, (burst if burst else max(1.0, qps / 2))


def limiter(product: str, region: str) -> TokenBucket | None:
    """The process-wide bucket of one product in one region, or ``None`` when unlimited.

    A bucket is kept while its quota stays the same; changing the environment gives a new one.

    Args:
        product: ``cr``, ``ecs`` or ``vpc``.
        region: the region id the client calls.

    Returns:
        The shared :class:`TokenBucket`, or ``None`` with ``ACRVPC_QPS_<PRODUCT>=0``.
    """
    qps, burst = quota(product)
    key = (product.lower(), region)
    with _buckets_lock:
        if not qps:
            _buckets.pop(key, None)
            return None
        bucket = _buckets.get(key)
        if bucket is None or (bucket.qps, bucket.burst) != (qps, max(1.0, burst or qps)):
            bucket = _buckets[key] = TokenBucket(qps, burst)
        return bucket


def reset() -> None:
    """Forget every bucket (each product starts again with a full one)."""
    with _buckets_lock:
        _buckets.clear()


def guard(client: Any, product: str, region: str) -> Any:
    """Make every call of an Alibaba Cloud SDK client take a token of its product first.

    Wraps the instance's ``call_api`` and ``call_api_async`` (the SDK methods call them through
    ``self``, so the instance attributes win); nothing is subclassed.

    Args:
        client: a tea-openapi based client (CR, ECS, VPC).
        product: ``cr``, ``ecs`` or ``vpc``.
        region: the region the client calls.

    Returns:
        The same client, limited unless the product's quota is 0.
    """
    bucket = limiter(product, region)
    if bucket is None:
        return client
    call_api, call_api_async = client.call_api, client.call_api_async

    def limited_call_api(params: Any, request: Any, runtime: Any) -> dict:
        waited = bucket.acquire()
        if waited > 0.5:
            logger.debug("%s %s: waited %.2f s for the client-side rate limit", product, params.action, waited)
        return call_api(params, request, runtime)

    async def limited_call_api_async(params: Any, request: Any, runtime: Any) -> dict:
        wait = bucket.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        return await call_api_async(params, request, runtime)

    client.call_api = limited_call_api
    client.call_api_async = limited_call_api_async
    return client
