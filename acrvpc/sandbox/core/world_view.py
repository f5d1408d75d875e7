"""What a service backend uses of the sandbox's :class:`~acrvpc.sandbox.world.World`, as protocols.

The backends (``<service>/models.py``) are built by the World and hold it, but import it not: each
names what it uses (the region, the clock, fresh ids, and the other backends it asks across a
seam) as a protocol the World satisfies. So ``world`` imports the models, never the other way.
"""

from __future__ import annotations

from typing import Any, Protocol

from .clock import SandboxClock


class ServiceWorld(Protocol):
    """The world every backend sees: its one region, its clock, the seeded scenario, fresh ids."""

    region: str
    clock: SandboxClock
    scenario: dict[str, Any]

    def new_id(self, prefix: str) -> str:
        """A fresh resource id such as ``sg-bp1sbx00000000000a7``."""
        ...
