"""State of the GitLab emulation (no HTTP here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..world import World


class GitLabBackend:
    def __init__(self, world: "World") -> None:
        self.world = world

    def load(self, section: dict[str, Any]) -> None:
        """Seed state from the scenario's ``gitlab:`` section."""

    def project_by_path(self, path: str) -> dict[str, Any] | None:
        """The project with this ``path_with_namespace`` (used by the CR emulation), or ``None``."""
        return None
