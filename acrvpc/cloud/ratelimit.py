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
:func:`ensure_limits` writes it, and every process reads them back off the limit's row. The shared
limit's burst defaults to :data:`SHARED_DEFAULT_BURST` (one call), not half a second: its queue
spaces calls at the rate however many processes wait, and the account's whole burst is left for
what a client-side schedule cannot control (a CPU-starved process sending late, processes that
reserved within one round trip leaving together; docs/benchmarks.md, "Reservations"). With a
backlog the queue delivers the full rate whatever the burst; a larger burst only lets calls
saved up during a quiet spell go at once (and bounds the lease).

How the shared limit works (:mod:`acrvpc.cloud.shared_limit`; Prefect 3.9.1's
``prefect/server/api/concurrency_limits_v2.py``): the limit is a **queue** of reservations
(GCRA), ``slot_decay_per_second = qps * PACE * SLOTS_PER_CALL`` (95 % of the quota) and ``limit = decay * HORIZON_SECONDS +
burst * SLOTS_PER_CALL``. Taking tokens is one ``POST /v2/concurrency_limits/increment`` (granted
at once unless a minute of calls is queued) and one ``GET /v2/concurrency_limits/{name}`` (the
backlog now, by the server's clock, ours included); the caller sleeps until the backlog has
drained to the burst, then calls. No 423 storm, no polling, no event per acquisition, one Prefect
client per process. The earlier design (``prefect.concurrency.sync.rate_limit`` on a limit of
``burst`` slots, denied increments retried after the server's ``Retry-After``) delivered about half
the quota across processes: Prefect records each 423 by updating the row, which restarts the
decay clock without decaying. A limit of that old shape still works (423 retries);
:func:`ensure_limits` reshapes it. A missing, deleted or inactive limit, or a failing server
(after :data:`SERVER_RETRY_DELAYS`), falls back to the bucket with one message; the process looks
again after :data:`RECHECK_SECONDS`, when it also re-reads the Prefect API URL (``Settings()``
costs ~19 ms of CPU, so it is not read before every call).

Quota broker: a run of an ``acrvpc-process`` worker finds ``ACRVPC_QUOTA_BROKER`` set by its worker and
takes each call's turn from the worker's broker (:mod:`acrvpc.cloud.quota_broker`): one reservation on
the server for all the calls of the host waiting at that moment, and the calls spaced ``1 / qps`` apart
locally; a broker that cannot be asked is said once (WARNING) and the run reserves directly.

Lease: the threads of one process that wait for a token of the same limit at the same time are
served by one acquisition (``occupy`` = the waiting calls, at most ``ACRVPC_QPS_LEASE``, default
:data:`DEFAULT_LEASE`, and at most the limit's burst: one call unless ``ACRVPC_BURST_<PRODUCT>`` is set), so a busy process pays one round trip per several calls and no slot is
taken for a call nobody makes (:func:`lease_size`). A speculative lease (k slots for calls not yet
waiting) would waste up to k-1 slots per acquisition in processes that hold one flow run each.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import threading
import time
from typing import Any

from acrvpc.cloud.shared_limit import (
    HORIZON_SECONDS,
    LEGACY_SLOTS_PER_CALL,
    PACE,
    SERVER_RETRY_DELAYS,
    SLOTS_PER_CALL,
    LimitGone,
    LimitShape,
    SharedLimiter,
    lease_size,
    limit_settings,
    patiently,
    prefect_client,
    read_limit,
)
from acrvpc.cloud.token_bucket import TokenBucket
from acrvpc.prefect_api import api_url, forget_api_url
from acrvpc.settings import Settings, settings

__all__ = [
    "HORIZON_SECONDS",
    "LEGACY_SLOTS_PER_CALL",
    "SERVER_RETRY_DELAYS",
    "SLOTS_PER_CALL",
    "LimitGone",
    "LimitShape",
    "SharedLimiter",
    "TokenBucket",
    "ensure_limits",
    "guard",
    "lease_size",
    "limit_name",
    "limit_settings",
    "limiter",
    "quota",
    "reset",
    "shared_limiter",
    "take",
]

DEFAULT_QPS: float = Settings.model_fields["qps_ecs"].default  # the defaults live in acrvpc/settings.py
QPS_ENV = "ACRVPC_QPS_{product}"
BURST_ENV = "ACRVPC_BURST_{product}"
PREFIX_ENV = "ACRVPC_QPS_LIMIT_PREFIX"
LEASE_ENV = "ACRVPC_QPS_LEASE"
DEFAULT_PREFIX: str = Settings.model_fields["qps_limit_prefix"].default
DEFAULT_LEASE: int = Settings.model_fields[
    "qps_lease"
].default  # calls per acquisition at most (docs/benchmarks.md, "Shared API quota")
SHARED_DEFAULT_BURST = 1.0  # calls at once of a shared limit without ACRVPC_BURST_<PRODUCT> (module docstring)
RECHECK_SECONDS = 60.0  # a process without the shared limit looks again after this long (and re-reads the API URL)
_patiently = patiently  # the name tests know
PRODUCTS = ("cr", "ecs", "vpc")

logger = logging.getLogger(__name__)


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
    forget_api_url()


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


_shared: dict[tuple[str, str, int, str], tuple[SharedLimiter | None, float]] = {}
_shared_lock = threading.Lock()
_lookup_locks: dict[tuple[str, str, int, str], threading.Lock] = {}
_said: set[str] = set()


def _say_once(level: int, key: str, message: str, *args: Any) -> None:
    with _shared_lock:
        if key in _said:
            return
        _said.add(key)
    logger.log(level, message, *args)


def shared_limiter(product: str, region: str) -> SharedLimiter | None:
    """The shared limiter of a product and region, or None (use the per-process bucket).

    None without a Prefect API URL, when the limit does not exist, is inactive or has no slot
    decay, or when the server cannot be asked; each case is said once in the log. A miss is
    looked up again after :data:`RECHECK_SECONDS`.
    """
    url = api_url(max_age=RECHECK_SECONDS)  # Settings() costs ~19 ms of CPU: not before every call
    if not url:
        _say_once(
            logging.INFO,
            "no-api",
            "no Prefect API URL: Alibaba Cloud calls are rate limited per process "
            "(ACRVPC_QPS_<PRODUCT>), not across processes",
        )
        return None
    name = limit_name(product, region)
    key = (url, name, lease_limit(), settings().quota_broker or "")
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


def _look_up_limiter(key: tuple[str, str, int, str], name: str, product: str, region: str) -> SharedLimiter | None:
    url, broker = key[0], key[3] or None
    limiter_: SharedLimiter | None = None
    if broker:  # the host's broker reads the limit (once) and says when it is gone: no read per process
        limiter_ = SharedLimiter(
            name,
            burst=1.0,  # unused until describe() has said (a direct reservation)
            lease=lease_limit(),
            url=url,
            broker=broker,
            describe=lambda: _describe_limit(url, name, product, region),
        )
    else:
        try:
            shape = _read_shape(url, name, product, region)
        except LimitGone:
            shape = None
        if shape is not None:
            limiter_ = SharedLimiter(
                name, burst=shape.burst_calls, lease=lease_limit(), slots_per_call=shape.slots_per_call, url=url
            )
    if limiter_ is not None:
        logger.debug("%s calls take tokens from the shared rate limit %r", product, name)
    with _shared_lock:
        _shared[key] = (limiter_, time.monotonic() + RECHECK_SECONDS)
    return limiter_


def _describe_limit(url: str, name: str, product: str, region: str) -> LimitShape:
    """:func:`_read_shape`, for a limiter whose broker could not say: :class:`LimitGone` when there is none."""
    shape = _read_shape(url, name, product, region)
    if shape is None:
        raise LimitGone(f"the shared rate limit {name!r} cannot be read")
    return shape


def _read_shape(url: str, name: str, product: str, region: str) -> LimitShape | None:
    """The limit's shape, read from the server; None when the server cannot be asked (each case is said once).

    Raises:
        LimitGone: the limit is missing, inactive or has no slot decay.
    """
    try:
        found = read_limit(prefect_client(url), name)
    except Exception as exc:  # noqa: BLE001 - the bucket still keeps this process under quota
        _say_once(
            logging.WARNING,
            f"error {name}",
            "cannot read the shared rate limit %r from the Prefect server "
            "(%s: %s): %s calls in this process are rate limited per process only for %.0f s",
            name,
            type(exc).__name__,
            str(exc)[:200],
            product,
            RECHECK_SECONDS,
        )
        return None
    if found is None:
        _say_once(
            logging.INFO,
            f"missing {name}",
            "no shared rate limit %r on the Prefect server (create it: "
            "python -m acrvpc.cloud.ratelimit --region %s): %s calls in this process are rate limited per "
            "process only",
            name,
            region,
            product,
        )
        raise LimitGone(f"no shared rate limit {name!r}")
    if not found.get("active") or not found.get("slot_decay_per_second"):
        _say_once(
            logging.INFO,
            f"inactive {name}",
            "the shared rate limit %r is inactive or has no slot decay: "
            "%s calls in this process are rate limited per process only",
            name,
            product,
        )
        raise LimitGone(f"the shared rate limit {name!r} is inactive or has no slot decay")
    shape = LimitShape(int(found["limit"]), float(found["slot_decay_per_second"]))
    if not shape.queued:
        _say_once(
            logging.INFO,
            f"old {name}",
            "the shared rate limit %r has the old burst-sized shape: calls wait "
            "by asking again (423); reshape it: python -m acrvpc.cloud.ratelimit --region %s",
            name,
            region,
        )
    return shape


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
            logger.warning(
                "the shared rate limit %r failed (%s: %s): %s calls fall back to the per-process bucket for %.0f s",
                shared.name,
                type(exc).__name__,
                str(exc)[:200],
                product,
                RECHECK_SECONDS,
            )
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
def ensure_limits(
    products: tuple[str, ...] | list[str] = PRODUCTS,
    region: str = "",
    qps: float | None = None,
    burst: float | None = None,
) -> dict[str, dict[str, float]]:
    """Create or update the shared limits of ``products`` in ``region`` on the Prefect server (idempotent).

    Each gets the queue shape (:func:`acrvpc.cloud.shared_limit.limit_settings`: ``slot_decay_per_second
    = qps * PACE * SLOTS_PER_CALL``, ``limit = decay * HORIZON_SECONDS + burst * SLOTS_PER_CALL``) and is
    made active; a limit of the old burst-sized shape is reshaped; a product with qps 0 gets its
    limit deleted (no limit).

    Args:
        products: ``cr``, ``ecs``, ``vpc``.
        region: the region id the pipeline calls (``cn-hangzhou``).
        qps: calls per second for every product (default: each product's ``ACRVPC_QPS_<PRODUCT>``).
        burst: calls at once (default: each product's ``ACRVPC_BURST_<PRODUCT>``, or :data:`SHARED_DEFAULT_BURST`).

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
            p_qps, _ = quota(product)
            rate = p_qps if qps is None else float(qps)
            explicit = getattr(settings(), f"burst_{product.lower()}")  # ACRVPC_BURST_<PRODUCT>, when set
            size = burst if burst is not None else (explicit or SHARED_DEFAULT_BURST)
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
                    client.create_global_concurrency_limit(
                        GlobalConcurrencyLimitCreate(name=name, limit=limit, slot_decay_per_second=decay, active=True)
                    )
                except ObjectAlreadyExists:  # created meanwhile by another deployer: update it below
                    existing = client.read_global_concurrency_limit_by_name(name)
            if existing is not None and (existing.limit, existing.slot_decay_per_second, existing.active) != (
                limit,
                decay,
                True,
            ):
                client.update_global_concurrency_limit(
                    name, GlobalConcurrencyLimitUpdate(limit=limit, slot_decay_per_second=decay, active=True)
                )
            done[name] = {"limit": limit, "slot_decay_per_second": decay}
            shape = LimitShape(limit, decay)
            logger.info(
                "shared rate limit %s: %g calls/s (%.0f %% of a %g/s quota), %g at once, up to %.0f s of backlog queued",
                name,
                shape.qps,
                PACE * 100,
                shape.quota,
                shape.burst_calls,
                HORIZON_SECONDS,
            )
    reset()  # this process looks the limits up again
    return done


def main(argv: list[str] | None = None) -> int:
    """``python -m acrvpc.cloud.ratelimit --region cn-hangzhou [--products ecs,cr,vpc] [--qps 20] [--burst 10]``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m acrvpc.cloud.ratelimit",
        description="Create or update the shared API rate limits on the Prefect server.",
    )
    parser.add_argument("--region", required=True, help="the region id the pipeline calls, e.g. cn-hangzhou")
    parser.add_argument("--products", default=",".join(PRODUCTS), help="comma-separated: cr,ecs,vpc")
    parser.add_argument("--qps", type=float, default=None, help="calls per second (default ACRVPC_QPS_<PRODUCT> or 20)")
    parser.add_argument("--burst", type=float, default=None, help="calls at once (default ACRVPC_BURST_<PRODUCT> or 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    products = [p.strip().lower() for p in args.products.split(",") if p.strip()]
    try:
        done = ensure_limits(products, args.region, qps=args.qps, burst=args.burst)
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, values in done.items():
        shape = LimitShape(int(values["limit"]), values["slot_decay_per_second"])
        print(
            f"{name}: {shape.qps:g} calls/s ({PACE:.0%} of a {shape.quota:g}/s quota), {shape.burst_calls:g} at once "
            f"(limit {values['limit']:g} slots, "
            f"{values['slot_decay_per_second']:g} slots/s, {SLOTS_PER_CALL} slots per call, "
            f"{HORIZON_SECONDS:g} s of backlog)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
