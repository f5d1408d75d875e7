"""Client-side rate limiting: every Alibaba Cloud call takes a token first, per (product, region).

Alibaba Cloud answers ``Throttling.User`` when an account calls an API faster than its quota. The
quota is per account, per region and per API, so the limiter must be shared by every run of every
worker: a process worker runs each flow run as a new process, and 50 runs each holding its own
20 calls/s bucket would send 50 times the quota.

Every client :mod:`acrvpc.cloud.clients` builds is wrapped (:func:`guard`): its ``call_api`` (every action
of the CR, ECS and VPC SDKs goes through ``call_api``/``call_api_async``; checked in their
``client.py``) first takes a token of its product and region, from

1. **the shared limit** (:class:`SharedLimiter`): a Prefect global concurrency limit used as a rate
   limit, ``<prefix>-qps-<product>-<region>`` (``acrvpc-qps-ecs-cn-hangzhou``; the prefix is
   ``ACRVPC_QPS_LIMIT_PREFIX``, default ``acrvpc``: one prefix per Alibaba Cloud account when
   several accounts share one Prefect server). Used whenever the process talks to a Prefect
   server (the ``PREFECT_API_URL`` *setting*: environment, profile or ``prefect config set``) and
   the limit exists there. :func:`ensure_limits` (``python -m acrvpc.cloud.ratelimit --region R``)
   creates or updates the limits; or
2. **the per-process bucket** (:class:`TokenBucket`), the fallback without a server or without the
   limit (``acrvpc run``/``demo``, the CLI commands): logged once per limit at INFO.

Quota per product: ``ACRVPC_QPS_<PRODUCT>`` calls per second (``ACRVPC_QPS_ECS=20``), default
:data:`DEFAULT_QPS`; ``0`` means no limit at all. ``ACRVPC_BURST_<PRODUCT>`` sets how many calls
may go at once after a quiet spell (default: half a second's worth, at least 1; a burst smaller
than the server's leaves room for scheduling jitter between taking a token and sending the call).
The fallback bucket reads them in each process; the shared limit gets them when
:func:`ensure_limits` writes it (``limit = burst``, ``slot_decay_per_second = qps``, both times
:data:`SLOTS_PER_CALL`).

How the shared limit behaves (Prefect 3.9.1, ``prefect/concurrency`` and
``prefect/server/api/concurrency_limits_v2.py``):

- ``rate_limit(name, occupy=k)`` is one ``POST /v2/concurrency_limits/increment`` (plus one
  ``prefect.concurrency-limit.acquired`` event, sent in the background). When the limit is full
  the server answers 423 with ``Retry-After = (k + denied slots) / slot_decay_per_second`` seconds
  (Poisson-jittered) and the client sleeps that long and asks again, without end unless
  ``timeout_seconds`` is given. Asking for more slots than the limit holds is a 422.
- A missing limit is skipped (``strict=False``, with a warning in the run's log on every call) or
  raises ``ConcurrencySlotAcquisitionError`` (``strict=True``). This module looks the limit up once
  per process (again after :data:`RECHECK_SECONDS`) and acquires with ``strict=True``; an error
  (limit deleted, server unreachable) falls back to the bucket with one warning.
- The server decays ``floor(slot_decay_per_second * seconds since the row's last update)`` slots,
  and every acquisition *and every 423* updates the row: up to one slot of decay is lost per
  request. With one slot per call, many processes asking at once lose about half a call's worth
  per request and the limit delivers well under its rate (docs/benchmarks.md, "Shared API
  quota"). So one call is :data:`SLOTS_PER_CALL` slots: the loss becomes a tenth of a call.

Lease: the threads of one process that wait for a token of the same limit at the same time are
served by one acquisition (``occupy`` = the waiting calls, at most ``ACRVPC_QPS_LEASE``, default
:data:`DEFAULT_LEASE`), so a busy process pays one round trip per several calls and no slot is
taken for a call nobody makes (:func:`lease_size`). A speculative lease (k slots for calls not yet
waiting) would waste up to k-1 slots per acquisition in processes that hold one flow run each.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import sys
import threading
import time
from typing import Any, Callable

from acrvpc.prefect_api import api_url
from acrvpc.settings import Settings, settings

DEFAULT_QPS: float = Settings.model_fields["qps_ecs"].default  # the defaults live in acrvpc/settings.py
QPS_ENV = "ACRVPC_QPS_{product}"
BURST_ENV = "ACRVPC_BURST_{product}"
PREFIX_ENV = "ACRVPC_QPS_LIMIT_PREFIX"
LEASE_ENV = "ACRVPC_QPS_LEASE"
DEFAULT_PREFIX: str = Settings.model_fields["qps_limit_prefix"].default
DEFAULT_LEASE: int = Settings.model_fields["qps_lease"].default  # calls per acquisition at most (docs/benchmarks.md, "Shared API quota")
SLOTS_PER_CALL = 10  # slots of the shared limit per call: the server's floor() then loses 1/10 call per request
RECHECK_SECONDS = 60.0  # a process without the shared limit looks again after this long
SERVER_RETRY_DELAYS = (1.0, 2.0, 4.0)  # a busy Prefect server's 5xx or timeout is asked again before falling back
PRODUCTS = ("cr", "ecs", "vpc")

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
    current, name = settings(), product.lower()
    if f"qps_{name}" not in type(current).model_fields:
        raise ValueError(f"product {product!r}: one of {', '.join(PRODUCTS)}")
    qps = getattr(current, f"qps_{name}") or 0.0
    burst = getattr(current, f"burst_{name}")
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
    """Forget every bucket and every shared limiter (the next call looks the shared limits up again)."""
    with _buckets_lock:
        _buckets.clear()
    with _shared_lock:
        _shared.clear()
        _said.clear()


# -- the shared limit ------------------------------------------------------------------------------
def limit_prefix() -> str:
    """``ACRVPC_QPS_LIMIT_PREFIX`` (default ``acrvpc``): one prefix per account on one Prefect server.

    Raises:
        ValueError: the prefix is not letters, digits, ``-``, ``_`` or ``.`` (the message says so).
    """
    return settings().qps_limit_prefix  # checked by the settings model


def limit_name(product: str, region: str) -> str:
    """The shared limit of one product in one region: ``<prefix>-qps-<product>-<region>``.

    Alibaba Cloud quotas are per account, per region and per API; one limit per product and
    region (``acrvpc-qps-ecs-cn-hangzhou``) keeps every API of the product under the product's
    lowest quota, as the per-process bucket does.
    """
    return f"{limit_prefix()}-qps-{product.lower()}-{region}"


def lease_limit() -> int:
    """``ACRVPC_QPS_LEASE``: the most calls one acquisition of the shared limit may cover (default 5).

    Raises:
        ValueError: not a whole number >= 1 (the message names the variable).
    """
    return settings().qps_lease  # checked by the settings model


def lease_size(waiting: int, lease: int, burst: float) -> int:
    """Calls one acquisition covers: every call waiting in this process, within the lease and the burst.

    Args:
        waiting: calls of this process waiting for a token of the limit, the acquiring one included.
        lease: :func:`lease_limit`.
        burst: the limit's burst in calls (the server refuses more slots than the limit holds).

    Returns:
        ``min(waiting, lease, burst)``, at least 1.
    """
    return max(1, min(int(waiting), int(lease), int(burst)))


def limit_settings(qps: float, burst: float | None) -> tuple[int, float]:
    """The shared limit's ``(limit, slot_decay_per_second)`` for a quota: ``burst`` and ``qps`` in slots.

    Args:
        qps: calls per second (> 0).
        burst: calls at once (default ``qps / 2``, at least 1).
    """
    if qps <= 0:
        raise ValueError("qps must be > 0 (no limit at all needs no shared limit)")
    calls = max(1.0, float(burst) if burst else qps / 2)
    return int(math.floor(calls)) * SLOTS_PER_CALL, float(qps) * SLOTS_PER_CALL


class SharedLimiter:
    """A token from a Prefect global concurrency limit, shared by every process of every host.

    Threads of this process that wait at the same time share one acquisition (:func:`lease_size`):
    the first asks the server for everyone waiting when it starts, and hands the other tokens
    out; nothing is kept for later, so no slot is taken for a call that is never made.

    Args:
        name: the limit (:func:`limit_name`).
        burst: the limit's size in calls (``limit / SLOTS_PER_CALL``).
        lease: :func:`lease_limit`.
        acquire: ``acquire(name, slots)`` blocks until the server granted ``slots`` slots (default:
            ``prefect.concurrency.sync.rate_limit(name, occupy=slots, strict=True)``).
    """

    def __init__(self, name: str, burst: float, lease: int,
                 acquire: Callable[[str, int], None] | None = None) -> None:
        self.name = name
        self.burst = burst
        self.lease = lease
        self._acquire = acquire or _rate_limit
        self._cond = threading.Condition()
        self._ready = 0  # tokens granted and not yet handed out
        self._fetching = False
        self._waiting = 0  # threads waiting for the current acquisition
        self.acquisitions = 0  # round trips made (for benchmarks and tests)
        self.calls = 0

    def acquire(self) -> None:
        """Take one token, waiting for the server when none is left (``ConcurrencySlotAcquisitionError`` on failure)."""
        with self._cond:
            while True:
                if self._ready > 0:
                    self._ready -= 1
                    self.calls += 1
                    return
                if not self._fetching:
                    self._fetching = True
                    size = lease_size(1 + self._waiting, self.lease, self.burst)
                    break
                self._waiting += 1
                try:
                    self._cond.wait()
                finally:
                    self._waiting -= 1
        try:
            self._acquire(self.name, size * SLOTS_PER_CALL)
        except BaseException:
            with self._cond:
                self._fetching = False
                self._cond.notify()  # the next waiter tries (and most likely fails the same way)
            raise
        with self._cond:
            self.acquisitions += 1
            self.calls += 1
            self._ready += size - 1
            self._fetching = False
            self._cond.notify_all()


def _rate_limit(name: str, slots: int) -> None:
    from prefect.concurrency.sync import rate_limit

    _patiently(lambda: rate_limit(name, occupy=slots, strict=True))


_shared: dict[tuple[str, str, str], tuple[SharedLimiter | None, float]] = {}
_shared_lock = threading.Lock()
_lookup_locks: dict[tuple[str, str, str], threading.Lock] = {}
_said: set[str] = set()


def _say_once(level: int, key: str, message: str, *args: Any) -> None:
    with _shared_lock:
        if key in _said:
            return
        _said.add(key)
    logger.log(level, message, *args)


def _patiently(what: Callable[[], Any], delays: tuple[float, ...] = SERVER_RETRY_DELAYS) -> Any:
    """``what()``, asked again after each of ``delays`` when it fails (a loaded Prefect server answers
    500 when its database pool is exhausted; falling back to a per-process bucket at the full quota
    then would let this process spend the quota on top of the others)."""
    for delay in (*delays, None):
        try:
            return what()
        except Exception as exc:  # noqa: BLE001 - re-raised after the last attempt
            if delay is None:
                raise
            logger.debug("the Prefect server failed (%s: %s); asking again in %.0f s", type(exc).__name__,
                         str(exc)[:200], delay)
            time.sleep(delay)


def _look_up(name: str) -> Any | None:
    """The limit named ``name`` on the server, or None when there is none (errors propagate)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    def read() -> Any | None:
        with get_client(sync_client=True) as client:
            try:
                return client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                return None

    return _patiently(read)


