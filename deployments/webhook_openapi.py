"""The webhook receiver's OpenAPI 3.1 description, served at ``GET /openapi.json``.

Written by hand from the receiver's behaviour (:mod:`deployments.webhook`); the request body
schemas are the payload models' own JSON schemas (:mod:`deployments.gitlab_events`). Schemathesis
fuzzes the receiver from it (tests/fuzz/test_webhook_fuzz.py).
"""

from __future__ import annotations

from typing import Any

from deployments.gitlab_events import PUSH_HOOK, TAG_PUSH_HOOK, PushEvent, TagPushEvent

REF = "#/components/schemas/{model}"


def _header(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string", **schema},
    }


def _answer(description: str, schema: str = "Error", **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model=schema)}}},
        **extra,
    }


NO_CONTROL = "^[^\\x00-\\x1f]*$"


def _no_control(schema: dict[str, Any]) -> None:
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "string":
            branch["pattern"] = NO_CONTROL


def openapi_schema(max_body: int, signed: bool) -> dict[str, Any]:
    """The receiver's OpenAPI document.

    Args:
        max_body: the body cap in bytes (413 above it).
        signed: whether deliveries must carry a Standard Webhooks signature.

    Returns:
        An OpenAPI 3.1 document as a dict.
    """
    schemas: dict[str, Any] = {}
    for model in (PushEvent, TagPushEvent):
        schema = model.model_json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        for name in ("ref", "after", "checkout_sha"):  # the receiver refuses control characters in them (400)
            _no_control(schema["properties"][name])
    _no_control(schemas["EventProject"]["properties"]["path_with_namespace"])
    schemas["Error"] = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
    schemas["Delivery"] = {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["accepted", "queued", "ignored", "dead"]},
            "reason": {"type": "string"},
            "flow_run_id": {"type": "string"},
            "delivery": {"type": "string"},
            "deployment": {"type": "string"},
            "repository": {"type": "string"},
            "rule": {"type": "string"},
        },
    }
    schemas["Health"] = {
        "type": "object",
        "required": ["status", "prefect", "deliveries"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "prefect": {
                "type": "object",
                "required": ["reachable"],
                "properties": {"reachable": {"type": ["boolean", "null"]}},
            },
            "deliveries": {
                "type": "object",
                "required": ["pending", "dead"],
                "properties": {"pending": {"type": "integer", "minimum": 0}, "dead": {"type": "integer", "minimum": 0}},
            },
        },
    }
    auth = (
        "a Standard Webhooks signature (webhook-id, webhook-timestamp, webhook-signature) within the replay window"
        if signed
        else "the X-Gitlab-Token secret"
    )
    retry_after: dict[str, Any] = {
        "headers": {
            "Retry-After": {
                "description": "Seconds until this source may deliver again.",
                "schema": {"type": "integer"},
            }
        }
    }
    delivery = {
        "summary": "Receive a GitLab push or tag-push event",
        "description": (
            f"Needs {auth}. A routed push starts one run of the on-push deployment; resends of the same "
            f"delivery return the same run. Bodies over {max_body} bytes are refused before parsing."
        ),
        "operationId": "receiveGitlabEvent",
        "parameters": [
            _header("X-Gitlab-Token", "The hook's secret token."),
            _header(
                "X-Gitlab-Event",
                "The event kind; push and tag push are handled, others ignored.",
                examples=[PUSH_HOOK, TAG_PUSH_HOOK],
            ),
            _header("X-Gitlab-Event-UUID", "The delivery's id."),
            _header("Idempotency-Key", "The same on every resend (GitLab >= 17.4)."),
            _header("webhook-id", "Standard Webhooks message id (equals Idempotency-Key)."),
            _header("webhook-timestamp", "Standard Webhooks timestamp, seconds since the epoch."),
            _header("webhook-signature", "v1,<base64 HMAC-SHA256>, space-separated when several."),
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [{"$ref": REF.format(model="PushEvent")}, {"$ref": REF.format(model="TagPushEvent")}]
                    }
                }
            },
        },
        "responses": {
            "202": _answer(
                "accepted (a run was started or found), queued (spooled; its run is created shortly), "
                "ignored (not routed, deleted ref, other event) or dead (Prefect refused the run for "
                "good; kept as a dead letter to replay).",
                "Delivery",
            ),
            "400": _answer(
                "Not JSON, not an object, no X-Gitlab-Event, not a GitLab payload, or a control "
                "character in the project, ref or commit."
            ),
            "401": _answer(f"Missing or wrong credentials: {auth}."),
            "404": _answer("No such path."),
            "405": _answer("Wrong method."),
            "413": _answer(f"Body over {max_body} bytes."),
            "415": _answer("Content-Type is not application/json."),
            "429": _answer("Too many deliveries from this source.", **retry_after),
            "500": _answer("An unexpected error (details only in the receiver's log)."),
            "503": _answer("The delivery could not be recorded; resend it later."),
        },
    }
    slashed = {
        **delivery,
        "operationId": "receiveGitlabEventSlash",
        "summary": "The same endpoint, for a hook URL saved with a trailing slash",
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "acr-vpc-build GitLab webhook receiver", "version": "1"},
        "paths": {
            "/hooks/gitlab": {"post": delivery},
            "/hooks/gitlab/": {"post": slashed},
            "/healthz": {
                "get": {
                    "summary": "Liveness, Prefect's reachability and the spool's pending and dead deliveries",
                    "operationId": "healthz",
                    "responses": {"200": _answer("Alive (degraded: Prefect unreachable or dead letters).", "Health")},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "responses": {
                        "200": {
                            "description": "The OpenAPI document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {"schemas": schemas},
    }
