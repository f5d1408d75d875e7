"""One wait-until helper: poll a cloud resource until it settles, backing off, until a deadline.

Alibaba Cloud changes state asynchronously (an ENI goes ``Attaching`` -> ``InUse``, a deleted one
``Deleting`` -> gone, a security group stays in use until its ENIs are gone, an account bound in the
console shows up through the API a little later), so several stages poll. They all poll the same way:

- the first poll at once, then pauses of ``first_s`` (0.5 s) doubling up to ``max_s`` (5 s);
- the deadline counts seconds of pausing or wall time, whichever is larger (tests pass a ``sleep``
  that advances the sandbox's clock instead of waiting, and still reach the deadline);
- the last pause is shortened so the last poll falls on the deadline, and one poll always happens;
- nothing is swallowed but what the caller names (``retry_on``): a cancellation of the run (Prefect's
  ``TerminationSignal`` or ``CancelledError``, a ``KeyboardInterrupt``) raised by a poll or by the
  pause passes straight through, and no pause is longer than ``max_s``, so a cancelled run stops
  within one pause (or at once, with a ``sleep`` such as ``threading.Event.wait`` that a stop sets).

Lives in the cloud-access layer, beside the clients and the pager (:mod:`acrvpc.cloud.paging`):
like botocore's waiters it is about waiting for the provider, knows no stage, and imports only
:mod:`acrvpc.cloud.errors`, so any stage can use it without importing another.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from acrvpc.cloud.errors import PipelineError

T = TypeVar("T")

FIRST_POLL_S = 0.5
MAX_POLL_S = 5.0
WAIT_TIMEOUT = "WAIT_TIMEOUT"


def wait_until(
    poll: Callable[[], T | None],
    *,
    what: str,
    timeout_s: float,
    sleep: Callable[[float], object] = time.sleep,
    first_s: float = FIRST_POLL_S,
    max_s: float = MAX_POLL_S,
    retry_on: Callable[[Exception], bool] | None = None,
    timeout_error: Callable[[], BaseException] | None = None,
    fix: str = "",
) -> T:
    """Call ``poll`` until it returns something other than ``None``, backing off, until ``timeout_s``.

    Args:
        poll: one look; returns the result when the wait is over, ``None`` to wait on. It may raise
            to end the wait at once (e.g. a resource that fell into a failed state).
        what: what is awaited, in words (``ENI eni-... to be InUse``), for the timeout error.
        timeout_s: the deadline, in seconds of pausing or wall time, whichever is larger (0: poll once).
        sleep: the pause between polls (tests pass one that advances the sandbox clock).
        first_s: the first pause; each next one doubles it.
        max_s: the longest pause.
        retry_on: which exceptions of ``poll`` mean "not yet" (wait on) rather than "failed"; at the
            deadline the last of them is raised unchanged (unless ``timeout_error`` is given).
        timeout_error: builds the error raised at the deadline (called once, then; it may read the
            last state the poll saw).
        fix: what to do about a timeout, for the default error.

    Returns:
        The first result of ``poll`` that is not ``None``.

    Raises:
        PipelineError: ``WAIT_TIMEOUT`` naming ``what``, the time waited and the fix, when the deadline
            passes and neither ``timeout_error`` nor a ``retry_on`` exception says more. Whatever
            ``timeout_error`` builds, the last ``retry_on`` exception, and any other exception of
            ``poll`` or ``sleep`` (cancellation included) unchanged.
    """
    delay, slept, start = first_s, 0.0, time.monotonic()
    while True:
        last: Exception | None = None
        try:
            result = poll()
        except Exception as exc:
            if retry_on is None or not retry_on(exc):
                raise
            last, result = exc, None
        if result is not None:
            return result
        elapsed = max(slept, time.monotonic() - start)
        if elapsed >= timeout_s:
            if timeout_error is not None:
                raise timeout_error()
            if last is not None:
                raise last
            raise PipelineError(
                f"still waiting for {what} after {timeout_s:.0f} s",
                code=WAIT_TIMEOUT,
                fix=fix
                or f"check why {what} takes longer than usual (the cloud console shows "
                f"its state), then rerun, or allow a longer wait",
            )
        step = min(delay, timeout_s - elapsed)
        sleep(step)
        slept += step
        delay = min(delay * 2, max_s)
