"""Error classification: what is worth retrying, and what to tell a person when it is not.

Two retry layers, both filtered by :func:`is_retryable` (the policy: :mod:`acrvpc.cloud.callretry`):
calls that are safe to repeat retry in place a few times, and Prefect task retries
(:data:`RETRY`: exponential backoff with jitter, filtered by :func:`retry_condition`) are the
outer layer. Transient: throttling, ``ServiceUnavailable``, ``InternalError``,
resource-busy codes, HTTP 5xx, timeouts and connection resets (Alibaba Cloud); 429, 5xx,
timeouts (GitLab). Fatal: everything else, e.g. ``InvalidParameter``, ``Forbidden.RAM``,
``*.NotFound``, a CR ``IsSuccess=false`` code, GitLab 401/403/404. Branch on codes, never on
message text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypedDict

from acrvpc.settings import settings

TRANSIENT_CODES = {
    "ServiceUnavailable",
    "InternalError",
    "InternalServerError",
    "OperationConflict",
    "TaskConflict",
    "IncorrectRouteEntryStatus",
    "LastTokenProcessing",
    "IdempotentProcessing",
    "InvalidOperation.InvalidEniState",
    "InvalidOperation.InvalidEcsState",
    "InvalidOperation.HasMemberEniAttached",
}
_THROTTLING = re.compile(r"Throttling")

# Fixes for fatal codes a release manager is likely to meet. The message carries the code as well.
FIXES: dict[str, str] = {
    "Forbidden.RAM": "grant the RAM user the action named in the error (see `acrvpc policy`), then rerun",
    "NoPermission": "grant the RAM user the action named in the error, then rerun",
    "NoPrivilege": "grant the RAM user the Container Registry action named in the error (see `acrvpc policy`), "
    "then rerun",
    "InvalidAccessKeyId.NotFound": "the AccessKey id is unknown: check the credentials block or environment",
    "SignatureDoesNotMatch": "the AccessKey secret is wrong: check the credentials block or environment",
    "InvalidSecurityToken.Expired": "the STS token expired: refresh the credentials",
    "INSTANCE_NOT_EXIST": "check instance_id in the spec (Container Registry console, Instances)",
    "INSTANCE_STATUS_NOT_SUPPORT": "wait until the instance is RUNNING, then rerun",
    "InvalidVpcID.NotFound": "check network.vpc_id and region in the spec",
    "InvalidVswitchID.NotFound": "check network.vswitch_id and region in the spec",
    "InvalidVSwitchId.NotFound": "check network.vswitch_id and region in the spec",
    # Preflight reads the GitLab ECS's group; the link/ENI stages pass their own fix for the link's group.
    "InvalidSecurityGroupId.NotFound": "check that the group named in the error exists in the spec's region; "
    "for the GitLab ECS's group, correct gitlab.security_group_id or remove it "
    "and let preflight find it",
    "InvalidVbrId.NotFound": "check network.vbr_id in the spec",
    "InvalidAction.NotFound": "the API action is not available at this endpoint (sandbox: not emulated)",
}


class PipelineError(Exception):
    """A failure the pipeline explains: a code, what happened, and how to fix it.

    Attributes:
        code: the provider's error code (or our own, e.g. ``PREFLIGHT_FAILED``).
        fix: what a person should do about it.
        retryable: whether retrying may help.
    """

    def __init__(self, message: str, *, code: str = "", fix: str = "", retryable: bool = False) -> None:
        self.code = code
        self.fix = fix
        self.retryable = retryable
        self.detail = message  # what happened, without the code and the fix
        text = f"[{code}] {message}" if code else message
        if fix:
            text += f" Fix: {fix}."
        super().__init__(text)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable with keyword arguments (Prefect persists states)
        return (_rebuild, (type(self), self.args[0], self.code, self.fix, self.retryable))


def _rebuild(cls: type[PipelineError], text: str, code: str, fix: str, retryable: bool) -> PipelineError:
    err = cls.__new__(cls)
    Exception.__init__(err, text)
    err.code, err.fix, err.retryable, err.detail = code, fix, retryable, text
    return err


class CrBusinessError(PipelineError):
    """Container Registry answered HTTP 200 with ``IsSuccess=false``."""


def check_cr(response: Any, action: str) -> Any:
    """Return a CR response's body, raising :class:`CrBusinessError` when ``IsSuccess`` is false.

    The SDK does not look at ``IsSuccess``; every CR call goes through here.
    """
    body = response.body
    if getattr(body, "is_success", True) is False:
        code = getattr(body, "code", "") or "UNKNOWN"
        raise CrBusinessError(
            f"{action} failed: {code}", code=code, fix=FIXES.get(code, ""), retryable=code in TRANSIENT_CODES
        )
    return body


def error_code(exc: BaseException) -> str | None:
    """The provider error code carried by an exception, if any."""
    if isinstance(exc, PipelineError):
        return exc.code or None
    code = getattr(exc, "code", None)
    return str(code) if code else None


def _status(exc: BaseException) -> int | None:
    for attr in ("status_code", "statusCode", "response_code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    return None


def is_retryable(exc: BaseException) -> bool:
    """Whether retrying the call that raised ``exc`` may succeed."""
    if isinstance(exc, PipelineError):
        return exc.retryable
    # Transport failures: requests' timeouts/connection errors (python-gitlab), darabonba's
    # UnretryableException wrapping a RetryError (Alibaba SDK), and the builtins.
    try:
        import requests

        if isinstance(
            exc,
            (
                requests.exceptions.Timeout,
                requests.exceptions.ConnectionError,
                requests.exceptions.ChunkedEncodingError,
            ),
        ):
            return True
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    inner = getattr(exc, "inner_exception", None)
    if inner is not None and type(exc).__name__ == "UnretryableException":
        return True
    code = error_code(exc)
    status = _status(exc)
    if code and (_THROTTLING.search(code) or code in TRANSIENT_CODES):
        return True
    if status is not None and (status >= 500 or status == 429):
        return True
    return False


def explain(exc: BaseException) -> str:
    """One line for a person: the code, the provider's message, and the fix when known."""
    if isinstance(exc, PipelineError):
        return str(exc)
    code = error_code(exc)
    message = getattr(exc, "message", None) or getattr(exc, "error_message", None) or str(exc)
    text = f"[{code}] {message}" if code else str(message)
    fix = FIXES.get(code or "")
    return f"{text} Fix: {fix}." if fix else text


def retry_condition(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only transient failures."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - we classify it
        return is_retryable(exc)
    return False


def retry_delays() -> list[float]:
    """Task retry delays in seconds: ``ACRVPC_RETRY_DELAYS`` (e.g. ``"1,2,4,8"``), read at import.

    The count of delays is the number of retries. Exponential by default; lower them for tests
    and soaks against the sandbox, raise them for an account with tight API quotas.

    Raises:
        acrvpc.settings.SettingsError: a bad value (a ``ValueError`` naming the variable and the fix).
    """
    return list(settings().retry_delays)


class RetryOptions(TypedDict):
    """The retry keyword arguments of Prefect's ``@task`` that :data:`RETRY` sets (typed for ``**RETRY``)."""

    retries: int
    retry_delay_seconds: list[float]
    retry_jitter_factor: float
    retry_condition_fn: Callable[[Any, Any, Any], bool]


_DELAYS = retry_delays()
# Keyword arguments every API-calling task uses: exponential backoff with jitter, transient errors only.
RETRY: RetryOptions = {
    "retries": len(_DELAYS),
    "retry_delay_seconds": _DELAYS,
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_condition,
}
