"""One handler per vpc Action: parse, call the model, shape the reply."""

from __future__ import annotations

from ..core.registry import Service, register_service

service = register_service(Service("vpc", "2016-04-28", host="vpc.{region}.aliyuncs.com"))
