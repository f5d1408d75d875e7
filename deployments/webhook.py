"""The GitLab webhook receiver: an ASGI app that turns routed pushes into flow runs.

Served by ``acrvpc webhook serve SPEC --port N`` (:mod:`acrvpc.cli.commands.webhook`). Endpoints:

``POST /hooks/gitlab`` (and ``/hooks/gitlab/``: a hook URL saved with a trailing slash is served,
not answered with a bare 307, which GitLab would count as a success), checked in this order, each
refusal starting nothing:

1. At most ``webhook.rate_limit`` deliveries per source address in a moving window (the peer, or
   behind a trusted proxy the forwarded client; :mod:`deployments.webhook_guard`): else 429 with
   ``Retry-After``.
2. When a secret is configured, ``X-Gitlab-Token`` must equal it (``hmac.compare_digest``, constant
   time), both as GitLab sends them (line breaks removed, trimmed: ``normalize_secret``): else 401.
3. When a signing token is configured (GitLab >= 19, Standard Webhooks), ``webhook-id``,
   ``webhook-timestamp`` and ``webhook-signature`` must be present and the timestamp within the
   replay window (``webhook.replay_window_seconds``): else 401.
4. ``Content-Type`` must be ``application/json``: else 415.
5. The body is read up to 25 MB (GitLab's own payload limit) before anything parses it: over that,
   413 (a declared larger ``Content-Length`` before a byte is read). Bodies over 256 kB are read
   and parsed ``BIG_BODIES`` (2) at a time, so memory stays bounded under concurrent large pushes.
6. When signing is configured, the signature must match the raw body (``standardwebhooks``):
   else 401.
7. It must be a JSON object: else 400.
8. ``X-Gitlab-Event`` ``Push Hook`` / ``Tag Push Hook`` bodies are parsed with the documented payload
   models (:mod:`deployments.gitlab_events`): a body that does not fit, or with a control character
   in its project, ref or commit (git forbids them; PostgreSQL refuses NUL), gets 400. Other event kinds
   get 202 ``{"status": "ignored", "reason": ...}``, as do deletions (``after`` = 40 zeros) and
   pushes no route of ``webhook.routes`` takes.
9. A routed push starts one flow run of the on-push deployment with parameters ``project, ref, sha,
   event_id`` and the idempotency key ``gitlab:<webhook-id>`` (signed deliveries; GitLab makes it
   equal to ``Idempotency-Key``), else ``gitlab:<Idempotency-Key>`` (GitLab >= 17.4, the same on
   every resend), else ``gitlab:<X-Gitlab-Event-UUID>``: a redelivered event returns the run it
   already started and starts no other. A key recorded for a *different* push (project, ref or
   commit; GitLab reuses ``X-Gitlab-Event-UUID`` for recursively triggered hooks) gets a key of its
   own and its own run, and the log says the key was reused. The delivery is first written to the
   spool (:mod:`deployments.webhook_spool`, on disk with ``acrvpc webhook serve``); then the run is
   created, at most ``start_concurrency`` at a time. The answer is 202 ``{"status": "accepted",
   "flow_run_id"}`` when the run exists within ``start_timeout`` (3 s); 202 ``{"status":
   "queued", "delivery"}`` when Prefect is slow or unreachable (the spool's drainer creates the run
   shortly, after a restart too), so a burst of pushes is answered well inside GitLab's 10 s and
   loses none; 202 ``{"status": "dead", "delivery", "reason"}`` when Prefect refused the run for
   good (a dead letter: see the spool's docstring). 503 only when the delivery cannot be recorded.

``GET /healthz`` answers 200 ``{"status": "ok"|"degraded", "prefect": {"reachable"}, "deliveries":
{"pending", "dead"}}``; ``GET /openapi.json`` describes the endpoints (:mod:`deployments.webhook_openapi`).

Every error answer is a short JSON ``{"error": ...}`` without internals: unknown paths 404, wrong
methods 405, and any unexpected exception 500 ``{"error": "internal error"}`` with the details only
in this module's log. Secrets and signing tokens are never logged. How runs are started is a
constructor argument (``start_run``): :func:`deployment_starter` creates them on the Prefect server
named by ``PREFECT_API_URL`` (authenticated with ``PREFECT_API_AUTH_STRING`` when the server
requires it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from acrvpc.domain.spec import Spec, route_target
from deployments.gitlab_events import EVENT_MODELS, PushEvent
from deployments.webhook_guard import MAX_ID_LENGTH, SignatureCheck, SourceLimiter, normalize_secret
from deployments.webhook_openapi import openapi_schema
from deployments.webhook_spool import (
    DEAD,
    DONE,
    MAX_AGE_S,
    Delivery,
    Report,
    Spool,
    StartFailure,
    drain_once,
    report_dead,
    settle_failure,
)

MAX_BODY = 25 * 1024 * 1024  # GitLab's own payload limit (GitLab.com "max payload 25 MB"): it sends nothing larger
SMALL_BODY = 256 * 1024  # bodies up to this are read side by side; larger ones BIG_BODIES at a time
BIG_BODIES = 2  # memory: at most this many large bodies are held and parsed at once
HEALTH_CACHE_S = 5.0  # /healthz asks Prefect at most this often
DELIVERY_FAILED = "acrvpc.delivery.failed"
START_TIMEOUT_S = 3.0  # wait this long for the run before answering "queued" (GitLab gives up at 10 s)
START_CONCURRENCY = 8  # runs created at a time by requests (the Prefect server's pace, not the burst's)
RUN_TAGS = ("gitlab-webhook",)

StartRun = Callable[[dict[str, Any], str], Awaitable[str]]
"""``start_run(parameters, idempotency_key) -> flow run id``."""
Probe = Callable[[], Awaitable[bool]]
"""``probe() -> whether Prefect answers``."""

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
        max_age: seconds a delivery may wait for its run (transient failures) before it is a dead letter.
        report: how dead letters are reported (:func:`delivery_reporter`: the ``acrvpc.delivery.failed``
            event); called by :meth:`drain` and the drainer, not while GitLab waits.
        probe: whether Prefect answers, for ``/healthz`` (:func:`prefect_probe`); None reports ``null``.

    Raises:
        ValueError: neither a secret nor a signing token is given.
    """

    def __init__(
        self,
        spec: Spec,
        secret: str | None,
        start_run: StartRun,
        *,
        signing_secret: str | None = None,
        rate_limit: str | None = None,
        trusted_proxies: list[str] | None = None,
        replay_window: float | None = None,
        spec_path: str | None = None,
        max_body: int = MAX_BODY,
        start_timeout: float = START_TIMEOUT_S,
        spool: Spool | None = None,
        start_concurrency: int = START_CONCURRENCY,
        deployment: str | None = None,
        max_age: float = MAX_AGE_S,
        report: Report | None = None,
        probe: Probe | None = None,
    ) -> None:
        secret = normalize_secret(secret) if secret else None
        if not secret and not signing_secret:
            raise ValueError("the webhook secret is empty and no signing token is given")
        self.spec, self.start_run, self.spec_path = spec, start_run, spec_path
        self.deployment = deployment or spec.webhook.deployment
        self._secret = secret.encode() if secret else None
        self.max_age, self.report, self.probe = max_age, report, probe
        self._health: tuple[float, bool | None] = (0.0, None)
        self.max_body, self.start_timeout = max_body, start_timeout
        window = replay_window or spec.webhook.replay_window_seconds
        self.signature = SignatureCheck(signing_secret, window) if signing_secret else None
        self.limiter = SourceLimiter(
            rate_limit or spec.webhook.rate_limit,
            spec.webhook.trusted_proxies if trusted_proxies is None else trusted_proxies,
        )
        self.spool = spool if spool is not None else Spool()
        self.start_concurrency = start_concurrency
        self._gates: dict[tuple[str, int], asyncio.Semaphore] = {}  # per event loop (a test client may use several)
        self._openapi = openapi_schema(max_body, signed=self.signature is not None)

    def app(self) -> Starlette:
        """The ASGI application."""
        app = Starlette(
            routes=[
                Route("/hooks/gitlab", self.gitlab, methods=["POST"]),
                Route("/hooks/gitlab/", self.gitlab, methods=["POST"]),  # pasted with a slash
                Route("/healthz", self.healthz, methods=["GET"]),
                Route("/openapi.json", self.openapi, methods=["GET"]),
            ],
            exception_handlers={HTTPException: _http_error, Exception: _internal_error},
        )
        app.router.redirect_slashes = False  # a bare 307 is a "success" to GitLab that delivers nothing
        return app

    async def prefect_reachable(self) -> bool | None:
        """Whether Prefect answered ``probe`` (asked at most every 5 s); None without a probe."""
        if self.probe is None:
            return None
        when, known = self._health
        if time.monotonic() - when < HEALTH_CACHE_S and known is not None:
            return known
        try:
            known = bool(await asyncio.wait_for(self.probe(), 2.0))
        except Exception:  # noqa: BLE001 - any failure means unreachable
            known = False
        self._health = (time.monotonic(), known)
        return known

    async def healthz(self, request: Request) -> JSONResponse:
        """``GET /healthz``: the receiver is up (200); ``degraded`` when Prefect is unreachable or letters are dead."""
        counts = await asyncio.to_thread(self.spool.counts)
        reachable = await self.prefect_reachable()
        status = "ok" if reachable is not False and not counts[DEAD] else "degraded"
        return JSONResponse(
            {
                "status": status,
                "prefect": {"reachable": reachable},
                "deliveries": {"pending": counts["pending"], "dead": counts[DEAD]},
            }
        )

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
        return self._secret is not None and hmac.compare_digest((given or "").strip().encode(), self._secret)

    def _gate(self, name: str, size: int) -> asyncio.Semaphore:
        key = (name, id(asyncio.get_running_loop()))
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = asyncio.Semaphore(size)
        return gate

    async def _body(self, request: Request) -> bytearray:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_body:
                raise _TooLarge
        return body  # no second copy of a large body

    async def gitlab(self, request: Request) -> JSONResponse:
        """``POST /hooks/gitlab``: check, parse, route, and start a run (see the module docstring)."""
        try:
            return await self._deliver(request)
        except Exception as exc:  # noqa: BLE001 - never a traceback to the sender; the details go to our log
            return await _internal_error(request, exc)

    def _refusal(self, request: Request) -> JSONResponse | None:
        """The answer to a delivery its source, token or signature headers refuse; None to go on."""
        source = self.limiter.source(
            request.client.host if request.client else None, request.headers.get("x-forwarded-for")
        )
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
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            return _error(413, f"body over {self.max_body} bytes")  # refused before a byte of it is read
        small = length.isdigit() and int(length) <= SMALL_BODY
        async with contextlib.nullcontext() if small else self._gate("body", BIG_BODIES):
            found = await self._event(request)
        if isinstance(found, JSONResponse):
            return found
        return await self._route(request, found, started)

    async def _event(self, request: Request) -> PushEvent | JSONResponse:
        """The delivery's push event, or the answer refusing or ignoring it."""
        try:
            body = await self._body(request)
        except _TooLarge:
            return _error(413, f"body over {self.max_body} bytes")
        except ClientDisconnect:
            return _error(400, "the body was not received")
        if self.signature is not None:
            reason = self.signature.verify(bytes(body), request.headers)
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
        for name, value in (
            ("project.path_with_namespace", event.project.path_with_namespace),
            ("ref", event.ref),
            ("checkout_sha/after", event.sha),
        ):
            if any(ord(c) < 32 for c in value):  # git forbids control characters in refs; PostgreSQL refuses NUL
                return _error(400, f"not a GitLab {kind} payload ({name} contains a control character)")
        return event

    def _key(self, request: Request, event: PushEvent) -> str:
        signed = self.signature is not None
        key = (
            (signed and request.headers.get("webhook-id"))
            or request.headers.get("idempotency-key")
            or request.headers.get("x-gitlab-event-uuid")
        )
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
            return _error(
                400, f"the delivery id (Idempotency-Key, X-Gitlab-Event-UUID) is over {MAX_ID_LENGTH} characters"
            )
        repo, rule = route_target(self.spec, route)
        answer = {"status": "accepted", "deployment": self.deployment, "repository": repo.full_name, "rule": route.rule}
        try:
            key, recorded = await asyncio.to_thread(self._record, key, project, event)
        except Exception as exc:  # noqa: BLE001 - the spool's disk: 503, details in our log only
            _log.error("delivery %r: could not be recorded in the spool (%s: %s)", key, type(exc).__name__, exc)
            return _error(503, "could not record the delivery; resend it later")
        if recorded.state == DONE:
            _log.info("delivery %r: a resend of the delivery that started flow run %s", key, recorded.run_id)
            return JSONResponse({**answer, "flow_run_id": recorded.run_id, "delivery": key}, status_code=202)
        if recorded.state == DEAD:  # resent from GitLab (Resend Request): the operator's replay
            await asyncio.to_thread(self.spool.replay, key)
            _log.info("delivery %r: a resend of a dead letter; queued again", key)
        try:
            run_id = await asyncio.wait_for(self._start(recorded.parameters, key), self.start_timeout)
        except TimeoutError:  # slow Prefect: the drainer creates it later
            _log.warning(
                "delivery %r: the run of %s was not created yet; queued (%.0f ms)",
                key,
                self.deployment,
                (time.monotonic() - started) * 1000,
            )
            return JSONResponse({**answer, "status": "queued", "delivery": key}, status_code=202)
        except Exception as exc:  # noqa: BLE001 - classified: queued for a retry, or a dead letter
            failure = await asyncio.to_thread(
                settle_failure, self.spool, key, exc, 0, time.time(), self.max_age, 0.0
            )  # the drainer's grace is the first backoff
            if failure.permanent:  # reported by the drainer (not here: GitLab waits only 10 s)
                why = f"HTTP {failure.status}" if failure.status else "its parameters"
                return JSONResponse(
                    {
                        **answer,
                        "status": "dead",
                        "delivery": key,
                        "reason": f"Prefect refused the run ({why}); kept as a dead letter: see "
                        f"`acrvpc webhook deliveries --state dead`",
                    },
                    status_code=202,
                )
            return JSONResponse({**answer, "status": "queued", "delivery": key}, status_code=202)
        await asyncio.to_thread(self.spool.done, key, run_id)
        _log.info(
            "delivery %r: %s %s -> %s %s, flow run %s (%.0f ms)",
            key,
            project,
            event.ref,
            repo.full_name,
            rule.image_tag,
            run_id,
            (time.monotonic() - started) * 1000,
        )
        return JSONResponse({**answer, "flow_run_id": run_id}, status_code=202)

    def _record(self, key: str, project: str, event: PushEvent) -> tuple[str, Delivery]:
        """Spool the delivery: ``(its key, what the spool holds for it)``.

        A key already recorded for another push (GitLab reuses ``X-Gitlab-Event-UUID`` for hooks a
        hook's own API calls trigger) is not that push's resend: it gets a key of its own, the key
        plus a digest of its project, ref and commit, the same on each of its own resends.
        """
        parameters: dict[str, Any] = {"project": project, "ref": event.ref, "sha": event.sha, "event_id": key}
        if self.spec_path:
            parameters["spec_path"] = self.spec_path
        recorded = self.spool.add(key, parameters)
        if _push_of(recorded.parameters) == _push_of(parameters):
            return key, recorded
        digest = hashlib.sha256("\0".join(_push_of(parameters)).encode()).hexdigest()[:16]
        own = f"{key}~{digest}"
        _log.warning(
            "delivery %r: the key was reused by a different push (%s %s %s; recorded: %s %s %s); "
            "it gets its own key %r",
            key,
            project[:200],
            event.ref[:200],
            event.sha[:64],
            *(v[:200] for v in _push_of(recorded.parameters)),
            own,
        )
        return own, self.spool.add(own, {**parameters, "event_id": own})

    async def _start(self, parameters: dict[str, Any], key: str) -> str:
        async with self._gate("start", self.start_concurrency):
            return await self.start_run(parameters, f"gitlab:{key}")

    async def drain(self, older_than: float = 0.0) -> int:
        """Create the runs of queued deliveries now and report dead letters (what the drainer thread does);
        returns how many runs were created."""
        created = await drain_once(self.spool, self.start_run, older_than=older_than, max_age=self.max_age)
        await report_dead(self.spool, self.report)
        return created


