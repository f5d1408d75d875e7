"""Console mode: guided pauses for the steps only the registry console can do.

Each step first checks through the API whether the work is already done (a converged rerun
never pauses). When it is not, the step logs the operator's runbook, publishes it as a
markdown artifact (``console-link-<spec>`` / ``console-account-<spec>``) and waits for an
operator with a typed resume form (:class:`ConsoleConfirmation`, carrying the runbook): the
Prefect UI's Resume, or ``acrvpc resume RUN_ID`` from a shell. The answer (done, note) is stored
with the run (Prefect keeps run inputs) and logged. After the answer the step verifies through
the API, retrying briefly while the console finishes.

How the run waits depends on where it runs:

- **A deployment run suspends** (``suspend_flow_run``): the flow-run process exits, so no worker
  process or pod is held while nobody answers. The resume reschedules the run on any worker of
  the pool; Prefect runs the flow function again from the start, the completed tasks come back
  Cached from their persisted results (the flows persist results; the default cache policy is
  scoped to the flow run), and the step whose key has already fired in this attempt skips its
  check and reads the operator's answer (:func:`_answer_of_fired_step`). A suspension nobody
  answers in ``link.pause_timeout_minutes`` is failed by the server ("never resumed").
- **Any other run** (``acrvpc run``, ``acrvpc demo``) pauses in process (``pause_flow_run``): it
  cannot be rescheduled without a deployment. A pause nobody answers fails the run with
  ``CONSOLE_PAUSE_TIMEOUT``.

A resume with ``done: false`` fails the run with ``CONSOLE_STEP_NOT_DONE``.

In a deployment run, pause keys are stable within one attempt and new in each retry
(``console-link``, then ``console-link-attempt-2`` in the run's second attempt, ...;
:func:`step_key`). A retried run
(UI Retry, ``prefect flow-run retry``) whose console step failed or timed out therefore asks
the operator again, and never reuses the answer given to an earlier attempt (PrefectHQ/prefect
#12279); earlier attempts' answers stay recorded with the run under their own keys.

Pauses happen in the flow's main thread (``pause_flow_run``/``suspend_flow_run`` are called
from the flow, never from a task): :func:`console_branches` runs the GitLab token check as a
future and the two console steps in the main thread, then submits the bindings. Before a
suspension the step waits for that future, so the check finishes (and is persisted) instead of
being cancelled when the process exits.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.exceptions import FlowPauseTimeout, ObjectNotFound
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.futures import PrefectFuture, as_completed, wait
from prefect.input import RunInput, keyset_from_base_key
from prefect.runtime import flow_run
from prefect.states import Running
from pydantic import Field, ValidationError

from acrvpc.cloud.errors import PipelineError
from acrvpc.domain.outcomes import BindingOutcome, EniOutcome, LinkOutcome, StageOutcome
from acrvpc.domain.spec import Spec
from tasks.binding import binding
from tasks.console import (
    AccountOutcome,
    account_instructions,
    check_account_task,
    check_console_link_task,
    link_instructions,
    verify_account_task,
    verify_console_link_task,
)
from tasks.gitlab_token import gitlab_token

LINK_PAUSE_KEY = "console-link"
ACCOUNT_PAUSE_KEY = "console-account"
PAUSE_POLL_SECONDS = 2
VERIFY_WAIT_SECONDS = 30.0


class ConsoleConfirmation(RunInput):
    """The resume form of a console step."""

    done: bool = Field(
        title="Done",
        description="I have done the console step exactly as this run's instructions "
        "say. Leave unticked to stop the run instead.",
    )
    note: str | None = Field(
        default=None,
        title="Note",
        description="Optional, kept with the run (who did it, ticket...). Never paste the GitLab token here.",
    )


def pause_seconds(spec: Spec) -> int:
    """The pause timeout in whole seconds (at least 1), from ``link.pause_timeout_minutes``."""
    return max(1, round(spec.link.pause_timeout_minutes * 60))


def step_key(base: str, attempt: RunAttempt) -> str:
    """The pause key of a console step in one attempt of a run.

    Args:
        base: the step's key (``console-link`` or ``console-account``).
        attempt: the current run. In a deployment run its ``run_count`` counts the attempts: 1
            in the first, one more per retry (or reschedule after a crash), unchanged by a resume
            from a suspension (the server marks the run as resuming). An in-process pause's
            resume does add one, so runs without a deployment (which cannot be retried into
            execution anyway) keep ``base``.

    Returns:
        ``base`` in the first attempt, ``base-attempt-N`` in attempt N of a deployment run: stable
        across the suspensions and resumes of one attempt, new in each retry, so a retried run
        asks again.
    """
    if not attempt.deployed or attempt.run_count <= 1:
        return base
    return f"{base}-attempt-{attempt.run_count}"


@dataclass
class RunAttempt:
    """What a console step needs to know about the current flow run, read from the API."""

    run_id: UUID | None = None
    deployed: bool = False  # a deployment run: console steps suspend instead of pausing in process
    run_count: int = 1
    fired: set[str] = field(default_factory=set)  # pause keys that already fired in this attempt

    @classmethod
    def current(cls) -> RunAttempt:
        """The current flow run (a run outside Prefect's API, e.g. ``task.fn`` in a unit test: the defaults)."""
        run_id = flow_run.get_id()
        if not run_id:
            return cls()
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(str(run_id)))
        return cls(
            run_id=run.id,
            deployed=run.deployment_id is not None,
            run_count=max(1, run.run_count or 1),
            fired=set(run.empirical_policy.pause_keys or ()),
        )


