"""Admin routes that load, show and clear the sandbox's RAM policy (see :mod:`acrvpc.sandbox.core.ram`).

========================================  ==================================================
``GET  /_sandbox/ram``                     ``{"policy": {...} | null}``: the policy enforced now
``POST /_sandbox/ram``                     ``{"policy": {...}}`` enforces it; ``{"policy": null}`` clears it
========================================  ==================================================

A policy the sandbox cannot enforce (not RAM grammar, or with a ``Condition``) answers 400
``{"error": ...}`` and leaves the current one in place. ``POST /_sandbox/reset`` keeps the policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .admin import admin_route
from .core import ram

if TYPE_CHECKING:  # pragma: no cover
    from .world import World


def _shown(world: World) -> dict[str, Any]:
    policy = getattr(world, "ram_policy", None)
    return {"policy": policy.document if policy is not None else None}


@admin_route("GET", "/_sandbox/ram")
def _get_ram(world: World, query: dict[str, str], payload: dict[str, Any]) -> tuple[int, Any]:
    return 200, _shown(world)


@admin_route("POST", "/_sandbox/ram")
def _set_ram(world: World, query: dict[str, str], payload: dict[str, Any]) -> tuple[int, Any]:
    if "policy" not in payload:
        return 400, {"error": 'ram needs {"policy": {...}} (or {"policy": null} to allow everything)'}
    try:
        world.ram_policy = ram.load_policy(payload["policy"])
    except ram.PolicyError as exc:
        return 400, {"error": f"policy not loaded: {exc}"}
    return 200, _shown(world)