def _push_of(parameters: dict[str, Any]) -> tuple[str, str, str]:
    return str(parameters.get("project", "")), str(parameters.get("ref", "")), str(parameters.get("sha", ""))


def create_app(spec: Spec, secret: str | None, start_run: StartRun, **options: Any) -> Starlette:
    """The receiver's ASGI app (see :class:`WebhookReceiver` for the arguments)."""
    return WebhookReceiver(spec, secret, start_run, **options).app()


@contextlib.asynccontextmanager
async def _prefect() -> Any:
    """A Prefect client that asks once: the spool retries with its own backoff and maximum age, and each
    attempt records the status and message Prefect answered (its client would retry 408/429/502/503
    five times, over 30 s, and a dead letter would only say "did not answer in time")."""
    from prefect import get_client
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}):
        async with get_client() as client:
            yield client


def deployment_starter(deployment: str, *, tags: tuple[str, ...] = RUN_TAGS) -> StartRun:
    """A ``start_run`` that creates a flow run of ``deployment`` on the Prefect API (``PREFECT_API_URL``).

    The deployment's id is read by name once, and again when Prefect answers 404 for it (the
    deployment was deleted and re-created: a new id). When the name itself is gone, the failure is
    permanent (:class:`~deployments.webhook_spool.StartFailure`, status 404).

    Args:
        deployment: ``flow-name/deployment-name``.
        tags: tags added to each run.

    Returns:
        ``async (parameters, idempotency_key) -> flow run id``; the same key returns the run it made.
    """
    known: dict[str, Any] = {}  # the deployment's id, read by name when needed

    async def start(parameters: dict[str, Any], idempotency_key: str) -> str:
        from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

        async with _prefect() as client:
            for attempt in (1, 2):
                if "id" not in known:
                    try:
                        known["id"] = (await client.read_deployment_by_name(deployment)).id
                    except ObjectNotFound:
                        raise StartFailure(
                            f"the deployment {deployment} does not exist: deploy it again (acrvpc "
                            f"deploy), then replay the dead letters",
                            404,
                            permanent=True,
                        ) from None
                stale = known["id"]
                try:
                    run = await client.create_flow_run_from_deployment(
                        stale, parameters=parameters, idempotency_key=idempotency_key, tags=list(tags)
                    )
                except (ObjectNotFound, PrefectHTTPStatusError) as exc:
                    response = getattr(exc, "response", None) or getattr(
                        getattr(exc, "http_exc", None), "response", None
                    )
                    if attempt == 1 and response is not None and response.status_code == 404:
                        _log.warning(
                            "deployment %s: id %s is gone (re-created?); reading its id again", deployment, stale
                        )
                        known.pop("id", None)
                        continue
                    raise
                return str(run.id)
        raise AssertionError("unreachable")

    return start


