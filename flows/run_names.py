"""Flow-run names a person can read in a list of runs: the spec, then what started the run.

``demo-build · nightly`` (a deployment's schedule), ``demo-build · push platform/billing-api@main
a1b2c3d`` (the webhook receiver), ``demo-build · retry`` (the UI's Retry or ``prefect flow-run
retry``), ``demo-build · manual`` (started by hand: ``acrvpc run``, a deployment's Quick run). The
flows pass :func:`flow_run_name` as their ``flow_run_name``; Prefect calls it in the flow-run process
before the run starts (and again when a retried or resumed run starts in a new process).

The spec's name is read cheaply: from the ``spec`` parameter's ``name`` (a deployment made by
``acrvpc deploy`` carries the spec as a dict) or from the ``spec_path`` file's top-level ``name``,
without validating the spec (the flow does that, and reports a bad field itself). Naming never fails a
run: whatever cannot be read falls back to the flow's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

SEP = " · "
WEBHOOK_TAG = "gitlab-webhook"  # the tag the webhook receiver puts on the runs it starts


def spec_name_of(parameters: Mapping[str, Any]) -> str:
    """The spec's name from a flow run's parameters (``spec`` dict or model, or ``spec_path``); "" if unknown."""
    spec = parameters.get("spec")
    if isinstance(spec, Mapping):
        return str(spec.get("name") or "")
    if spec is not None:
        return str(getattr(spec, "name", "") or "")
    path = parameters.get("spec_path")
    if not path:
        return ""
    import yaml

    try:
        with Path(str(path)).open(encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError):
        return ""
    return str(data.get("name") or "") if isinstance(data, Mapping) else ""


def push_label(project: str, ref: str, sha: str = "") -> str:
    """``push platform/billing-api@main a1b2c3d`` for a push of ``refs/heads/main`` at that commit."""
    short = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
    return f"push {project}@{short}" + (f" {sha[:7]}" if sha else "")


def trigger_of(
    parameters: Mapping[str, Any],
    *,
    tags: list[str] | tuple[str, ...] = (),
    auto_scheduled: bool = False,
    state_name: str = "",
    run_count: int = 0,
    deployment_name: str = "",
    spec_name: str = "",
) -> str:
    """What started the run, in a word or a push label.

    Args:
        parameters: the flow run's parameters (``project``/``ref``/``sha`` make a push).
        tags: the flow run's tags (the webhook receiver adds ``gitlab-webhook``).
        auto_scheduled: the run was made by a deployment's schedule.
        state_name: the run's state when it is about to start (``AwaitingRetry`` after a Retry).
        run_count: how many times the run ran before.
        deployment_name: the deployment's name (``nightly``), when the run has one.
        spec_name: the spec's name (a deployment named after it, as ``acrvpc deploy`` names them, says
            nothing more).

    Returns:
        ``retry``, ``push <project>@<branch> <sha7>``, the schedule's deployment name (or ``scheduled``),
        ``automation`` or ``manual``.
    """
    if state_name == "AwaitingRetry" and run_count > 0:  # a resumed pause keeps its first name
        return "retry"
    if parameters.get("project") and parameters.get("ref"):
        return push_label(str(parameters["project"]), str(parameters["ref"]), str(parameters.get("sha") or ""))
    if WEBHOOK_TAG in tags:
        return "push"
    if auto_scheduled:
        return deployment_name if deployment_name and deployment_name != spec_name else "scheduled"
    return "manual"


def run_name(flow_name: str, parameters: Mapping[str, Any], **facts: Any) -> str:
    """``<spec> · <trigger>`` (the flow's name stands in for an unreadable spec); see :func:`trigger_of`."""
    spec = spec_name_of(parameters) or flow_name
    return f"{spec}{SEP}{trigger_of(parameters, spec_name=spec, **facts)}"


def flow_run_name() -> str:
    """The ``flow_run_name`` callable of the flows: :func:`run_name` from the running flow run's facts."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx is not None else None
    flow_name = ctx.flow.name if ctx is not None and ctx.flow is not None else "run"
    if ctx is None or run is None:
        return flow_name
    try:
        deployment = ""
        if run.auto_scheduled and run.deployment_id is not None:  # only then is the deployment's name used
            from prefect.runtime import deployment as runtime_deployment

            deployment = str(runtime_deployment.name or "")
        state = run.state.name if run.state is not None else ""
        return run_name(
            flow_name,
            {**(run.parameters or {}), **(ctx.parameters or {})},
            tags=list(run.tags or []),
            auto_scheduled=bool(run.auto_scheduled),
            state_name=state,
            run_count=run.run_count,
            deployment_name=deployment,
        )
    except Exception:  # noqa: BLE001 - a name must never fail the run
        return run.name or flow_name
