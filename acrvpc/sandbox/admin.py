"""Admin routes under ``/_sandbox/``: inspect and steer the sandbox from tests, demos and people.

Routes register with :func:`admin_route`, so features (fault injection, console actions) can
add theirs in their own modules. A handler takes ``(world, query, payload)`` and returns
``(status, json_body)``.

========================================  ==================================================
``GET  /_sandbox/healthz``                 liveness
``GET  /_sandbox/calls?since=N``           every call received: product, action, writes, status, code
``POST /_sandbox/reset``                   re-seed (body: optional ``{"scenario": {...}}``)
``GET|POST /_sandbox/settings``            ``latency_ms``, ``time_scale``, ``replay_protection``
``POST /_sandbox/faults``                  ``{"action", "count", "code", "status"}``: fail the next N calls
``POST /_sandbox/clock/advance``           ``{"seconds": N}``: jump sandbox time ahead
========================================  ==================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .world import World

AdminHandler = Callable[["World", dict[str, str], dict[str, Any]], tuple[int, Any]]
ADMIN_ROUTES: dict[tuple[str, str], AdminHandler] = {}


def admin_route(method: str, path: str) -> Callable[[AdminHandler], AdminHandler]:
    def register(fn: AdminHandler) -> AdminHandler:
        key = (method.upper(), path.rstrip("/"))
        if key in ADMIN_ROUTES:
            raise ValueError(f"admin route {key} registered twice")
        ADMIN_ROUTES[key] = fn
        return fn

    return register


def dispatch(world: World, method: str, path: str, query: dict[str, str], payload: dict[str, Any]) -> tuple[int, Any]:
    handler = ADMIN_ROUTES.get((method.upper(), path.rstrip("/")))
    if handler is None:
        return 404, {
            "error": f"no sandbox admin route {method} {path}",
            "routes": sorted(f"{m} {p}" for m, p in ADMIN_ROUTES),
        }
    return handler(world, query, payload)


def settings_of(world: World) -> dict[str, Any]:
    return {
        "latency_ms": world.faults.latency_ms,
        "time_scale": world.clock.time_scale,
        "replay_protection": world.verifier.replay_protection,
    }


@admin_route("GET", "/_sandbox/healthz")
def _healthz(world: World, query: dict[str, str], payload: dict[str, Any]) -> tuple[int, Any]:
    return 200, {"status": "ok"}


@admin_route("GET", "/_sandbox/calls")
def _calls(world: World, query: dict[str, str], payload: dict[str, Any]) -> tuple[int, Any]:
    return 200, {"calls": world.calls.list(int(query.get("since", 0)))}


@admin_route("POST", "/_sandbox/reset")
def _reset(world: World, query: dict[str, str], payload: dict[str, Any]) -> tuple[int, Any]:
    world.reset(payload.get("scenario"))
    return 200, {"status": "reset"}


@admin_route("GET", "/_sandbox/settings")
def _get_settings(world: World, query: dict[str, str], payload: dict[str, Any]) -> tuple[int, Any]:
    return 200, settings_of(world)


@admin_route("POST", "/_sandbox/settings")
def _set_settings(world: World, query: dict[str, str], payload: dict[str, Any]) -> tuple[int, Any]:
    unknown = set(payload) - {"latency_ms", "time_scale", "replay_protection"}
    if unknown:
        return 400, {"error": f"unknown setting(s) {sorted(unknown)}; known: latency_ms, time_scale, replay_protection"}
    if "latency_ms" in payload:
        world.faults.latency_ms = float(payload["latency_ms"])
    if "time_scale" in payload:
        world.clock.set_scale(float(payload["time_scale"]))
    if "replay_protection" in payload:
        world.verifier.replay_protection = bool(payload["replay_protection"])
    return 200, settings_of(world)


@admin_route("POST", "/_sandbox/faults")
def _faults(world: World, query: dict[str, str], payload: dict[str, Any]) -> tuple[int, Any]:
    if "action" not in payload:
        return 400, {"error": "faults needs 'action' (and optionally count, code, status)"}
    world.faults.fail_next(
        payload["action"],
        int(payload.get("count", 1)),
        payload.get("code", "ServiceUnavailable"),
        payload.get("status"),
    )
    return 200, {"status": "armed"}


@admin_route("POST", "/_sandbox/clock/advance")
def _advance(world: World, query: dict[str, str], payload: dict[str, Any]) -> tuple[int, Any]:
    world.clock.advance(float(payload.get("seconds", 0)))
    return 200, {"now": world.clock.now()}
