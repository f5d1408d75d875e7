"""State and rules of the vpc emulation (no HTTP here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..world import World


class VpcBackend:
    def __init__(self, world: "World") -> None:
        self.world = world

    def load(self, section: dict[str, Any]) -> None:
        """Seed state from the scenario's ``vpc:`` section."""
