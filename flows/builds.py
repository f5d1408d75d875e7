"""Running a flow run's builds: concurrently, every result kept, stopped with the flow run.

Shared by the full pipeline (:mod:`flows.vpc_build`) and the on-push build (:mod:`flows.on_push`).
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

from prefect.futures import PrefectFuture, as_completed, wait

from acrvpc import monitor
from acrvpc.cloud.errors import PipelineError
from acrvpc.domain.outcomes import BindingOutcome, BoundRule, BuildOutcome
from acrvpc.domain.run_summary import done_lines
from acrvpc.domain.spec import Spec
from tasks.build import BuildFailed, build
from tasks.build_watch import forget, publish_build_summary, stop_builds

CANCEL_GRACE_SECONDS = 20.0  # how long a cancelled run waits for its builds to cancel their records


def _outcomes(futures: list[PrefectFuture]) -> list[BuildOutcome]:
    """Every build's outcome, failed ones included; any other error propagates."""
    outcomes = []
    for fut in futures:
        result = fut.result(raise_on_failure=False)
        if isinstance(result, BuildFailed):
            outcomes.append(BuildOutcome(**result.outcome))
        elif isinstance(result, BaseException):
            raise result
        else:
            outcomes.append(result)
    return outcomes


def run_builds(spec: Spec, wanted: list[tuple[BindingOutcome, BoundRule]], flow_run_id: str) -> list[BuildOutcome]:
    """Start one build task per (binding, rule), wait for all, publish the summary artifacts.

    A build that fails does not stop the others. When the flow run is cancelled (the worker's
    SIGTERM, or Ctrl-C) while builds run, each build is told to cancel its record; the run waits up
    to :data:`CANCEL_GRACE_SECONDS` for them, then lets the cancellation through.

    Args:
        spec: the pipeline spec.
        wanted: the builds to run.
        flow_run_id: this flow run's id (scopes the stop signal).

    Returns:
        Every build's outcome, in the order of ``wanted``.

    Raises:
        PipelineError: a build could not be started or followed (its code).
    """
    futures: list[PrefectFuture] = []
    stopped = False
    try:  # submitting inside the try: an interrupt between two submits still stops the builds already started
        for binding, rule in wanted:
            futures.append(build.submit(spec, binding, rule))
        for _ in as_completed(futures):
            pass
    except BaseException:  # TerminationSignal (cancel from the UI), KeyboardInterrupt, ...: stop the builds first
        stopped = True
        stop_builds(flow_run_id)
        wait(futures, timeout=CANCEL_GRACE_SECONDS)
        raise
    finally:
        if not stopped:  # a stopped run keeps its signal set: a build that starts late still stops at once
            forget(flow_run_id)
    outcomes = _outcomes(futures)
    publish_build_summary(spec, outcomes, flow_run_id)
    return outcomes


def fail_if_any_failed(builds: list[BuildOutcome]) -> None:
    """Raise ``BUILD_FAILED`` naming every build that did not succeed (after all of them ended)."""
    failed = [b for b in builds if not b.succeeded]
    if failed:
        names = ", ".join(f"{b.repository} ({b.build_record_id}: {b.status})" for b in failed)
        raise PipelineError(
            f"{len(failed)} of {len(builds)} build(s) did not succeed: {names}",
            code="BUILD_FAILED",
            fix="read the build logs in this run's logs (the failed builds' "
            "last lines are in the run's build summary artifact); fix the "
            "source or Dockerfile and rerun",
        )


def stage_started(stage: str, **data: Any) -> None:
    """Tell local listeners (the CLI) that a stage started."""
    monitor.publish("stage.started", stage=stage, **data)


@contextlib.contextmanager
def reported_run(
    summary: dict[str, Any], run_id: str, logger: Any, spec_field: str = ""
) -> Iterator[types.SimpleNamespace]:
    """Publish the run's summary artifact and last log lines when the ``with`` body ends, either way.

    On success: the summary artifact and what the run did (INFO). On failure: the same with the
    failing stage, code and fix (ERROR), and the exception re-raised as the explained
    :class:`~acrvpc.cloud.errors.PipelineError` where :func:`acrvpc.monitor.explained` makes one.

    Args:
        summary: the run's summary (``spec``, ``flow_run_id``, ``stages``, ``builds``), filled by the body.
        run_id: the flow run's id.
        logger: the run's logger.
        spec_field: the parameter to name when the failure is the spec itself (``spec``), else empty.

    Yields:
        The report's state: set its ``spec_field`` to ``""`` once the spec has been validated, so a
        later failure is not blamed on the spec.
    """
    state = types.SimpleNamespace(spec_field=spec_field)
    try:
        yield state
    except Exception as exc:  # the summary artifact and the last lines say where it failed and the fix
        failure = monitor.failure_of(exc, run_id, state.spec_field)
        monitor.publish_run_summary(summary, failure)
        for line in done_lines(summary, failure):
            logger.error(line)
        error = monitor.explained(exc, failure)
        if error is exc:
            raise
        raise error from exc
    monitor.publish_run_summary(summary)
    for line in done_lines(summary):  # the run's last lines: what it did, where to look next
        logger.info(line)