def shared_limiter(product: str, region: str) -> SharedLimiter | None:
    """The shared limiter of a product and region, or None (use the per-process bucket).

    None without a Prefect API URL, when the limit does not exist, is inactive or has no slot
    decay, or when the server cannot be asked; each case is said once in the log. A miss is
    looked up again after :data:`RECHECK_SECONDS`.
    """
    url = api_url()
    if not url:
        _say_once(logging.INFO, "no-api", "no Prefect API URL: Alibaba Cloud calls are rate limited per process "
                  "(ACRVPC_QPS_<PRODUCT>), not across processes")
        return None
    name = limit_name(product, region)
    key = (url, name, lease_limit())
    with _shared_lock:
        cached = _shared.get(key)
        lookup_lock = _lookup_locks.setdefault(key, threading.Lock())
    if cached is not None and (cached[0] is not None or time.monotonic() < cached[1]):
        return cached[0]
    with lookup_lock:  # one look-up per limit, however many threads make their first call at once
        with _shared_lock:
            cached = _shared.get(key)
        if cached is not None and (cached[0] is not None or time.monotonic() < cached[1]):
            return cached[0]
        return _look_up_limiter(key, name, product, region)


def _look_up_limiter(key: tuple[str, str, str], name: str, product: str, region: str) -> SharedLimiter | None:
    limiter_: SharedLimiter | None = None
    try:
        found = _look_up(name)
    except Exception as exc:  # noqa: BLE001 - the bucket still keeps this process under quota
        _say_once(logging.WARNING, f"error {name}", "cannot read the shared rate limit %r from the Prefect server "
                  "(%s: %s): %s calls in this process are rate limited per process only for %.0f s", name,
                  type(exc).__name__, str(exc)[:200], product, RECHECK_SECONDS)
        found = None
    else:
        if found is None:
            _say_once(logging.INFO, f"missing {name}", "no shared rate limit %r on the Prefect server (create it: "
                      "python -m acrvpc.cloud.ratelimit --region %s): %s calls in this process are rate limited per "
                      "process only", name, region, product)
        elif not found.active or not found.slot_decay_per_second:
            _say_once(logging.INFO, f"inactive {name}", "the shared rate limit %r is inactive or has no slot decay: "
                      "%s calls in this process are rate limited per process only", name, product)
            found = None
    if found is not None:
        limiter_ = SharedLimiter(name, burst=max(1.0, found.limit / SLOTS_PER_CALL), lease=lease_limit())
        logger.debug("%s calls take tokens from the shared rate limit %r", product, name)
    with _shared_lock:
        _shared[key] = (limiter_, time.monotonic() + RECHECK_SECONDS)
    return limiter_


