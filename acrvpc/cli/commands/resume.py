"""``acrvpc resume RUN_ID [--note TEXT] [--not-done]``: answer a console step's pause from a shell.

In console mode a ``vpc-build`` run pauses until an operator has done a console step (see
:mod:`flows.console_steps`). This sends the same typed answer as the Prefect UI's resume form,
``{"done": true, "note": TEXT}``, to the Prefect API the environment names (``PREFECT_API_URL``).
The run then verifies the step through the cloud APIs. ``--not-done`` answers ``done: false``,
which stops the run (``CONSOLE_STEP_NOT_DONE``). Exit codes: 0 resumed, 1 the run is not paused
or can no longer be resumed, 2 the run id is not a UUID or names no run.
"""

from __future__ import annotations

from uuid import UUID

import typer

from acrvpc.cli.common import app, console, err


@app.command()
def resume(
    run_id: str = typer.Argument(..., help="The paused flow run's id (shown in the run's logs and artifact)."),
    note: str | None = typer.Option(None, help="A note kept with the run (who did it, a ticket). Never a token."),
    not_done: bool = typer.Option(False, "--not-done", help="Answer that the step was NOT done: the run stops."),
) -> None:
    """Resume a run paused for a console step, confirming the step is done."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import FlowPauseTimeout, ObjectNotFound
    from prefect.flow_runs import resume_flow_run

    try:
        flow_run_id = UUID(run_id)
    except ValueError:
        err.print(f"[red]{run_id!r} is not a flow run id (a UUID such as 0b9f3a8e-...)[/]", highlight=False)
        raise typer.Exit(2) from None
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)
    except ObjectNotFound:
        err.print(f"[red]no flow run {run_id} on this Prefect API; check PREFECT_API_URL[/]", highlight=False)
        raise typer.Exit(2) from None
    state = run.state
    if state is None or not state.is_paused():
        err.print(
            f"[red]flow run {run_id} ({run.name}) is not paused: it is {state.name if state else 'without state'}[/]",
            highlight=False,
        )
        raise typer.Exit(1)
    key = state.state_details.pause_key or "?"
    answer = {"done": not not_done, "note": note}
    try:
        resume_flow_run(flow_run_id, run_input=answer)
    except FlowPauseTimeout:
        err.print(
            f"[red]flow run {run_id}'s pause timed out; it can no longer be resumed: rerun the pipeline[/]",
            highlight=False,
        )
        raise typer.Exit(1) from None
    except RuntimeError as exc:
        err.print(f"[red]flow run {run_id} refused the answer: {exc}[/]", highlight=False)
        raise typer.Exit(1) from None
    console.print(
        f"resumed flow run {run_id} ({run.name}), pause {key}: done={answer['done']}"
        + (f", note: {note}" if note else "")
        + "; it now verifies the step through the API"
    )
