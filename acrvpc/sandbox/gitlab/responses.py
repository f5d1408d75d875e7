"""GitLab REST v4 routes: ``handle(world, method, path, query, headers, body, base_url)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..world import World


def handle(world: "World", method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes,
           base_url: str) -> tuple[int, Any, dict[str, str], str]:
    """Answer one GitLab API request.

    Args:
        path: the path below ``/api/v4`` (e.g. ``/projects/platform%2Fbilling-api``), still URL-encoded.
        base_url: ``http://host:port`` as the client addressed the sandbox (for ``web_url`` fields).

    Returns:
        ``(status, json_body, extra_headers, route)`` where ``route`` names the endpoint for the
        call log, e.g. ``"GET /projects/:id"``.
    """
    return 404, {"message": "404 Not Found"}, {}, f"{method} (unknown)"
