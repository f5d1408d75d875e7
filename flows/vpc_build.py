"""The full pipeline: preflight -> link -> ENI, GitLab token -> bindings, then builds.

Order and concurrency (each box is a retryable task; arrows are data dependencies)::

    preflight ──┬─> [ link ──> eni ] (one transaction) ─┐
                └─> gitlab ──> binding (per repo) ──────┴─> build (per rule with build: true)

Preflight gates everything: a failing check stops the run before any write. The link/ENI
branch and the GitLab/binding branch are independent and run concurrently; builds start once
both are done, and run concurrently with each other. A failed build does not hide the others:
the run fails at the end, naming every failed build.

Link and ENI run in a Prefect transaction: when either fails for good, the rollback deletes what
this run created (and nothing that existed before it), so a failed run leaves no half-built link;
``acrvpc teardown`` removes a whole link on purpose. Prefect rolls a task's enclosing transaction
back before each retry of the task, so these two tasks have no Prefect retries: they retry their
transient failures inside the task with the same policy (``tasks.ecs_common.retry_stage``), and a
failure reaches the transaction only when it is final.

In console mode (``link.mode: console``) the link and ENI come from the registry console's
"Manage Link", and the GitLab account from its "Bind Account": the run pauses for an operator
when either is missing, then verifies it through the API (:mod:`flows.console_steps`).

Results are persisted (``persist_result=True``) with Prefect's default cache policy, which is
scoped to the flow run: when a failed run is retried from the Prefect UI, the stages that
completed come back Cached and the run resumes at the failure (a failed build runs again, a
successful one does not). Result storage defaults to ``$PREFECT_HOME/storage``; with workers on
several hosts, point ``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK`` at a saved shared storage block.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect.transactions import transaction

from acrvpc import monitor, run_gate, runlog
from acrvpc.domain.outcomes import BindingOutcome, BuildOutcome, StageOutcome
from acrvpc.domain.run_summary import plan_lines
from acrvpc.domain.spec import LinkMode, Spec, resolve_spec
from flows.builds import fail_if_any_failed, reported_run, run_builds, stage_started
from flows.console_steps import console_branches
from flows.run_names import flow_run_name, spec_name_of
from tasks.binding import binding
from tasks.eni import eni
from tasks.gitlab_token import gitlab_token
from tasks.link import link
from tasks.preflight import preflight
from tasks.teardown import rollback_link
from tasks.webhook_hook import webhook_hook

# What the link/ENI transaction undoes when it fails: only what this run created.
link.on_rollback(rollback_link)


def _row(stage: str, outcomes: Sequence[StageOutcome], seconds: float, result: str = "completed") -> dict[str, Any]:
    resources: dict[str, str] = {}
    changes: list[str] = []
    for outcome in outcomes:
        for key, value in outcome.resources.items():
            resources[key] = f"{resources[key]}, {value}" if key in resources else value
        changes.extend(outcome.changes)
    row = {"stage": stage, "result": result, "resources": resources, "changes": changes, "seconds": round(seconds, 2)}
    monitor.publish("stage.finished", **row)
    return row


def _api_branches(spec: Spec) -> tuple[list[dict[str, Any]], list[Any]]:
    """Api mode: link -> eni (one transaction) and gitlab -> bindings; stage rows and bindings.

    The gitlab branch is submitted first and runs in worker threads (each binding waits for the
    token check); the link and ENI stages run meanwhile in this thread inside a Prefect
    transaction. A final failure there rolls back what this run created
    (``tasks.teardown.rollback_link``), the two results are not committed, and the run fails; a
    retry of that run then builds the link again. On success the transaction commits before any
    later stage, so a retry of the run finds link and ENI cached. Neither task has Prefect retries
    (a retry of a task would roll this transaction back first): each retries transient failures
    itself, so the transaction sees only final failures.
    """
    t_branch = time.monotonic()
    stage_started("gitlab")
    stage_started("binding", repositories=len(spec.repositories))
    gitlab_future = gitlab_token.submit(spec)
    binding_futures = [binding.submit(spec, repo, wait_for=[gitlab_future]) for repo in spec.repositories]
    with transaction() as txn:
        txn.set("spec", spec)
        try:
            stage_started("link")
            link_out = link(spec)
            if any(change.startswith("CreateSecurityGroup") for change in link_out.changes):
                txn.set("created_security_group", link_out.security_group_id)
            link_done = time.monotonic()
            stage_started("eni")
            eni_out = eni(spec, link_out.security_group_id)
            eni_done = time.monotonic()
        except BaseException as exc:
            if not isinstance(exc, Exception):  # the process is being stopped (its worker died, Ctrl-C): no
                txn.set("terminated", True)  # rollback; a rerun or the failed-over run adopts what is tagged
            raise
    finished: dict[int, float] = {}
    for fut in as_completed([gitlab_future, *binding_futures]):
        finished[id(fut)] = time.monotonic()
    gitlab_out = gitlab_future.result()
    bindings = [f.result() for f in binding_futures]
    gitlab_done = finished[id(gitlab_future)]
    return [
        _row("link", [link_out], link_done - t_branch),
        _row("eni", [eni_out], eni_done - link_done),
        _row("gitlab", [gitlab_out], gitlab_done - t_branch),
        _row("binding", bindings, max(finished[id(f)] for f in binding_futures) - gitlab_done),
    ], bindings


@flow(
    name="vpc-build",
    flow_run_name=flow_run_name,
    log_prints=False,
    persist_result=True,
    validate_parameters=False,
    on_running=[run_gate.free_start_slot],
)
def vpc_build(spec: Spec | None = None, start_builds: bool = True, spec_path: str | None = None) -> dict[str, Any]:
    """Converge a spec's VPC build setup and run its builds.

    Args:
        spec: the spec (deployments made by ``acrvpc deploy`` carry it: the UI shows it as a form,
            the run records it); validated here, so a bad field fails the run naming the field.
        start_builds: start a build for every rule with ``build: true`` (default). With
            ``False`` the run only converges the setup.
        spec_path: instead of ``spec``, a YAML spec file (relative to the working directory).

    Returns:
        A summary: ``{"spec", "flow_run_id", "stages": [...], "builds": [...]}`` where each stage
        row has ``stage, result, resources, changes, seconds`` and each build is a
        :class:`~acrvpc.domain.outcomes.BuildOutcome` as a dict.

    Raises:
        SpecError: the spec is invalid (nothing is called).
        PipelineError: a stage failed (its code and fix in the message), or a build failed.
    """
    runlog.ship_our_logs()  # acrvpc.*, tasks.*, flows.* records into this run's logs
    logger = get_run_logger()
    run_id = str(flow_run.get_id() or "")
    summary: dict[str, Any] = {
        "spec": spec_name_of({"spec": spec, "spec_path": spec_path}),
        "flow_run_id": run_id,
        "stages": [],
        "builds": [],
    }
    with reported_run(summary, run_id, logger, "" if isinstance(spec, Spec) else "spec") as report:
        spec = resolve_spec(spec, spec_path)
        report.spec_field = ""  # from here on a failure is a stage's, not the spec's
        summary["spec"] = spec.name
        for line in plan_lines(spec, start_builds):  # the run's first lines: what it is about to do
            logger.info(line)
        _converge_and_build(spec, start_builds, run_id, summary)
        monitor.publish("run.finished", summary=summary)
        fail_if_any_failed([BuildOutcome(**b) for b in summary["builds"]])
    return summary


def _converge_and_build(spec: Spec, start_builds: bool, run_id: str, summary: dict[str, Any]) -> None:
    """The stages in order, each row appended to ``summary["stages"]`` as it ends, builds to ``summary["builds"]``."""
    stages: list[dict[str, Any]] = summary["stages"]
    t0 = time.monotonic()
    stage_started("preflight")
    pre = preflight(spec)
    stages.append(_row("preflight", [pre], time.monotonic() - t0))

    if spec.link.mode == LinkMode.CONSOLE:  # guided pauses: see flows/console_steps.py
        rows, bindings = console_branches(spec)
        stages += [_row(stage, outcomes, seconds) for stage, outcomes, seconds in rows]
    else:
        stages_api, bindings = _api_branches(spec)
        stages += stages_api
    if spec.gitlab.register_webhook:  # GitLab's push webhooks on the routed projects (tasks/webhook_hook.py)
        t_hook = time.monotonic()
        stage_started("webhook")
        stages.append(_row("webhook", [webhook_hook(spec)], time.monotonic() - t_hook))

    if start_builds:
        wanted = [(b, rule) for b in bindings if isinstance(b, BindingOutcome) for rule in b.rules if rule.build]
        t_builds = time.monotonic()
        stage_started("build", builds=len(wanted))
        builds = run_builds(spec, wanted, run_id)
        summary["builds"] = [b.model_dump() for b in builds]
        failed = [b for b in builds if not b.succeeded]
        stages.append(_row("build", builds, time.monotonic() - t_builds, "failed" if failed else "completed"))
    else:
        stages.append(_row("build", [], 0.0, "skipped"))