def _publish(spec: Spec, kind: str, markdown: str, attempt: RunAttempt) -> None:
    how = (
        "the run is suspended (its process exits, no worker is held) until an operator does it and resumes it; "
        "a worker of the pool then runs it on"
        if attempt.deployed
        else "the run pauses until an operator does it and resumes"
    )
    get_run_logger().info("console step needed: %s\n%s", how, markdown)
    create_markdown_artifact(
        key=f"console-{kind}-{spec.name}",
        markdown=markdown,
        description=f"Console step for {spec.name}: what to do, and the values to enter",
    )


def _settle(pending: Sequence[PrefectFuture[Any]]) -> None:
    """Before a suspension: let running tasks finish (a suspension cancels them), and fail now on a failed one."""
    if not pending:
        return
    wait(list(pending))
    for future in pending:
        if future.state.is_failed() or future.state.is_crashed():
            future.result()  # raises the task's error: no operator is asked for a run that fails anyway


def wait_for_operator(
    spec: Spec,
    key: str,
    markdown: str,
    what: str,
    attempt: RunAttempt | None = None,
    pending: Sequence[PrefectFuture[Any]] = (),
) -> ConsoleConfirmation:
    """Wait for an operator to confirm the console step: suspend a deployment run, pause any other.

    Args:
        spec: the pipeline spec (``link.pause_timeout_minutes``).
        key: the pause key of this step in this attempt (:func:`step_key`).
        markdown: the runbook, shown in the resume form.
        what: the step's name for messages.
        attempt: the current run (:meth:`RunAttempt.current` when None).
        pending: futures to let finish before a suspension.

    Returns:
        The operator's answer, with ``done`` True. (A suspension returns only in the run's
        next execution; see :func:`_answer_of_fired_step`.)

    Raises:
        PipelineError: ``CONSOLE_PAUSE_TIMEOUT`` (an in-process pause nobody resumed in time) or
            ``CONSOLE_STEP_NOT_DONE``.
        prefect.exceptions.Pause: a deployment run was suspended (the flow-run process ends).
    """
    attempt = attempt or RunAttempt.current()
    logger = get_run_logger()
    timeout = pause_seconds(spec)
    form = ConsoleConfirmation.with_initial_data(description=markdown, done=False)
    if attempt.deployed:
        _settle(pending)
        logger.info(
            "suspending the run for the console step '%s' (pause key %s): resume it within %d s, or the "
            "server fails it ('never resumed'); a Retry of the run then asks again",
            what,
            key,
            timeout,
        )
        answer = suspend_flow_run(wait_for_input=form, timeout=timeout, key=key)
        return _confirmed(answer, what)  # only when the key had already fired: suspend returns the answer
    try:
        answer = pause_flow_run(wait_for_input=form, timeout=timeout, poll_interval=PAUSE_POLL_SECONDS, key=key)
    except FlowPauseTimeout:
        _end_pause()
        raise PipelineError(
            f"the run waited {timeout} s for an operator to do the console step '{what}' and resume it; nobody did",
            code="CONSOLE_PAUSE_TIMEOUT",
            fix=(
                f"do the step as the run's console-{key.removeprefix('console-').split('-attempt-')[0]}-"
                f"{spec.name} artifact says, then rerun (a rerun checks first and pauses only if the step is still "
                f"needed), or raise link.pause_timeout_minutes (now {spec.link.pause_timeout_minutes:g})"
            ),
        ) from None
    return _confirmed(answer, what)


