"""Action registry: one handler per (API version, Action), moto-style.

A service module declares ``service = Service("ecs", "2014-05-26", host="ecs.{region}.aliyuncs.com")``
and registers handlers with ``@service.action("CreateSecurityGroup", writes=True)``.
A handler takes ``(world, request)`` and returns the response body without ``RequestId``
(the server adds it), or raises an :class:`~.errors.RpcError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..world import World
    from .request import RpcRequest

Handler = Callable[["World", "RpcRequest"], dict[str, Any]]


@dataclass
class Action:
    name: str
    handler: Handler
    writes: bool


@dataclass
class Service:
    product: str
    version: str
    host: str
    actions: dict[str, Action] = field(default_factory=dict)

    def action(self, name: str, *, writes: bool = False) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            if name in self.actions:
                raise ValueError(f"{self.product} {name} registered twice")
            self.actions[name] = Action(name, fn, writes)
            return fn

        return register


SERVICES: dict[str, Service] = {}


def register_service(service: Service) -> Service:
    SERVICES[service.version] = service
    return service