def _forget_shared(limiter_: SharedLimiter) -> None:
    """Drop a shared limiter that failed (the limit was deleted, the server went away): look again later."""
    with _shared_lock:
        for key, (cached, _) in list(_shared.items()):
            if cached is limiter_:
                _shared[key] = (None, time.monotonic() + RECHECK_SECONDS)


def take(product: str, region: str) -> float:
    """Take one token of a product's quota in a region, waiting as long as needed.

    From the shared limit when there is one (:func:`shared_limiter`), else from the per-process
    bucket; nothing with ``ACRVPC_QPS_<PRODUCT>=0``.

    Returns:
        The seconds waited.
    """
    qps, _ = quota(product)
    if not qps:
        return 0.0
    started = time.monotonic()
    shared = shared_limiter(product, region)
    if shared is not None:
        try:
            shared.acquire()
            return time.monotonic() - started
        except Exception as exc:  # noqa: BLE001 - the bucket still keeps this process under quota
            _forget_shared(shared)
            logger.warning("the shared rate limit %r failed (%s: %s): %s calls fall back to the per-process "
                           "bucket for %.0f s", shared.name, type(exc).__name__, str(exc)[:200], product,
                           RECHECK_SECONDS)
    bucket = limiter(product, region)
    return bucket.acquire() if bucket is not None else 0.0