def prefect_probe() -> Probe:
    """A ``probe`` asking the Prefect API's ``/health``."""

    async def probe() -> bool:
        async with _prefect() as client:
            return await client.api_healthcheck() is None

    return probe


def delivery_reporter(deployment: str) -> Report:
    """A ``report`` posting an ``acrvpc.delivery.failed`` Prefect event for a dead letter (``POST /events``).

    The event's resource is the delivery (``acrvpc.delivery.<key>``, with the project, ref, commit and
    deployment as labels); its payload the HTTP status, the message, the attempts and the run
    parameters (long values cut at 1000 characters, NUL written as ``\\x00``: PostgreSQL would drop the
    event). Its id is derived from the dead letter, so a report sent twice is one event.
    """

    async def report(letter: Delivery) -> None:
        from prefect.events import Event

        def cut(value: Any) -> Any:  # PostgreSQL stores no NUL: the event would be dropped after its 204
            return value[:1000].replace("\x00", "\\x00") if isinstance(value, str) else value

        event = Event(
            id=uuid.uuid5(uuid.NAMESPACE_URL, f"acrvpc-dead-letter:{letter.key}:{letter.attempts}:{letter.received}"),
            event=DELIVERY_FAILED,
            resource={
                "prefect.resource.id": f"acrvpc.delivery.{cut(letter.key)}",
                "prefect.resource.name": cut(letter.key),
                "acrvpc.project": cut(letter.project),
                "acrvpc.ref": cut(letter.ref),
                "acrvpc.sha": cut(letter.sha),
                "acrvpc.deployment": deployment,
            },
            payload={
                "status": letter.status,
                "error": cut(letter.last_error),
                "attempts": letter.attempts,
                "parameters": {k: cut(v) for k, v in letter.parameters.items()},
            },
        )
        async with _prefect() as client:
            await client.request("POST", "/events", json=[event.model_dump(mode="json")])
        _log.info("dead letter %r: reported as %s", letter.key, DELIVERY_FAILED)

    return report
