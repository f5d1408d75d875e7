"""Helpers every ECS-calling stage shares: calls, retries, ClientTokens, CIDRs.

Used by the link, ENI, console, teardown, drift, preflight-fix and diagnosis stages; none of them
is any one stage's own (STYLE: a helper two stages share sits in a module both import).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from acrvpc.cloud.errors import FIXES, RETRY, PipelineError, error_code, explain, is_retryable

ALL_IPV4 = "0.0.0.0/0"

T = TypeVar("T")
logger = logging.getLogger(__name__)


def client_token(kind: str, *parts: str) -> str:
    """A deterministic ClientToken for one created resource.

    Args:
        kind: a short resource kind, e.g. ``sg`` or ``eni``.
        *parts: the values that identify the resource (spec name, VPC, vSwitch...).

    Returns:
        ``acrvpc-<kind>-<40 hex digits>``: ASCII and at most 64 characters, as ECS requires.
    """
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:40]
    return f"acrvpc-{kind}-{digest}"


# How many creates one stage makes for one resource when ECS keeps answering a token with a deleted
# resource (each later one with a fresh token): more than two means something else is wrong.
CREATE_TOKEN_ATTEMPTS = 3
_PROCESS_SALT = uuid.uuid4().hex  # outside a flow run: fresh tokens stay stable within this process


def _run_salt() -> str:
    """What makes a replacement token this run's own: the flow run's id (stable across the stage's
    in-task retries and a retry of the flow run), or this process's outside a run."""
    try:
        from prefect.runtime import flow_run

        return str(flow_run.id or _PROCESS_SALT)
    except Exception:  # noqa: BLE001 - no Prefect context at all
        return _PROCESS_SALT


def create_with_token(
    kind: str,
    parts: tuple[str, ...],
    create: Callable[[str], T],
    unusable: Callable[[T], tuple[str, str | None]],
    what: str,
) -> T:
    """Create a resource with a deterministic ClientToken and make sure the answer is a live resource.

    ECS answers a repeated ClientToken with what the first request made. If that resource was
    deleted since and ECS still remembers the token, the answer names a resource that is gone or
    being deleted. Then the create is made again with a new token, ``client_token(kind, *parts,
    "replaces", <stale id>, <run>)``: deterministic within this run (in-place retries of that create,
    the stage's own retries and a retry of the flow run send the same token, so they stay
    idempotent), and new for each stale id (a chain of remembered tokens is followed, never looped).

    Args:
        kind: the token's resource kind (``sg``, ``eni``).
        parts: the values the first token is made of (:func:`client_token`).
        create: makes the create call with a token; returns its answer.
        unusable: given an answer, its resource id and why it cannot be used (``not found``,
            ``Deleting``), or ``None`` when it is live.
        what: the resource kind in words, for the log and the error.

    Returns:
        The answer of the create whose resource is live.

    Raises:
        PipelineError: ``CLIENT_TOKEN_STALE`` when :data:`CREATE_TOKEN_ATTEMPTS` creates all answered
            unusable resources; any error of ``create`` or ``unusable`` unchanged.
    """
    token = client_token(kind, *parts)
    stale: list[str] = []
    for _ in range(CREATE_TOKEN_ATTEMPTS):
        answer = create(token)
        resource_id, why = unusable(answer)
        if why is None:
            return answer
        stale.append(f"{resource_id} ({why})")
        run_logger().warning(
            "ECS answered the create of the %s with ClientToken %s by %s, which is %s: the token "
            "outlived its resource; creating it again with a new token",
            what,
            token,
            resource_id,
            why,
        )
        token = client_token(kind, *parts, "replaces", resource_id, _run_salt())
    raise PipelineError(
        f"every create of the {what} was answered with a resource that is gone or being deleted: {', '.join(stale)}",
        code="CLIENT_TOKEN_STALE",
        fix="wait until those resources are fully deleted (ECS console), then rerun",
    )


def canonical_cidr(value: str) -> str:
    """A CIDR in canonical form, for comparing rules.

    Args:
        value: an IPv4 address or CIDR block as ECS reports it.

    Returns:
        ``10.0.0.5`` -> ``10.0.0.5/32``; ``10.0.0.0/8`` stays; an unparsable value comes back unchanged.
    """
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        return value


def ecs_call(
    action: str, call: Callable[[Any], Any], request: Any, resource: str, fixes: dict[str, str] | None = None
) -> Any:
    """Make one ECS call and return its body.

    Args:
        action: the API action, for messages.
        call: the client method, e.g. ``ecs.describe_security_groups``.
        request: its request model.
        resource: what the call is about, named in the error message (e.g. ``VPC vpc-...``).
        fixes: fixes for codes whose meaning depends on the call (they win over
            :data:`~acrvpc.cloud.errors.FIXES`), e.g. a missing group that is the link's own.

    Returns:
        The response body model.

    Raises:
        PipelineError: for a fatal provider code, with that code and a fix. Transient errors
            (throttling, 5xx, network) are re-raised unchanged so the task's retry condition sees them.
    """
    try:
        return call(request).body
    except Exception as exc:
        code = error_code(exc)
        if code is None or is_retryable(exc):
            raise
        own = (fixes or {}).get(code, "")
        if isinstance(exc, PipelineError):  # already explained (e.g. the RAM action a refusal needs)
            detail, fix = exc.detail, own or exc.fix or FIXES.get(code, "")
        else:
            detail = getattr(exc, "message", None) or str(exc)
            fix = own or FIXES.get(code) or f"check {resource} and that the RAM user may call ecs:{action}, then rerun"
        raise PipelineError(f"ECS {action} for {resource} failed: {detail}", code=code, fix=fix) from exc


def run_logger() -> Any:
    """The task run's logger (its lines reach the run's logs), or this module's outside a run."""
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # noqa: BLE001 - outside a run (a plain call)
        return logger


def retry_stage(stage: str, attempt: Callable[[int], T], *, sleep: Callable[[float], None] = time.sleep) -> T:
    """Run a link/ENI stage, retrying its transient failures here, inside the task.

    The link and ENI stages run in the flow's link/ENI transaction, and Prefect rolls back a task's
    enclosing transaction before each retry of the task (prefect-notes §10): a Prefect retry would
    run the rollback (delete the group this run created) and go on with a deleted group. So these
    two tasks have no Prefect retries; this loop applies the same policy as
    :data:`~acrvpc.cloud.errors.RETRY` (its delays, jitter and transient-only filter), and logs each retry
    into the run's logs. Each attempt re-reads what exists, so repeating one is safe. Calls inside an
    attempt keep their own in-place retries (:mod:`acrvpc.cloud.callretry`).

    Args:
        stage: the stage's name, for the log.
        attempt: one attempt of the stage, given its number (1 for the first).
        sleep: the pause between attempts.

    Returns:
        The result of the first attempt that succeeds.

    Raises:
        Exception: a fatal failure at once, or the last transient one when the retries are used up.
    """
    delays = list(RETRY["retry_delay_seconds"])
    jitter = float(RETRY["retry_jitter_factor"])
    log = run_logger()
    number = 1
    while True:
        try:
            return attempt(number)
        except Exception as exc:
            if number > len(delays) or not is_retryable(exc):
                raise
            from prefect.utilities.math import (
                clamped_poisson_interval,  # only on a retry: `acrvpc plan` loads no Prefect
            )

            delay = clamped_poisson_interval(delays[number - 1], clamping_factor=jitter)
            log.warning(
                "stage %s failed transiently (%s); retry %d/%d in %.1f s",
                stage,
                explain(exc)[:300],
                number,
                len(delays),
                delay,
            )
            sleep(delay)
            number += 1