def guard(client: Any, product: str, region: str) -> Any:
    """Make every call of an Alibaba Cloud SDK client take a token of its product first (:func:`take`).

    Wraps the instance's ``call_api`` and ``call_api_async`` (the SDK methods call them through
    ``self``, so the instance attributes win); nothing is subclassed. Which limiter a call uses is
    decided at call time, so a client built before the Prefect settings are known still shares.

    Args:
        client: a tea-openapi based client (CR, ECS, VPC).
        product: ``cr``, ``ecs`` or ``vpc``.
        region: the region the client calls.

    Returns:
        The same client, limited unless the product's quota is 0.
    """
    qps, _ = quota(product)  # a bad ACRVPC_QPS_* fails here, when the client is built
    if not qps:
        return client
    call_api, call_api_async = client.call_api, client.call_api_async

    def limited_call_api(params: Any, request: Any, runtime: Any) -> dict:
        waited = take(product, region)
        if waited > 0.5:
            logger.debug("%s %s: waited %.2f s for the rate limit", product, params.action, waited)
        return call_api(params, request, runtime)

    async def limited_call_api_async(params: Any, request: Any, runtime: Any) -> dict:
        if shared_limiter(product, region) is not None:
            await asyncio.to_thread(take, product, region)
        else:
            bucket = limiter(product, region)
            wait = bucket.reserve() if bucket is not None else 0.0
            if wait > 0:
                await asyncio.sleep(wait)
        return await call_api_async(params, request, runtime)

    client.call_api = limited_call_api
    client.call_api_async = limited_call_api_async
    return client


