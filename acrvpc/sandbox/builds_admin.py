"""Admin route for the CR build simulation: which repositories' builds fail or hang, stage timing.

``GET /_sandbox/builds`` shows the settings; ``POST /_sandbox/builds`` changes any of
``fail_repos`` / ``hang_repos`` (lists of ``namespace/name``), ``stages``
(``[{"name": "BUILD", "seconds": 12}, ...]``), ``pending_seconds`` and ``log_page_size``. They apply
to builds started afterwards (a build's script is decided when it starts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .admin import admin_route

if TYPE_CHECKING:  # pragma: no cover
    from .world import World

Reply = tuple[int, Any]
_KNOWN = ("fail_repos", "hang_repos", "stages", "pending_seconds", "log_page_size")


def _settings(world: World) -> dict[str, Any]:
    cr = world.cr
    return {
        "fail_repos": sorted(cr.fail_repos),
        "hang_repos": sorted(cr.hang_repos),
        "stages": cr.stages,
        "pending_seconds": cr.pending_seconds,
        "log_page_size": cr.log_page_size,
    }


@admin_route("GET", "/_sandbox/builds")
def _get_builds(world: World, query: dict[str, str], payload: dict[str, Any]) -> Reply:
    return 200, _settings(world)


@admin_route("POST", "/_sandbox/builds")
def _set_builds(world: World, query: dict[str, str], payload: dict[str, Any]) -> Reply:
    unknown = sorted(set(payload) - set(_KNOWN))
    if unknown:
        return 400, {"error": f"unknown build setting(s) {unknown}; known: {', '.join(_KNOWN)}"}
    cr = world.cr
    try:
        for key in ("fail_repos", "hang_repos"):
            if key in payload:
                if not isinstance(payload[key], list):
                    return 400, {"error": f"{key} must be a list of namespace/name"}
                setattr(cr, key, {str(x) for x in payload[key]})
        if "stages" in payload:
            stages = payload["stages"]
            if not isinstance(stages, list) or not all(isinstance(s, dict) and "name" in s for s in stages):
                return 400, {"error": 'stages must be a list of {"name": ..., "seconds": ...}'}
            cr.stages = [{"name": str(s["name"]), "seconds": float(s.get("seconds", 1))} for s in stages]
        if "pending_seconds" in payload:
            cr.pending_seconds = float(payload["pending_seconds"])
        if "log_page_size" in payload:
            size = int(payload["log_page_size"])
            if size < 1:
                return 400, {"error": "log_page_size must be at least 1"}
            cr.log_page_size = size
    except (TypeError, ValueError) as exc:
        return 400, {"error": f"bad value: {exc}"}
    return 200, _settings(world)
