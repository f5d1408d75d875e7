"""Console mode: guided pauses for the steps only the registry console can do.

Each step first checks through the API whether the work is already done (a converged rerun
never pauses). When it is not, the step logs the operator's runbook, publishes it as a
markdown artifact (``console-link-<spec>`` / ``console-account-<spec>``) and pauses the run
with ``pause_flow_run(wait_for_input=ConsoleConfirmation)``: the Prefect UI shows a typed
resume form carrying the runbook, and ``acrvpc resume RUN_ID`` answers it from a shell. The
answer (done, note) is stored with the run (Prefect keeps run inputs) and logged. On resume the
step verifies through the API, retrying briefly while the console finishes.

A pause nobody answers fails the run after ``link.pause_timeout_minutes`` with
``CONSOLE_PAUSE_TIMEOUT``; a resume with ``done: false`` fails it with ``CONSOLE_STEP_NOT_DONE``.

Pauses happen in the flow's main thread (``pause_flow_run`` is called from the flow, never from a
task): :func:`console_branches` runs the GitLab token check as a future and the two console steps
in the main thread, then submits the bindings.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.futures import as_completed
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.states import Running
from pydantic import Field

from acrvpc.errors import PipelineError
from acrvpc.outcomes import BindingOutcome, EniOutcome, LinkOutcome, StageOutcome
from acrvpc.spec import Spec
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

    done: bool = Field(title="Done", description="I have done the console step exactly as this run's instructions "
                                                 "say. Leave unticked to stop the run instead.")
    note: str | None = Field(default=None, title="Note", description="Optional, kept with the run (who did it, "
                                                                     "ticket...). Never paste the GitLab token here.")


def pause_seconds(spec: Spec) -> int:
    """The pause timeout in whole seconds (at least 1), from ``link.pause_timeout_minutes``."""
    return max(1, round(spec.link.pause_timeout_minutes * 60))


def _publish(spec: Spec, kind: str, markdown: str) -> None:
    get_run_logger().info("console step needed: the run pauses until an operator does it and resumes\n%s", markdown)
    create_markdown_artifact(key=f"console-{kind}-{spec.name}", markdown=markdown,
                             description=f"Console step for {spec.name}: what to do, and the values to enter")


def wait_for_operator(spec: Spec, key: str, markdown: str, what: str) -> ConsoleConfirmation:
    """Pause the run until an operator confirms the console step (or the pause times out).

    Args:
        spec: the pipeline spec (``link.pause_timeout_minutes``).
        key: the pause key (``console-link`` or ``console-account``): which step the pause is for.
        markdown: the runbook, shown in the resume form.
        what: the step's name for messages.

    Returns:
        The operator's answer, with ``done`` True.

    Raises:
        PipelineError: ``CONSOLE_PAUSE_TIMEOUT`` (nobody resumed in time) or ``CONSOLE_STEP_NOT_DONE``.
    """
    logger = get_run_logger()
    timeout = pause_seconds(spec)
    form = ConsoleConfirmation.with_initial_data(description=markdown, done=False)
    try:
        answer = pause_flow_run(wait_for_input=form, timeout=timeout, poll_interval=PAUSE_POLL_SECONDS, key=key)
    except FlowPauseTimeout:
        _end_pause()
        raise PipelineError(
            f"the run waited {timeout} s for an operator to do the console step '{what}' and resume it; nobody did",
            code="CONSOLE_PAUSE_TIMEOUT",
            fix=(f"do the step as the run's console-{key.removeprefix('console-')}-{spec.name} artifact says, then "
                 f"rerun (a rerun checks first and pauses only if the step is still needed), or raise "
                 f"link.pause_timeout_minutes (now {spec.link.pause_timeout_minutes:g})")) from None
    logger.info("operator answered the console step '%s': done=%s, note=%r", what, answer.done, answer.note)
    if not answer.done:
        raise PipelineError(f"the operator resumed the console step '{what}' without confirming it was done"
                            + (f" (note: {answer.note})" if answer.note else ""),
                            code="CONSOLE_STEP_NOT_DONE", fix="do the step, then rerun the pipeline")
    return answer


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
            client.set_flow_run_state(UUID(str(run_id)), Running(message="the console step's pause timed out"),
                                      force=True)


def _answered(answer: ConsoleConfirmation, what: str) -> str:
    return f"{what} confirmed by the operator" + (f": {answer.note}" if answer.note else "")


def console_link_step(spec: Spec) -> tuple[LinkOutcome, EniOutcome]:
    """The console's "Manage Link": check, and when needed pause for the operator, then verify.

    Args:
        spec: the pipeline spec.

    Returns:
        The verified service-managed group and ENI.

    Raises:
        PipelineError: ``CONSOLE_LINK_MISMATCH`` / ``CONSOLE_LINK_MISSING`` after the operator resumed,
            ``CONSOLE_PAUSE_TIMEOUT``, ``CONSOLE_STEP_NOT_DONE``, or an ECS error.
    """
    found = check_console_link_task(spec)
    if found.ok:
        assert found.link is not None and found.eni is not None
        return found.link, found.eni
    markdown = link_instructions(spec, found.problem, str(flow_run.get_id() or ""))
    _publish(spec, "link", markdown)
    answer = wait_for_operator(spec, LINK_PAUSE_KEY, markdown, "manage link")
    link_out, eni_out = verify_console_link_task(spec, wait_s=VERIFY_WAIT_SECONDS)
    link_out.notes.append(_answered(answer, "manage link"))
    return link_out, eni_out


def console_account_step(spec: Spec) -> AccountOutcome:
    """The console's "Bind Account": check, and when needed pause for the operator, then verify.

    Args:
        spec: the pipeline spec.

    Returns:
        The verified binding (its ``changes`` hold any write the check made, see
        :func:`tasks.console.check_account`).

    Raises:
        PipelineError: ``CONSOLE_ACCOUNT_NOT_BOUND`` after the operator resumed, ``CONSOLE_PAUSE_TIMEOUT``,
            ``CONSOLE_STEP_NOT_DONE``, or a CR error.
    """
    found = check_account_task(spec)
    if found.bound:
        return found
    markdown = account_instructions(spec, found.evidence, str(flow_run.get_id() or ""))
    _publish(spec, "account", markdown)
    answer = wait_for_operator(spec, ACCOUNT_PAUSE_KEY, markdown, "bind account")
    verified = verify_account_task(spec, wait_s=VERIFY_WAIT_SECONDS)
    verified.changes[:0] = found.changes
    verified.notes.append(_answered(answer, "bind account"))
    return verified


def console_branches(spec: Spec) -> tuple[list[tuple[str, list[StageOutcome], float]], list[BindingOutcome]]:
    """Link, ENI, GitLab and bindings in console mode.

    The GitLab token check runs as a future while the main thread does the link step (a task that
    has not started when the run pauses waits for the resume); the account step follows, then the
    bindings run concurrently.

    Args:
        spec: the pipeline spec.

    Returns:
        ``(stage, outcomes, seconds)`` for link, eni, gitlab and binding, and the binding outcomes.
    """
    t0 = time.monotonic()
    gitlab_future = gitlab_token.submit(spec)
    link_out, eni_out = console_link_step(spec)
    t_link = time.monotonic()
    gitlab_out = gitlab_future.result()
    t_gitlab = time.monotonic()
    account = console_account_step(spec)
    futures = [binding.submit(spec, repo) for repo in spec.repositories]
    for _ in as_completed(futures):
        pass
    bindings = [f.result() for f in futures]
    account_row = StageOutcome(stage="binding", resources=account.resources, changes=account.changes,
                               notes=account.notes)
    rows: list[tuple[str, list[Any], float]] = [
        ("link", [link_out], t_link - t0), ("eni", [eni_out], 0.0), ("gitlab", [gitlab_out], t_gitlab - t0),
        ("binding", [account_row, *bindings], time.monotonic() - t_gitlab)]
    return rows, bindings
