"""The GitLab webhook receiver: an ASGI app that turns routed pushes into flow runs.

Served by ``acrvpc webhook serve SPEC --port N`` (:mod:`acrvpc.commands.webhook`). Endpoints:

``POST /hooks/gitlab``, checked in this order, each refusal starting nothing:

1. At most ``webhook.rate_limit`` deliveries per source address in a moving window (the peer, or
   behind a trusted proxy the forwarded client; :mod:`deployments.webhook_guard`): else 429 with
   ``Retry-After``.
2. When a secret is configured, ``X-Gitlab-Token`` must equal it (``hmac.compare_digest``, constant
   time): else 401.
3. When a signing token is configured (GitLab >= 19, Standard Webhooks), ``webhook-id``,
   ``webhook-timestamp`` and ``webhook-signature`` must be present and the timestamp within the
   replay window (``webhook.replay_window_seconds``): else 401.
4. ``Content-Type`` must be ``application/json``: else 415.
5. The body is read up to 1 MiB before anything parses it: over that, 413.
6. When signing is configured, the signature must match the raw body (``standardwebhooks``):
   else 401.
7. It must be a JSON object: else 400.
8. ``X-Gitlab-Event`` ``Push Hook`` / ``Tag Push Hook`` bodies are parsed with the documented payload
   models (:mod:`deployments.gitlab_events`): a body that does not fit gets 400. Other event kinds
   get 202 ``{"status": "ignored", "reason": ...}``, as do deletions (``after`` = 40 zeros) and
   pushes no route of ``webhook.routes`` takes.
9. A routed push starts one flow run of the on-push deployment with parameters ``project, ref, sha,
   event_id`` and the idempotency key ``gitlab:<webhook-id>`` (signed deliveries; GitLab makes it
   equal to ``Idempotency-Key``), else ``gitlab:<Idempotency-Key>`` (GitLab >= 17.4, the same on
   every resend), else ``gitlab:<X-Gitlab-Event-UUID>``: a redelivered event returns the run it
   already started and starts no other. The delivery is first written to the spool
   (:mod:`deployments.webhook_spool`, on disk with ``acrvpc webhook serve``); then the run is
   created, at most ``start_concurrency`` at a time. The answer is 202 ``{"status": "accepted",
   "flow_run_id"}`` when the run exists within ``start_timeout`` (3 s), else 202 ``{"status":
   "queued", "delivery"}``: the spool's drainer creates the run shortly (after a restart too, and
   retrying while Prefect is unreachable), so a burst of pushes is answered well inside GitLab's
   10 s and loses none. 503 only when the delivery cannot be recorded at all.

``GET /healthz`` answers ``{"status": "ok"}``; ``GET /openapi.json`` describes the endpoints
(:mod:`deployments.webhook_openapi`).

Every error answer is a short JSON ``{"error": ...}`` without internals: unknown paths 404, wrong
methods 405, and any unexpected exception 500 ``{"error": "internal error"}`` with the details only
in this module's log. Secrets and signing tokens are never logged. How runs are started is a
constructor argument (``start_run``): :func:`deployment_starter` creates them on the Prefect server
named by ``PREFECT_API_URL`` (authenticated with ``PREFECT_API_AUTH_STRING`` when the server
requires it).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from typing import Any, Awaitable, Callable

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from acrvpc.spec import Spec, route_target
from deployments.gitlab_events import EVENT_MODELS, PushEvent
from deployments.webhook_guard import MAX_ID_LENGTH, ReplayCache, SignatureCheck, SourceLimiter
from deployments.webhook_openapi import openapi_schema
from deployments.webhook_spool import Spool, drain_once

MAX_BODY = 1024 * 1024
START_TIMEOUT_S = 3.0  # wait this long for the run before answering "queued" (GitLab gives up at 10 s)
START_CONCURRENCY = 8  # runs created at a time by requests (the Prefect server's pace, not the burst's)
RUN_TAGS = ("gitlab-webhook",)

StartRun = Callable[[dict[str, Any], str], Awaitable[str]]
"""``start_run(parameters, idempotency_key) -> flow run id``."""

_log = logging.getLogger("acrvpc.webhook")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _ignored(reason: str) -> JSONResponse:
    return JSONResponse({"status": "ignored", "reason": reason}, status_code=202)


class _TooLarge(Exception):
    pass


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def _invalid(exc: ValidationError) -> str:
    fields = sorted({".".join(str(p) for p in err["loc"]) or "(body)" for err in exc.errors()})
    return ", ".join(fields[:5])[:300]


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = {404: "not found", 405: "method not allowed"}.get(status, "request refused")
    headers = getattr(exc, "headers", None) or {}
    return _error(status, message, {k: v for k, v in headers.items() if k.lower() == "allow"})


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    _log.error("unexpected error answering %s %s", request.method, request.url.path, exc_info=exc)
    return _error(500, "internal error")


class WebhookReceiver:
    """The receiver's state and handlers: a spec's routes, the credentials, limits, and how to start a run.

    Args:
        spec: the pipeline spec (``webhook.routes``, ``webhook.rate_limit``, ``webhook.trusted_proxies``,
            ``webhook.replay_window_seconds``).
        secret: the X-Gitlab-Token secret (:func:`tasks.webhook_hook.resolve_webhook_secret`); may be None
            only when ``signing_secret`` is given.
        start_run: ``async (parameters, idempotency_key) -> flow run id``.
        signing_secret: GitLab's ``whsec_`` signing token (:func:`tasks.webhook_hook.resolve_signing_secret`):
            when given, every delivery must be signed with it.
        rate_limit: deliveries per source, e.g. ``1000/second`` (default ``webhook.rate_limit``).
        trusted_proxies: proxy networks whose X-Forwarded-For counts (default ``webhook.trusted_proxies``).
        replay_window: seconds a signed delivery stays valid (default ``webhook.replay_window_seconds``).
        spec_path: passed to the runs as ``spec_path`` when given; else the deployment's own default.
        max_body: the largest body read, in bytes.
        start_timeout: seconds to wait for the run before answering ``queued``.
        spool: where deliveries are kept until their run exists (default: in memory; ``acrvpc webhook
            serve`` gives a file, and runs a :class:`~deployments.webhook_spool.SpoolDrainer` on it).
        start_concurrency: runs created at a time by requests.
        deployment: the on-push deployment the runs belong to, as ``flow/name`` (default
            ``webhook.deployment``); named in answers and logs.

    Raises:
        ValueError: neither a secret nor a signing token is given.
    """

    def __init__(self, spec: Spec, secret: str | None, start_run: StartRun, *, signing_secret: str | None = None,
                 rate_limit: str | None = None, trusted_proxies: list[str] | None = None,
                 replay_window: float | None = None, spec_path: str | None = None, max_body: int = MAX_BODY,
                 start_timeout: float = START_TIMEOUT_S, spool: Spool | None = None,
                 start_concurrency: int = START_CONCURRENCY, deployment: str | None = None) -> None:
        if not secret and not signing_secret:
            raise ValueError("the webhook secret is empty and no signing token is given")
        self.spec, self.start_run, self.spec_path = spec, start_run, spec_path
        self.deployment = deployment or spec.webhook.deployment
        self._secret = secret.encode() if secret else None
        self.max_body, self.start_timeout = max_body, start_timeout
        window = replay_window or spec.webhook.replay_window_seconds
        self.signature = SignatureCheck(signing_secret, window) if signing_secret else None
        self.limiter = SourceLimiter(rate_limit or spec.webhook.rate_limit,
                                     spec.webhook.trusted_proxies if trusted_proxies is None else trusted_proxies)
        self.replays = ReplayCache(window)
        self.spool = spool if spool is not None else Spool()
        self.start_concurrency = start_concurrency
        self._gates: dict[int, asyncio.Semaphore] = {}  # per event loop (a test client may use several)
        self._openapi = openapi_schema(max_body, signed=self.signature is not None)

    def app(self) -> Starlette:
        """The ASGI application."""
        return Starlette(routes=[Route("/hooks/gitlab", self.gitlab, methods=["POST"]),
                                 Route("/healthz", self.healthz, methods=["GET"]),
                                 Route("/openapi.json", self.openapi, methods=["GET"])],
                         exception_handlers={HTTPException: _http_error, Exception: _internal_error})

    async def healthz(self, request: Request) -> JSONResponse:
        """``GET /healthz``."""
        return JSONResponse({"status": "ok"})

    async def openapi(self, request: Request) -> JSONResponse:
        """``GET /openapi.json``: the receiver's OpenAPI description."""
        return JSONResponse(self._openapi)

    def use_spec(self, spec: Spec) -> bool:
        """Route from ``spec`` from now on (the deployment's spec was edited); True when the routes changed."""
        changed = spec.webhook.routes != self.spec.webhook.routes
        self.spec = spec
        return changed

    def token_ok(self, given: str | None) -> bool:
        """Whether ``X-Gitlab-Token`` carries the secret (constant-time comparison)."""
        return self._secret is not None and hmac.compare_digest((given or "").encode(), self._secret)

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
        try:
            return await self._deliver(request)
        except Exception as exc:  # noqa: BLE001 - never a traceback to the sender; the details go to our log
            return await _internal_error(request, exc)

    def _refusal(self, request: Request) -> JSONResponse | None:
        """The answer to a delivery its source, token or signature headers refuse; None to go on."""
        source = self.limiter.source(request.client.host if request.client else None,
                                     request.headers.get("x-forwarded-for"))
        wait = self.limiter.hit(source)
        if wait is not None:
            _log.warning("delivery refused: over the rate limit %s for source %s", self.limiter.item, source)
            return _error(429, "too many deliveries from this source; retry later", {"Retry-After": f"{wait:.0f}"})
        if self._secret is not None and not self.token_ok(request.headers.get("x-gitlab-token")):
            _log.warning("delivery refused: missing or wrong X-Gitlab-Token")
            return _error(401, "missing or wrong X-Gitlab-Token")
        reason = self.signature.precheck(request.headers) if self.signature else None
        if reason:
            _log.warning("delivery refused: %s", reason)
            return _error(401, reason)
        return None

    async def _deliver(self, request: Request) -> JSONResponse:
        started = time.monotonic()
        refused = self._refusal(request)
        if refused is not None:
            return refused
        if _media_type(request.headers.get("content-type", "")) != "application/json":
            return _error(415, "Content-Type must be application/json")
        try:
            body = await self._body(request)
        except _TooLarge:
            return _error(413, f"body over {self.max_body} bytes")
        except ClientDisconnect:
            return _error(400, "the body was not received")
        if self.signature is not None:
            reason = self.signature.verify(body, request.headers)
            if reason:
                _log.warning("delivery refused: %s", reason)
                return _error(401, reason)
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return _error(400, "the body is not valid JSON")
        if not isinstance(data, dict):
            return _error(400, "the body is not a JSON object")
        kind = request.headers.get("x-gitlab-event")
        if not kind:
            return _error(400, "no X-Gitlab-Event header")
        model = EVENT_MODELS.get(kind)
        if model is None:
            return _ignored(f"{kind[:100]!r} events are not handled (push and tag push only)")
        try:
            event = model.model_validate(data)
        except ValidationError as exc:
            return _error(400, f"not a GitLab {kind} payload (check: {_invalid(exc)})")
        except RecursionError:
            return _error(400, f"not a GitLab {kind} payload (nested too deeply)")
        return await self._route(request, event, started)

    def _key(self, request: Request, event: PushEvent) -> str:
        signed = self.signature is not None
        key = ((signed and request.headers.get("webhook-id")) or request.headers.get("idempotency-key")
               or request.headers.get("x-gitlab-event-uuid"))
        if key:
            return key
        key = f"{event.project_id}:{event.ref}:{event.before}:{event.after}"
        return key if len(key) <= MAX_ID_LENGTH else f"{event.project_id}:{hashlib.sha256(key.encode()).hexdigest()}"

    async def _route(self, request: Request, event: PushEvent, started: float) -> JSONResponse:
        project = event.project.path_with_namespace
        what = "tag" if event.object_kind == "tag_push" else "branch"
        if event.deleted:
            return _ignored(f"{what} {event.ref} of {project} was deleted")
        route = self.spec.webhook.route_for(project, event.ref)
        if route is None:
            _log.info("delivery ignored: no route for %r %r", project[:200], event.ref[:200])
            return _ignored(f"no route for {project} {event.ref}")
        key = self._key(request, event)
        if len(key) > MAX_ID_LENGTH:
            return _error(400, f"the delivery id (Idempotency-Key, X-Gitlab-Event-UUID) is over {MAX_ID_LENGTH} "
                               f"characters")
        repo, rule = route_target(self.spec, route)
        answer = {"status": "accepted", "deployment": self.deployment, "repository": repo.full_name,
                  "rule": route.rule}
        known = self.replays.get(key) if self.signature is not None else None
        if known is not None:
            _log.info("delivery %r: a resend of the delivery that started flow run %s", key, known)
            return JSONResponse({**answer, "flow_run_id": known}, status_code=202)
        parameters: dict[str, Any] = {"project": project, "ref": event.ref, "sha": event.sha, "event_id": key}
        if self.spec_path:
            parameters["spec_path"] = self.spec_path
        try:
            known = await asyncio.to_thread(self.spool.add, key, parameters)
        except Exception as exc:  # noqa: BLE001 - the spool's disk: 503, details in our log only
            _log.error("delivery %r: could not be recorded in the spool (%s)", key, type(exc).__name__)
            return _error(503, "could not record the delivery; resend it later")
        if known is not None:
            _log.info("delivery %r: a resend of the delivery that started flow run %s", key, known)
            return JSONResponse({**answer, "flow_run_id": known}, status_code=202)
        try:
            run_id = await asyncio.wait_for(self._start(parameters, key), self.start_timeout)
        except Exception as exc:  # noqa: BLE001 - slow or unreachable Prefect: the drainer creates it later
            why = "not created yet" if isinstance(exc, asyncio.TimeoutError) else f"failed ({type(exc).__name__})"
            _log.warning("delivery %r: the run of %s %s; queued (%.0f ms)", key, self.deployment, why,
                         (time.monotonic() - started) * 1000)
            return JSONResponse({**answer, "status": "queued", "delivery": key}, status_code=202)
        await asyncio.to_thread(self.spool.done, key, run_id)
        if self.signature is not None:
            self.replays.put(key, run_id)
        _log.info("delivery %r: %s %s -> %s %s, flow run %s (%.0f ms)", key, project, event.ref, repo.full_name,
                  rule.image_tag, run_id, (time.monotonic() - started) * 1000)
        return JSONResponse({**answer, "flow_run_id": run_id}, status_code=202)

    async def _start(self, parameters: dict[str, Any], key: str) -> str:
        loop = id(asyncio.get_running_loop())
        gate = self._gates.get(loop)
        if gate is None:
            gate = self._gates[loop] = asyncio.Semaphore(self.start_concurrency)
        async with gate:
            return await self.start_run(parameters, f"gitlab:{key}")

    async def drain(self, older_than: float = 0.0) -> int:
        """Create the runs of queued deliveries now (what the drainer thread does); returns how many."""
        return await drain_once(self.spool, self.start_run, older_than=older_than)


def create_app(spec: Spec, secret: str | None, start_run: StartRun, **options: Any) -> Starlette:
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
    known: dict[str, Any] = {}  # the deployment's id, read once

    async def start(parameters: dict[str, Any], idempotency_key: str) -> str:
        from prefect import get_client

        async with get_client() as client:
            if "id" not in known:
                known["id"] = (await client.read_deployment_by_name(deployment)).id
            run = await client.create_flow_run_from_deployment(known["id"], parameters=parameters,
                                                               idempotency_key=idempotency_key, tags=list(tags))
        return str(run.id)

    return start
