"""The GitLab webhook receiver: an ASGI app that turns routed pushes into flow runs.

Served by ``acrvpc webhook serve SPEC --port N`` (:mod:`acrvpc.commands.webhook`). Endpoints:

``POST /hooks/gitlab``, checked in this order, each refusal starting nothing:

1. ``X-Gitlab-Token`` must equal the secret (``hmac.compare_digest``, constant time): else 401.
2. ``Content-Type`` must be ``application/json``: else 415.
3. The body is read up to 1 MiB before anything parses it: over that, 413.
4. It must be a JSON object: else 400.
5. ``X-Gitlab-Event`` ``Push Hook`` / ``Tag Push Hook`` bodies are parsed with the documented payload
   models (:mod:`deployments.gitlab_events`): a body that does not fit gets 400. Other event kinds
   get 202 ``{"status": "ignored", "reason": ...}``, as do deletions (``after`` = 40 zeros) and
   pushes no route of ``webhook.routes`` takes.
6. A routed push starts one flow run of the on-push deployment with parameters ``project, ref, sha,
   event_id`` and the idempotency key ``gitlab:<Idempotency-Key>`` (GitLab >= 17.4, the same on
   every resend), else ``gitlab:<X-Gitlab-Event-UUID>``: a redelivered event returns the run it
   already started and starts no other. The answer is 202 ``{"status": "accepted", "flow_run_id"}``,
   given as soon as the run is created (it does not wait for the build); if the run cannot be
   created within 8 s, 503 (GitLab's timeout is 10 s).

``GET /healthz`` answers ``{"status": "ok"}``.

Error answers are short JSON ``{"error": ...}`` without internals; the secret is never logged.
How runs are started is a constructor argument (``start_run``): :func:`deployment_starter`
creates them on the Prefect server named by ``PREFECT_API_URL``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from typing import Any, Awaitable, Callable

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from acrvpc.spec import Spec, route_target
from deployments.gitlab_events import EVENT_MODELS, PushEvent

MAX_BODY = 1024 * 1024
START_TIMEOUT_S = 8.0
RUN_TAGS = ("gitlab-webhook",)

StartRun = Callable[[dict[str, Any], str], Awaitable[str]]
"""``start_run(parameters, idempotency_key) -> flow run id``."""

_log = logging.getLogger("acrvpc.webhook")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _ignored(reason: str) -> JSONResponse:
    return JSONResponse({"status": "ignored", "reason": reason}, status_code=202)


class _TooLarge(Exception):
    pass


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def _invalid(exc: ValidationError) -> str:
    fields = sorted({".".join(str(p) for p in err["loc"]) or "(body)" for err in exc.errors()})
    return ", ".join(fields[:5])


class WebhookReceiver:
    """The receiver's state and handlers: a spec's routes, the secret, and how to start a run.

    Args:
        spec: the pipeline spec (``webhook.routes``).
        secret: the X-Gitlab-Token secret (:func:`tasks.webhook_hook.resolve_webhook_secret`).
        start_run: ``async (parameters, idempotency_key) -> flow run id``.
        spec_path: passed to the runs as ``spec_path`` when given; else the deployment's own default.
        max_body: the largest body read, in bytes.
        start_timeout: seconds to wait for ``start_run`` before answering 503.
    """

    def __init__(self, spec: Spec, secret: str, start_run: StartRun, *, spec_path: str | None = None,
                 max_body: int = MAX_BODY, start_timeout: float = START_TIMEOUT_S) -> None:
        if not secret:
            raise ValueError("the webhook secret is empty")
        self.spec, self.start_run, self.spec_path = spec, start_run, spec_path
        self._secret = secret.encode()
        self.max_body, self.start_timeout = max_body, start_timeout

    def app(self) -> Starlette:
        """The ASGI application."""
        return Starlette(routes=[Route("/hooks/gitlab", self.gitlab, methods=["POST"]),
                                 Route("/healthz", self.healthz, methods=["GET"])])

    async def healthz(self, request: Request) -> JSONResponse:
        """``GET /healthz``."""
        return JSONResponse({"status": "ok"})

    def token_ok(self, given: str | None) -> bool:
        """Whether ``X-Gitlab-Token`` carries the secret (constant-time comparison)."""
        return hmac.compare_digest((given or "").encode(), self._secret)

    async def _body(self, request: Request) -> bytes:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            raise _TooLarge
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_body:
                raise _TooLarge
        return bytes(body)

    async def gitlab(self, request: Request) -> JSONResponse:
        """``POST /hooks/gitlab``: check, parse, route, and start a run (see the module docstring)."""
        started = time.monotonic()
        if not self.token_ok(request.headers.get("x-gitlab-token")):
            _log.warning("delivery refused: missing or wrong X-Gitlab-Token")
            return _error(401, "missing or wrong X-Gitlab-Token")
        if _media_type(request.headers.get("content-type", "")) != "application/json":
            return _error(415, "Content-Type must be application/json")
        try:
            body = await self._body(request)
        except _TooLarge:
            return _error(413, f"body over {self.max_body} bytes")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _error(400, "the body is not valid JSON")
        if not isinstance(data, dict):
            return _error(400, "the body is not a JSON object")
        kind = request.headers.get("x-gitlab-event")
        if not kind:
            return _error(400, "no X-Gitlab-Event header")
        model = EVENT_MODELS.get(kind)
        if model is None:
            return _ignored(f"{kind!r} events are not handled (push and tag push only)")
        try:
            event = model.model_validate(data)
        except ValidationError as exc:
            return _error(400, f"not a GitLab {kind} payload (check: {_invalid(exc)})")
        return await self._route(request, event, started)

    async def _route(self, request: Request, event: PushEvent, started: float) -> JSONResponse:
        project = event.project.path_with_namespace
        what = "tag" if event.object_kind == "tag_push" else "branch"
        if event.deleted:
            return _ignored(f"{what} {event.ref} of {project} was deleted")
        route = self.spec.webhook.route_for(project, event.ref)
        if route is None:
            _log.info("delivery ignored: no route for %s %s", project, event.ref)
            return _ignored(f"no route for {project} {event.ref}")
        key = (request.headers.get("idempotency-key") or request.headers.get("x-gitlab-event-uuid")
               or f"{event.project_id}:{event.ref}:{event.before}:{event.after}")
        parameters: dict[str, Any] = {"project": project, "ref": event.ref, "sha": event.sha, "event_id": key}
        if self.spec_path:
            parameters["spec_path"] = self.spec_path
        repo, rule = route_target(self.spec, route)
        try:
            run_id = await asyncio.wait_for(self.start_run(parameters, f"gitlab:{key}"), self.start_timeout)
        except Exception as exc:  # noqa: BLE001 - any failure to reach Prefect: 503, details in our log only
            _log.error("delivery %s: could not start a run of %s (%s)", key, self.spec.webhook.deployment,
                       type(exc).__name__)
            return _error(503, "could not start the build run; resend the delivery later")
        _log.info("delivery %s: %s %s -> %s %s, flow run %s (%.0f ms)", key, project, event.ref, repo.full_name,
                  rule.image_tag, run_id, (time.monotonic() - started) * 1000)
        return JSONResponse({"status": "accepted", "flow_run_id": run_id, "deployment": self.spec.webhook.deployment,
                             "repository": repo.full_name, "rule": route.rule}, status_code=202)


def create_app(spec: Spec, secret: str, start_run: StartRun, **options: Any) -> Starlette:
    """The receiver's ASGI app (see :class:`WebhookReceiver` for the arguments)."""
    return WebhookReceiver(spec, secret, start_run, **options).app()


def deployment_starter(deployment: str, *, tags: tuple[str, ...] = RUN_TAGS) -> StartRun:
    """A ``start_run`` that creates a flow run of ``deployment`` on the Prefect API (``PREFECT_API_URL``).

    Args:
        deployment: ``flow-name/deployment-name``.
        tags: tags added to each run.

    Returns:
        ``async (parameters, idempotency_key) -> flow run id``; the same key returns the run it made.
    """
    async def start(parameters: dict[str, Any], idempotency_key: str) -> str:
        from prefect import get_client

        async with get_client() as client:
            found = await client.read_deployment_by_name(deployment)
            run = await client.create_flow_run_from_deployment(found.id, parameters=parameters,
                                                               idempotency_key=idempotency_key, tags=list(tags))
        return str(run.id)

    return start
