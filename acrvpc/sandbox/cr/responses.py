"""One handler per cr Action: parse, call the model, shape the reply."""

from __future__ import annotations

from ..core.registry import Service, register_service

service = register_service(Service("cr", "2018-12-01", host="cr.{region}.aliyuncs.com"))
