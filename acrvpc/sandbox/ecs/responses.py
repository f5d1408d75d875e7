"""One handler per ecs Action: parse, call the model, shape the reply."""

from __future__ import annotations

from ..core.registry import Service, register_service

service = register_service(Service("ecs", "2014-05-26", host="ecs.{region}.aliyuncs.com"))
