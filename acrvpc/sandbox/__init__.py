"""A loopback emulator of the Alibaba Cloud (CR, ECS, VPC) and GitLab APIs the pipeline uses.

It imports nothing from ``flows/``, ``tasks/`` or ``acrvpc.cloud.clients``: the fidelity tests compare
the two sides, and shared code would make them circular.
"""

from .server import SandboxServer
from .world import World, load_scenario

__all__ = ["SandboxServer", "World", "load_scenario"]
