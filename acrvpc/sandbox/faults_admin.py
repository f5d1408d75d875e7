"""Admin routes that steer fault injection (see :mod:`acrvpc.sandbox.core.faults` for the semantics).

``POST /_sandbox/faults`` (fail the next N calls, in :mod:`acrvpc.sandbox.admin`) stays as it is;
these add the rest. Bodies are JSON; a bad body answers 400 ``{"error": ...}`` and changes nothing.

========================================  ==================================================
``GET  /_sandbox/faults``                  every fault setting, explicit quotas, scripted faults pending
``POST /_sandbox/faults/settings``         ``latency_ms``, ``qps`` (per product), ``qps_per_action``,
                                           ``error_rate``, ``drop_rate``, ``slow_rate``, ``slow_ms``,
                                           ``seed``, ``throttle_retry_after``, ``scope`` (products)
``POST /_sandbox/faults/quota``            ``{"product", "action"?, "qps", "burst"?}``: one quota
``POST /_sandbox/faults/fail``             ``{"action", "count"?, "code"?, "status"?, "product"?, "soft"?}``
``POST /_sandbox/faults/drop``             ``{"action", "count"?, "product"?}``: close without answer
``POST /_sandbox/faults/slow``             ``{"action", "count"?, "delay_ms"?, "product"?}``: answer late
``POST /_sandbox/faults/clear``            remove every fault, quota and setting above
========================================  ==================================================

Example (20% transient faults, reproducible, ECS at 10 calls per second)::

    curl -X POST $URL/_sandbox/faults/settings -d '{"error_rate": 0.1, "drop_rate": 0.1, "seed": 7}'
    curl -X POST $URL/_sandbox/faults/quota -d '{"product": "ecs", "qps": 10}'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .admin import admin_route

if TYPE_CHECKING:  # pragma: no cover
    from .world import World

Reply = tuple[int, Any]


def _bad(message: str) -> Reply:
    return 400, {"error": message}


def _count(payload: dict[str, Any]) -> int:
    count = int(payload.get("count", 1))
    if count < 1:
        raise ValueError("count must be 1 or more")
    return count


@admin_route("GET", "/_sandbox/faults")
def _get_faults(world: World, query: dict[str, str], payload: dict[str, Any]) -> Reply:
    return 200, world.faults.settings()


@admin_route("POST", "/_sandbox/faults/settings")
def _set_fault_settings(world: World, query: dict[str, str], payload: dict[str, Any]) -> Reply:
    try:
        world.faults.update(payload)
    except (TypeError, ValueError) as exc:
        return _bad(str(exc))
    return 200, world.faults.settings()


@admin_route("POST", "/_sandbox/faults/quota")
def _set_quota(world: World, query: dict[str, str], payload: dict[str, Any]) -> Reply:
    if "product" not in payload or "qps" not in payload:
        return _bad("quota needs 'product' and 'qps' (and optionally 'action', 'burst')")
    try:
        burst = payload.get("burst")
        world.faults.set_quota(
            float(payload["qps"]),
            product=str(payload["product"]),
            action=payload.get("action"),
            burst=None if burst is None else float(burst),
        )
    except (TypeError, ValueError) as exc:
        return _bad(str(exc))
    return 200, {"quotas": world.faults.quotas()}


@admin_route("POST", "/_sandbox/faults/fail")
def _fail(world: World, query: dict[str, str], payload: dict[str, Any]) -> Reply:
    if "action" not in payload:
        return _bad("fail needs 'action' (and optionally count, code, status, product, soft)")
    try:
        status = payload.get("status")
        world.faults.fail_next(
            payload["action"],
            _count(payload),
            str(payload.get("code", "ServiceUnavailable")),
            None if status is None else int(status),
            product=payload.get("product"),
            soft=bool(payload.get("soft", False)),
        )
    except (TypeError, ValueError) as exc:
        return _bad(str(exc))
    return 200, {"status": "armed"}


@admin_route("POST", "/_sandbox/faults/drop")
def _drop(world: World, query: dict[str, str], payload: dict[str, Any]) -> Reply:
    if "action" not in payload:
        return _bad("drop needs 'action' (and optionally count, product)")
    try:
        world.faults.drop_next(payload["action"], _count(payload), product=payload.get("product"))
    except (TypeError, ValueError) as exc:
        return _bad(str(exc))
    return 200, {"status": "armed"}


@admin_route("POST", "/_sandbox/faults/slow")
def _slow(world: World, query: dict[str, str], payload: dict[str, Any]) -> Reply:
    if "action" not in payload:
        return _bad("slow needs 'action' (and optionally count, delay_ms, product)")
    try:
        delay = payload.get("delay_ms")
        world.faults.slow_next(
            payload["action"], _count(payload), None if delay is None else float(delay), product=payload.get("product")
        )
    except (TypeError, ValueError) as exc:
        return _bad(str(exc))
    return 200, {"status": "armed"}


@admin_route("POST", "/_sandbox/faults/clear")
def _clear(world: World, query: dict[str, str], payload: dict[str, Any]) -> Reply:
    world.faults.clear()
    return 200, world.faults.settings()