def _confirmed(answer: ConsoleConfirmation, what: str) -> ConsoleConfirmation:
    get_run_logger().info("operator answered the console step '%s': done=%s, note=%r", what, answer.done, answer.note)
    if not answer.done:
        raise PipelineError(
            f"the operator resumed the console step '{what}' without confirming it was done"
            + (f" (note: {answer.note})" if answer.note else ""),
            code="CONSOLE_STEP_NOT_DONE",
            fix="do the step, then rerun the pipeline",
        )
    return answer


def _answer_of_fired_step(key: str, what: str) -> ConsoleConfirmation:
    """The answer an operator gave to this attempt's suspension at ``key`` (the run was resumed with it).

    The resumed run executes the flow again from the start; the step does not check again (the
    console may still be finishing) but takes the answer, then verifies with its usual wait.
    """
    try:
        # a sync caller: Prefect's async_dispatch returns the input itself, not a coroutine
        answer = cast(ConsoleConfirmation, ConsoleConfirmation.load(keyset_from_base_key(f"suspended-{key}")))
    except (ValidationError, ObjectNotFound):  # e.g. moved out of Suspended by a forced state change
        raise PipelineError(
            f"the run left its suspension for the console step '{what}' (pause {key}) without the operator's answer",
            code="CONSOLE_NO_ANSWER",
            fix="retry the run (it asks again), and resume it with the Resume form or "
            "acrvpc resume RUN_ID, not by changing its state",
        ) from None
    return _confirmed(answer, what)


def _end_pause() -> None:
    """Take the timed-out run out of Paused, so its Failed state carries our error.

    The server refuses to move a run out of an expired pause and fails it with its own generic
    message instead; forcing the run back to Running (it is running: this code is executing)
    lets the engine record the ``CONSOLE_PAUSE_TIMEOUT`` failure with its fix.
    """
    run_id = flow_run.get_id()
    if not run_id:
        return
    with get_client(sync_client=True) as client:
        current = client.read_flow_run(UUID(str(run_id))).state
        if current is not None and current.type in (StateType.PAUSED, StateType.FAILED):  # never undo a cancel
            client.set_flow_run_state(
                UUID(str(run_id)), Running(message="the console step's pause timed out"), force=True
            )


def _answered(answer: ConsoleConfirmation, what: str) -> str:
    return f"{what} confirmed by the operator" + (f": {answer.note}" if answer.note else "")


