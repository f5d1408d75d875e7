"""Helpers for checking the sandbox's raw answers against the SDK's response models."""

from __future__ import annotations

from typing import Any

from alibabacloud_tea_openapi import utils_models as open_api_util_models
from darabonba.runtime import RuntimeOptions


def raw_call(client: Any, action: str, query: dict[str, Any], version: str) -> dict[str, Any]:
    """The JSON body exactly as the sandbox sent it (before the SDK model drops unknown keys)."""
    params = open_api_util_models.Params(
        action=action,
        version=version,
        protocol="HTTPS",
        pathname="/",
        method="POST",
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
    request = open_api_util_models.OpenApiRequest(query={k: str(v) for k, v in query.items()})
    return client.call_api(params, request, RuntimeOptions())["body"]


def lost_keys(raw: Any, kept: Any, path: str = "") -> list[str]:
    """Paths present in ``raw`` but missing (or changed) after the SDK model's from_map/to_map."""
    if isinstance(raw, dict):
        if not isinstance(kept, dict):
            return [path or "(root)"]
        out: list[str] = []
        for key, value in raw.items():
            out += [f"{path}.{key}"] if key not in kept else lost_keys(value, kept[key], f"{path}.{key}")
        return out
    if isinstance(raw, list):
        if not isinstance(kept, list) or len(kept) != len(raw):
            return [path]
        return [p for i, item in enumerate(raw) for p in lost_keys(item, kept[i], f"{path}[{i}]")]
    return [] if raw == kept else [path]


def assert_sdk_keeps_every_key(body: dict[str, Any], model_cls: type) -> None:
    assert lost_keys(body, model_cls().from_map(body).to_map()) == []
