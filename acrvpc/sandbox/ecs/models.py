"""State and rules of the ecs emulation (no HTTP here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..world import World


class EcsBackend:
    def __init__(self, world: "World") -> None:
        self.world = world

    def load(self, section: dict[str, Any]) -> None:
        """Seed state from the scenario's ``ecs:`` section."""

    def reaches(self, account_id: int, ip: str, port: int) -> tuple[bool, str]:
        """Whether builders of ``account_id`` reach ``ip:port`` over TCP (used by the CR build simulation).

        True when an ENI the account may attach is ``InUse``, its security groups' egress admits
        ``ip:port``, and (if ``ip`` is an ECS instance here) that instance's groups admit
        ``100.104.0.0/16`` on ``port``. Otherwise ``(False, reason)``.
        """
        return True, ""