def console_link_step(spec: Spec, pending: Sequence[PrefectFuture[Any]] = ()) -> tuple[LinkOutcome, EniOutcome]:
    """The console's "Manage Link": check, and when needed wait for the operator, then verify.

    Args:
        spec: the pipeline spec.
        pending: futures to let finish before a suspension (see :func:`wait_for_operator`).

    Returns:
        The verified service-managed group and ENI.

    Raises:
        PipelineError: ``CONSOLE_LINK_MISMATCH`` / ``CONSOLE_LINK_MISSING`` after the operator resumed,
            ``CONSOLE_PAUSE_TIMEOUT``, ``CONSOLE_STEP_NOT_DONE``, or an ECS error.
        prefect.exceptions.Pause: a deployment run was suspended for the operator.
    """
    attempt = RunAttempt.current()
    key = step_key(LINK_PAUSE_KEY, attempt)
    if attempt.deployed and key in attempt.fired:  # resumed from this step's suspension
        answer = _answer_of_fired_step(key, "manage link")
    else:
        found = check_console_link_task(spec)
        if found.ok:
            assert found.link is not None and found.eni is not None
            return found.link, found.eni
        markdown = link_instructions(spec, found.problem, str(flow_run.get_id() or ""))
        _publish(spec, "link", markdown, attempt)
        answer = wait_for_operator(spec, key, markdown, "manage link", attempt, pending)
    link_out, eni_out = verify_console_link_task(spec, wait_s=VERIFY_WAIT_SECONDS)
    link_out.notes.append(_answered(answer, "manage link"))
    return link_out, eni_out


def console_account_step(spec: Spec) -> AccountOutcome:
    """The console's "Bind Account": check, and when needed wait for the operator, then verify.

    Args:
        spec: the pipeline spec.

    Returns:
        The verified binding (its ``changes`` hold any write the check made, see
        :func:`tasks.console.check_account`).

    Raises:
        PipelineError: ``CONSOLE_ACCOUNT_NOT_BOUND`` after the operator resumed, ``CONSOLE_PAUSE_TIMEOUT``,
            ``CONSOLE_STEP_NOT_DONE``, or a CR error.
        prefect.exceptions.Pause: a deployment run was suspended for the operator.
    """
    attempt = RunAttempt.current()
    key = step_key(ACCOUNT_PAUSE_KEY, attempt)
    changes: list[str] = []
    if attempt.deployed and key in attempt.fired:  # resumed from this step's suspension
        answer = _answer_of_fired_step(key, "bind account")
    else:
        found = check_account_task(spec)
        if found.bound:
            return found
        changes = found.changes
        markdown = account_instructions(spec, found.evidence, str(flow_run.get_id() or ""))
        _publish(spec, "account", markdown, attempt)
        answer = wait_for_operator(spec, key, markdown, "bind account", attempt)
    verified = verify_account_task(spec, wait_s=VERIFY_WAIT_SECONDS)
    verified.changes[:0] = changes
    verified.notes.append(_answered(answer, "bind account"))
    return verified


def console_branches(spec: Spec) -> tuple[list[tuple[str, list[StageOutcome], float]], list[BindingOutcome]]:
    """Link, ENI, GitLab and bindings in console mode.

    The GitLab token check runs as a future while the main thread does the link step (a task that
    has not started when the run pauses waits for the resume; a suspension first lets it finish);
    the account step follows, then the bindings run concurrently.

    Args:
        spec: the pipeline spec.

    Returns:
        ``(stage, outcomes, seconds)`` for link, eni, gitlab and binding, and the binding outcomes.
    """
    t0 = time.monotonic()
    gitlab_future = gitlab_token.submit(spec)
    link_out, eni_out = console_link_step(spec, pending=[gitlab_future])
    t_link = time.monotonic()
    gitlab_out = gitlab_future.result()
    t_gitlab = time.monotonic()
    account = console_account_step(spec)
    futures = [binding.submit(spec, repo) for repo in spec.repositories]
    for _ in as_completed(futures):
        pass
    bindings = [f.result() for f in futures]
    account_row = StageOutcome(
        stage="binding", resources=account.resources, changes=account.changes, notes=account.notes
    )
    rows: list[tuple[str, list[Any], float]] = [
        ("link", [link_out], t_link - t0),
        ("eni", [eni_out], 0.0),
        ("gitlab", [gitlab_out], t_gitlab - t0),
        ("binding", [account_row, *bindings], time.monotonic() - t_gitlab),
    ]
    return rows, bindings
