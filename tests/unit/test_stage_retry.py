"""The link/ENI stages' own retry loop (tasks.ecs_common.retry_stage): bounded, transient failures only."""

from __future__ import annotations

import pytest

from acrvpc.cloud.errors import RETRY, PipelineError
from tasks.ecs_common import retry_stage


def failing(errors: list[Exception]):
    attempts: list[int] = []

    def attempt(number: int) -> str:
        attempts.append(number)
        if errors:
            raise errors.pop(0)
        return "done"

    attempt.attempts = attempts  # type: ignore[attr-defined]
    return attempt


def transient() -> PipelineError:
    return PipelineError("busy", code="ServiceUnavailable", retryable=True)


def test_transient_failures_are_retried_with_the_task_retry_policy():
    waits: list[float] = []
    attempt = failing([transient(), transient()])
    assert retry_stage("eni", attempt, sleep=waits.append) == "done"
    assert attempt.attempts == [1, 2, 3]
    delays = RETRY["retry_delay_seconds"]
    for wait, delay in zip(waits, delays, strict=False):  # jittered at most by the task jitter factor
        assert 0 <= wait <= delay * (1 + RETRY["retry_jitter_factor"])


def test_retries_stop_after_as_many_as_the_tasks_have():
    retries = len(RETRY["retry_delay_seconds"])
    attempt = failing([transient() for _ in range(retries + 5)])
    with pytest.raises(PipelineError, match="ServiceUnavailable"):
        retry_stage("eni", attempt, sleep=lambda s: None)
    assert len(attempt.attempts) == retries + 1


def test_a_fatal_failure_is_not_retried():
    attempt = failing([PipelineError("no", code="Forbidden.RAM"), transient()])
    with pytest.raises(PipelineError, match="Forbidden.RAM"):
        retry_stage("link", attempt, sleep=lambda s: pytest.fail("slept"))
    assert attempt.attempts == [1]