# -- creating the shared limits ---------------------------------------------------------------------
def ensure_limits(products: tuple[str, ...] | list[str] = PRODUCTS, region: str = "", qps: float | None = None,
                  burst: float | None = None) -> dict[str, dict[str, float]]:
    """Create or update the shared limits of ``products`` in ``region`` on the Prefect server (idempotent).

    Each gets ``limit = burst * SLOTS_PER_CALL`` and ``slot_decay_per_second = qps *
    SLOTS_PER_CALL`` and is made active; a product with qps 0 gets its limit deleted (no limit).

    Args:
        products: ``cr``, ``ecs``, ``vpc``.
        region: the region id the pipeline calls (``cn-hangzhou``).
        qps: calls per second for every product (default: each product's ``ACRVPC_QPS_<PRODUCT>``).
        burst: calls at once (default: each product's ``ACRVPC_BURST_<PRODUCT>``, or ``qps / 2``).

    Returns:
        ``{name: {"limit": ..., "slot_decay_per_second": ...}}`` of the limits now in place.

    Raises:
        ValueError: no region, an unknown product or a bad quota (the message names it).
        RuntimeError: no Prefect API URL is set.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    if not region or not re.match(r"^[a-z0-9-]+$", region):
        raise ValueError(f"region={region!r}: give the region id the pipeline calls, e.g. cn-hangzhou")
    unknown = [p for p in products if p.lower() not in PRODUCTS]
    if unknown:
        raise ValueError(f"products={unknown}: choose from {', '.join(PRODUCTS)}")
    if not api_url():
        raise RuntimeError("no Prefect API URL: set PREFECT_API_URL (or `prefect config set PREFECT_API_URL=...`)")
    done: dict[str, dict[str, float]] = {}
    with get_client(sync_client=True) as client:
        for product in products:
            name = limit_name(product, region)
            p_qps, p_burst = quota(product)
            rate = p_qps if qps is None else float(qps)
            size = (burst if burst is not None else (p_burst if qps is None else None))
            if rate <= 0:
                try:
                    client.delete_global_concurrency_limit_by_name(name)
                except ObjectNotFound:
                    pass
                continue
            limit, decay = limit_settings(rate, size)
            try:
                existing = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                existing = None
            if existing is None:
                try:
                    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(
                        name=name, limit=limit, slot_decay_per_second=decay, active=True))
                except ObjectAlreadyExists:  # created meanwhile by another deployer: update it below
                    existing = client.read_global_concurrency_limit_by_name(name)
            if existing is not None and (existing.limit, existing.slot_decay_per_second, existing.active) != (
                    limit, decay, True):
                client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(
                    limit=limit, slot_decay_per_second=decay, active=True))
            done[name] = {"limit": limit, "slot_decay_per_second": decay}
            logger.info("shared rate limit %s: %g calls/s, %g at once", name, rate, limit / SLOTS_PER_CALL)
    reset()  # this process looks the limits up again
    return done


def main(argv: list[str] | None = None) -> int:
    """``python -m acrvpc.cloud.ratelimit --region cn-hangzhou [--products ecs,cr,vpc] [--qps 20] [--burst 10]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m acrvpc.cloud.ratelimit",
                                     description="Create or update the shared API rate limits on the Prefect server.")
    parser.add_argument("--region", required=True, help="the region id the pipeline calls, e.g. cn-hangzhou")
    parser.add_argument("--products", default=",".join(PRODUCTS), help="comma-separated: cr,ecs,vpc")
    parser.add_argument("--qps", type=float, default=None, help="calls per second (default ACRVPC_QPS_<PRODUCT> or 20)")
    parser.add_argument("--burst", type=float, default=None, help="calls at once (default half a second's worth)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    products = [p.strip().lower() for p in args.products.split(",") if p.strip()]
    try:
        done = ensure_limits(products, args.region, qps=args.qps, burst=args.burst)
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, values in done.items():
        print(f"{name}: limit {values['limit']:g} slots, {values['slot_decay_per_second']:g} slots/s "
              f"({SLOTS_PER_CALL} slots per call)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
