"""Call-level retries, and the project's one retry policy.

The policy: two layers, never more, and a bounded cost per logical call.

1. **In place** (this module, for Alibaba Cloud; python-gitlab's own retry, bounded by the same
   setting, for GitLab; :func:`acrvpc.cloud.clients.gitlab_client`): a call that is safe to repeat is sent
   again after a transient failure, at most ``ACRVPC_CALL_RETRIES`` times (default 3), so **one
   logical call makes at most 1 + 3 = 4 requests** and waits at most :data:`BACKOFF_BUDGET_S`
   (60 s) in backoff before its error reaches the task. Backoff: exponential from 0.2 s, at most
   2 s, full jitter (0.2 + 0.4 + 0.8 = at most 1.4 s for three retries); a retry-after hint of the
   answer (Alibaba Cloud's ``x-acs-retry-after``, GitLab's ``Retry-After``/``RateLimit-Reset``) is
   waited instead when it is longer. A hint that does not fit in what is left of the budget
   ends the retries at once (the error goes to the task), rather than asking again too early.
2. **The task's retry**, the outer layer ops staff see in the UI: Prefect task retries
   (:data:`acrvpc.cloud.errors.RETRY`: ``ACRVPC_RETRY_DELAYS``, default 1, 2, 4, 8 s with 50% jitter,
   transient errors only), or for link and ENI :func:`tasks.ecs_common.retry_stage` inside the task
   (their Prefect retries are 0: a Prefect retry would roll back their transaction). A task
   attempt repeats the stage's calls, each again with its in-place layer: at most
   4 x (1 + 4 task retries) = 20 requests of one call across a stage's attempts.

Nothing else retries what these retry: the build poller reads once per poll (a failed status or
log read is a missed poll; a few in a row raise ``BUILD_POLL_FAILED``, :mod:`tasks.build`), and
the SDK's own retry is off. Every in-place retry is logged at INFO on this module's logger, which
reaches the run's logs in the UI (:mod:`acrvpc.runlog`).

What is safe to repeat in place:

* reads (``Describe*``, ``Get*``, ``List*``);
* writes that carry a ``ClientToken`` (the service deduplicates them);
* writes whose repetition the stages already treat as success: ``AuthorizeSecurityGroup*``
  (an identical rule is a no-op), ``Revoke*`` and ``Delete*`` (gone counts as done),
  ``Modify*``/``Update*`` (same values again), ``CreateNamespace``, ``CreateRepository``,
  ``CreateRepoSourceCodeRepo`` (an "already exists" answer makes the stage re-read),
  ``CreateNetworkInterfacePermission`` (a second grant returns the first) and
  ``CancelRepoBuildRecord`` (a second cancel is refused as "already ended", and the build stage
  then reads the status).

Never retried in place: ``CreateBuildRecordByRule`` (it would start a second build),
``CreateRepoBuildRule`` (rules may be duplicated), any other write not listed, and GitLab
``POST`` requests (``hooks.create``: a lost answer may hide a created hook, so the stage re-reads
the hooks instead; a 429 is still retried, GitLab refused it before doing anything).

``ACRVPC_CALL_RETRIES`` sets the attempts after the first (default 3; 0 turns the in-place layer
off, for Alibaba Cloud and GitLab alike).
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from acrvpc.cloud.errors import error_code, is_retryable
from acrvpc.settings import Settings, settings

logger = logging.getLogger(__name__)

SAFE_PREFIXES = ("Describe", "Get", "List", "AuthorizeSecurityGroup", "Revoke", "Delete", "Modify", "Update")
SAFE_WRITES = {
    "CreateNamespace",
    "CreateRepository",
    "CreateRepoSourceCodeRepo",
    "CreateNetworkInterfacePermission",
    "CancelRepoBuildRecord",
}
BASE_DELAY_S = 0.2
MAX_DELAY_S = 2.0
DEFAULT_RETRIES: int = Settings.model_fields["call_retries"].default
BACKOFF_BUDGET_S = 60.0  # the most one logical call waits in backoff (hints included) before the task's retry
RETRIES_ENV = "ACRVPC_CALL_RETRIES"

# The pause between attempts of clients built without an explicit ``sleep`` (looked up at each
# pause, so a test may replace it to record the backoff without waiting).
SLEEP: Callable[[float], None] = time.sleep


def attempts_after_first() -> int:
    """``ACRVPC_CALL_RETRIES``: the in-place retries of one call (default 3, 0 = off)."""
    return settings().call_retries  # a bad value: SettingsError (a ValueError) naming the variable


def safe_to_repeat(action: str, query: dict[str, Any] | None) -> bool:
    """Whether repeating ``action`` with these parameters cannot do anything twice."""
    if action in SAFE_WRITES or action.startswith(SAFE_PREFIXES):
        return True
    return bool(query and query.get("ClientToken"))


def retry_after_s(exc: BaseException) -> float | None:
    """The answer's retry-after hint in seconds, if it gave one.

    Alibaba Cloud sends ``x-acs-retry-after`` (milliseconds) with some throttling answers; the SDK
    then raises ``ThrottlingException`` with ``retry_after`` in milliseconds (the sandbox sends it
    with ``throttle_retry_after``).
    """
    value = getattr(exc, "retry_after", None)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value) / 1000.0
    return None


def backoff(attempt: int) -> float:
    """The jittered pause before retry number ``attempt + 1`` (0-based), without a hint."""
    return random.uniform(0, min(MAX_DELAY_S, BASE_DELAY_S * 2**attempt))


def next_pause(attempt: int, exc: BaseException, waited: float) -> float | None:
    """How long to wait before the next attempt, or None to stop retrying (the budget would be exceeded).

    Args:
        attempt: retries made so far.
        exc: the failure.
        waited: seconds of backoff this call has already waited.
    """
    hint = retry_after_s(exc)
    pause = max(backoff(attempt), hint or 0.0)
    left = BACKOFF_BUDGET_S - waited
    if pause > left:
        return None if hint is not None else max(0.0, left)
    return pause


def guard(client: Any, product: str, sleep: Callable[[float], None] | None = None) -> Any:
    """Retry a client's transient failures of safe calls in place (wraps its ``call_api``).

    At most ``ACRVPC_CALL_RETRIES`` retries (read when the call is made) and
    :data:`BACKOFF_BUDGET_S` of waiting per call, a retry-after hint honoured (module docstring).

    Args:
        client: a tea-openapi based client (CR, ECS, VPC), possibly already rate-limited.
        product: ``cr``, ``ecs`` or ``vpc`` (for logs).
        sleep: the pause between attempts (default :data:`SLEEP`; tests may pass their own).

    Returns:
        The same client.
    """
    call_api = client.call_api

    def retrying_call_api(params: Any, request: Any, runtime: Any) -> dict:
        retries = attempts_after_first()
        query = getattr(request, "query", None)
        attempt, waited = 0, 0.0
        while True:
            try:
                return call_api(params, request, runtime)
            except Exception as exc:
                if attempt >= retries or not is_retryable(exc) or not safe_to_repeat(params.action, query):
                    raise
                pause = next_pause(attempt, exc, waited)
                code = error_code(exc) or type(exc).__name__
                if pause is None:
                    logger.info(
                        "%s %s: %s asks to wait %.1f s, more than the %.0f s retry budget left: giving up",
                        product,
                        params.action,
                        code,
                        retry_after_s(exc) or 0.0,
                        BACKOFF_BUDGET_S - waited,
                    )
                    raise
                attempt += 1
                waited += pause
                logger.info("%s %s: %s, retry %d/%d in %.2f s", product, params.action, code, attempt, retries, pause)
                (sleep or SLEEP)(pause)

    client.call_api = retrying_call_api
    return client


# -- GitLab (python-gitlab) ---------------------------------------------------------------------
NON_IDEMPOTENT_VERBS = {"post", "patch"}


def _seconds_of(value: str, now: float) -> float | None:
    """A ``Retry-After`` value (seconds, or an HTTP date) as seconds from ``now``; None if unreadable."""
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def cap_retry_after(response: Any, *args: Any, **kwargs: Any) -> Any:
    """A requests response hook: bound the wait python-gitlab takes from a 429/5xx answer.

    python-gitlab sleeps ``int(Retry-After)`` (or ``RateLimit-Reset`` - now) before each retry,
    however long (and fails on an HTTP-date ``Retry-After``). This rewrites the answer's
    ``Retry-After`` to whole seconds, at most :data:`BACKOFF_BUDGET_S` / ``ACRVPC_CALL_RETRIES``, so the
    retries of one call wait at most the budget in all; it is still honoured up to that.
    """
    status = getattr(response, "status_code", 0)
    if status != 429 and status < 500:
        return response
    headers = response.headers
    now = time.time()
    wait: float | None = None
    if "Retry-After" in headers:
        wait = _seconds_of(headers["Retry-After"], now)
    elif "RateLimit-Reset" in headers:
        try:
            wait = max(0.0, float(headers["RateLimit-Reset"]) - now)
        except ValueError:
            wait = None
    if wait is None:
        if "Retry-After" in headers:
            del headers["Retry-After"]
        return response
    cap = BACKOFF_BUDGET_S / max(1, attempts_after_first())
    if wait > cap:
        logger.info(
            "gitlab %s %s: %s asks to wait %.0f s; waiting %.0f s (the retry budget is %.0f s per call)",
            getattr(response.request, "method", ""),
            getattr(response, "url", ""),
            status,
            wait,
            cap,
            BACKOFF_BUDGET_S,
        )
    headers["Retry-After"] = str(int(min(wait, cap) + 0.999))
    return response


def guard_gitlab(gl: Any) -> Any:
    """Bound python-gitlab's own retries by the policy (wraps the instance's ``http_request``).

    * ``max_retries`` = ``ACRVPC_CALL_RETRIES`` for every request (python-gitlab's default is 10,
      with 0.1 s x 2^n backoff: 11 requests and 102 s per call), so one GitLab call makes at most 4
      requests;
    * transient errors (5xx, timeouts, connection errors) are retried for GET, PUT, DELETE and
      HEAD, never for POST or PATCH (a ``hooks.create`` whose answer was lost may have created the
      hook: the caller re-reads instead); 429 is retried for every verb (GitLab refused it first);
    * ``Retry-After`` is honoured, at most :data:`BACKOFF_BUDGET_S` per call (:func:`cap_retry_after`).

    Args:
        gl: a ``gitlab.Gitlab``.

    Returns:
        The same client.
    """
    http_request = gl.http_request

    def bounded_http_request(verb: str, path: str, *args: Any, **kwargs: Any) -> Any:
        retries = attempts_after_first()
        kwargs["max_retries"] = retries
        kwargs["retry_transient_errors"] = retries > 0 and verb.lower() not in NON_IDEMPOTENT_VERBS
        return http_request(verb, path, *args, **kwargs)

    gl.http_request = bounded_http_request
    hooks = gl.session.hooks.setdefault("response", [])
    if cap_retry_after not in hooks:
        hooks.append(cap_retry_after)
    return gl
