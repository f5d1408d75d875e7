"""Build stage: start one ACR build by rule, follow it to the end, and stream its log.

:func:`run_build` calls CreateBuildRecordByRule once, then polls GetRepoBuildRecordStatus and
tails ListRepoBuildRecordLog until the build ends (or the spec's timeout cancels it), and
returns a :class:`~acrvpc.domain.outcomes.BuildOutcome`. A FAILED or CANCELED build is returned, not
raised, so the flow keeps every build's result and decides.

Retries and idempotency. CreateBuildRecordByRule takes no ClientToken, so repeating it starts a
second build. The task therefore never lets a retryable error escape once the record exists:

* errors before the record exists (CreateBuildRecordByRule refused, throttled, 5xx) escape
  unchanged, and the task's Prefect retries may safely start the build again;
* after that, each poll is sent once (the client retries its transient failures in place,
  :mod:`acrvpc.cloud.callretry`); a status poll that still fails is a missed poll, and after
  :data:`MAX_MISSED_POLLS` missed in a row, or any fatal or post-build failure, the error is
  raised as a non-retryable ``BUILD_POLL_FAILED`` naming the build record, so Prefect does not
  start a duplicate build.

(The one gap: a CreateBuildRecordByRule whose response is lost after the service accepted it
may leave a build that nobody follows; the API offers nothing to detect it.)

Status strings are compared case-insensitively; SUCCESS, FAILED, CANCELED and CANCELLED end
the build; any other value counts as running (noted once). Log lines are tracked by
``LineNumber``: each poll asks for lines after the highest number seen (``Offset``), pages until
``TotalCount`` is reached, and skips numbers already seen, so no line is lost or repeated.

Polling backs off: the first status poll comes ``build.poll_seconds`` (2 s) after the start, each
wait is 1.5 times the last, up to 30 s (:func:`poll_schedule`). So a build makes at most about 9
status calls in its first minute and 2 in each later minute, however long it runs.

Stopping. A build still running after ``build.timeout_minutes`` is canceled
(``CancelRepoBuildRecord``) and ends TIMEOUT; when ``cancelled()`` turns true (the flow run was
cancelled: :mod:`tasks.build_watch`), the next poll cancels it and it ends CANCELED. After a
SUCCESS, ``GetRepoTag`` reads the pushed image's digest (left empty, with a note, if that fails).

What a followed build reports (start, each status, each log line, the end) goes to a
:class:`BuildObserver`; the task's observer (:class:`tasks.build_watch.BuildWatch`) turns that into
run logs, a progress artifact, Prefect events and the CLI's live display.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from alibabacloud_cr20181201 import models as cr_models
from alibabacloud_cr20181201.client import Client as CrClient
from prefect import get_run_logger, task

from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import RETRY, PipelineError, check_cr, error_code, is_retryable
from acrvpc.domain.outcomes import BindingOutcome, BoundRule, BuildOutcome
from acrvpc.domain.spec import Spec
from tasks.build_record import (  # noqa: F401 - MAX_MISSED_POLLS, LogLine: tasks.build is their import path too
    MAX_MISSED_POLLS,
    TAIL_LINES,
    TERMINAL,
    BuildObserver,
    LogLine,
    Poller,
    as_int,
)

RUNNING = {"PENDING", "BUILDING"}
MAX_POLL_SECONDS = 30.0
POLL_GROWTH = 1.5

_log = logging.getLogger("acrvpc.build")


def _waits(first: float) -> Iterator[float]:
    """The waits between status polls: ``first``, x1.5 each time, at most 30 s."""
    wait = first
    while True:
        yield wait
        wait = min(wait * POLL_GROWTH, MAX_POLL_SECONDS)


def poll_schedule(first: float, until: float) -> list[float]:
    """The waits between status polls over ``until`` seconds (the same schedule :func:`run_build` follows)."""
    waits: list[float] = []
    total = 0.0
    for wait in _waits(first):
        if total >= until:
            return waits
        waits.append(wait)
        total += wait
    raise AssertionError("unreachable")  # pragma: no cover


def start_build(cr: CrClient, spec: Spec, binding: BindingOutcome, rule: BoundRule) -> str:
    """CreateBuildRecordByRule: start a build of one rule.

    Args:
        cr: a Container Registry client.
        spec: the pipeline spec (instance id).
        binding: the repository's binding outcome (repo id).
        rule: the rule to build.

    Returns:
        The build record id.

    Raises:
        CrBusinessError: CR refused (e.g. ``BUILD_RULE_NOT_EXIST``); SDK errors pass through.
    """
    body = check_cr(
        cr.create_build_record_by_rule(
            cr_models.CreateBuildRecordByRuleRequest(
                instance_id=spec.instance_id, repo_id=binding.repo_id, build_rule_id=rule.build_rule_id
            )
        ),
        "CreateBuildRecordByRule",
    )
    return str(body.build_record_id)


def run_build(
    cr: CrClient,
    spec: Spec,
    binding: BindingOutcome,
    rule: BoundRule,
    *,
    observer: BuildObserver | None = None,
    sleep: Callable[[float], Any] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    cancelled: Callable[[], bool] = lambda: False,
    start: Callable[[], str] | None = None,
    explain_failure: Callable[[BuildOutcome], BuildOutcome] | None = None,
) -> BuildOutcome:
    """Start a build of ``rule`` and follow it to the end.

    Args:
        cr: a Container Registry client (from :mod:`acrvpc.cloud.clients`).
        spec: the pipeline spec: instance id, ``build.poll_seconds`` and ``build.timeout_minutes``.
        binding: the repository's binding outcome.
        rule: the bound rule to build.
        observer: told of the start, each status, each new log line (exactly once, in order) and
            the end.
        sleep: how to wait between polls (tests pass one that advances a sandbox clock; the task
            passes one that wakes up when the flow run is cancelled).
        clock: monotonic seconds, for the timeout.
        cancelled: whether to stop; checked after every wait.
        start: how to get the build record to follow (default :func:`start_build`); the task passes
            one that adopts the record an earlier attempt of the same flow run started (crash failover).
        explain_failure: called with the outcome of a build that did not succeed, before the observer is
            told it ended; returns it with ``why`` set (the task passes :func:`tasks.diagnose.explain_build`).

    Returns:
        The outcome: status SUCCESS, FAILED, CANCELED (canceled by request, or by someone else) or
        TIMEOUT (canceled after ``build.timeout_minutes``), image, digest, duration, line count and
        the last 30 lines.

    Raises:
        PipelineError: the build could not be started (CR's code), or ``BUILD_POLL_FAILED`` when
            following it kept failing (not retryable: a retry would start a second build).
    """
    observer = BuildObserver() if observer is None else observer
    started = clock()
    record_id = start() if start is not None else start_build(cr, spec, binding, rule)
    observer.started(record_id)
    changes = [f"CreateBuildRecordByRule {record_id}"]
    notes: list[str] = []
    poller = Poller(cr, spec, binding, record_id, sleep, observer)
    deadline = started + spec.build.timeout_minutes * 60
    waits = _waits(spec.build.poll_seconds)
    unknown: set[str] = set()
    while True:
        if cancelled():
            status = _stop(poller, record_id, changes, notes, "CANCELED", "canceled: the flow run was cancelled")
            break
        raw = poller.status()
        status = raw.upper()
        poller.fetch_logs()
        observer.status(status, poller.lines[-1].stage if poller.lines else None, len(poller.lines))
        if status in TERMINAL:
            status = "CANCELED" if status == "CANCELLED" else status
            break
        if status not in RUNNING and status not in unknown:
            unknown.add(status)
            notes.append(f"unknown build status {raw!r} treated as running")
            _log.warning("build %s of %s: unknown status %r, treated as running", record_id, binding.full_name, raw)
        remaining = deadline - clock()
        if remaining <= 0:
            status = _stop(
                poller,
                record_id,
                changes,
                notes,
                "TIMEOUT",
                f"canceled after the {spec.build.timeout_minutes:g}-minute timeout",
            )
            break
        sleep(min(next(waits), remaining))
    poller.fetch_logs()
    notes.extend(poller.gaps)
    try:
        record = poller.record()
    except PipelineError as exc:  # the status is known: a transient failure here costs details, not the run
        if exc.__cause__ is None or not is_retryable(exc.__cause__):
            raise
        record = None
        notes.append(f"build record details unavailable: {error_code(exc.__cause__)} (GetRepoBuildRecord)")
    digest = ""
    if status == "SUCCESS":
        try:
            digest = poller.digest(_tag_of(record, rule))
        except PipelineError as exc:
            cause = error_code(exc.__cause__) if exc.__cause__ is not None else None
            notes.append(f"image digest unavailable: {cause or exc.code} (GetRepoTag)")
    outcome = _outcome(
        spec, binding, rule, record_id, status, record, clock() - started, poller, changes, notes, digest
    )
    if explain_failure is not None and not outcome.succeeded:
        outcome = explain_failure(outcome)
    observer.finished(outcome)
    return outcome


def _tag_of(record: Any, rule: BoundRule) -> str:
    return (record.image.image_tag if record is not None and record.image else None) or rule.image_tag


def _stop(poller: Poller, record_id: str, changes: list[str], notes: list[str], ending: str, why: str) -> str:
    """Cancel a running build; ``ending`` (TIMEOUT or CANCELED) unless it ended meanwhile."""
    if poller.cancel():
        changes.append(f"CancelRepoBuildRecord {record_id}")
        notes.append(why)
        return ending
    status = poller.status().upper()  # the cancel was refused: the build has just ended
    status = "CANCELED" if status == "CANCELLED" else status
    return status if status in TERMINAL else ending


def _outcome(
    spec: Spec,
    binding: BindingOutcome,
    rule: BoundRule,
    record_id: str,
    status: str,
    record: Any,
    elapsed: float,
    poller: Poller,
    changes: list[str],
    notes: list[str],
    digest: str,
) -> BuildOutcome:
    image_model = record.image if record is not None else None
    ns = (image_model.repo_namespace_name if image_model else None) or binding.namespace
    name = (image_model.repo_name if image_model else None) or binding.name
    tag = (image_model.image_tag if image_model else None) or rule.image_tag
    image = f"{ns}/{name}:{tag}"
    start_ms = as_int(record.start_time) if record is not None else 0
    end_ms = as_int(record.end_time) if record is not None else 0
    seconds = (end_ms - start_ms) / 1000 if start_ms and end_ms >= start_ms else elapsed
    return BuildOutcome(
        repository=binding.full_name,
        repo_id=binding.repo_id,
        build_rule_id=rule.build_rule_id,
        build_record_id=record_id,
        status=status,
        image=image,
        seconds=round(seconds, 3),
        digest=digest,
        push_type=rule.push_type,
        ref=rule.push_name,
        log_lines=len(poller.lines),
        log_tail=[str(line) for line in poller.lines[-TAIL_LINES:]],
        resources={"build": record_id, "image": image},
        changes=changes,
        notes=notes,
    )


class BuildFailed(PipelineError):
    """A build that ended other than SUCCESS. ``outcome`` holds its :class:`BuildOutcome` as a dict.

    The task raises it (rather than returning the outcome) so the task run is Failed: a flow run
    retried from the Prefect UI then builds it again, while builds that succeeded stay cached.
    """

    def __init__(self, outcome: BuildOutcome) -> None:
        super().__init__(
            f"build {outcome.build_record_id} of {outcome.image} ended {outcome.status}",
            code="BUILD_FAILED",
            fix="read the build log in this task run's logs",
        )
        self.outcome = outcome.model_dump()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_build_failed, (self.outcome,))


def _rebuild_build_failed(outcome: dict[str, Any]) -> BuildFailed:
    return BuildFailed(BuildOutcome(**outcome))


@task(
    name="build-start",
    task_run_name="build-start {binding.namespace}/{binding.name}:{rule.image_tag}",
    persist_result=True,
)
def build_started(spec: Spec, binding: BindingOutcome, rule: BoundRule) -> str:
    """CreateBuildRecordByRule as a task of its own, its record id persisted with the run's results.

    When the flow run's host dies while the build runs and the same flow run resumes elsewhere
    (crash failover, ``acrvpc automations --failover``), this task comes back Cached and the build
    task follows the build already running instead of starting a second one.
    """
    return start_build(cloud.cloud_clients(spec).cr, spec, binding, rule)


def _start_once(cr: CrClient, spec: Spec, binding: BindingOutcome, rule: BoundRule) -> str:
    """The build record of this flow run for ``rule``: the one an earlier attempt started while it is
    running or succeeded, else a new one (a failed or canceled build is built again, as a retry should)."""
    from prefect.transactions import CommitMode, transaction

    # EAGER: the record id is written to result storage as soon as the build started, not when this
    # task commits (a nested task's result otherwise waits for its parent's transaction, lost with a dead host)
    with transaction(commit_mode=CommitMode.EAGER):
        state = build_started(spec, binding, rule, return_state=True)
    record_id = state.result()
    if state.name != "Cached":
        return record_id
    status = Poller(cr, spec, binding, record_id, time.sleep, BuildObserver()).status().upper()
    if status in TERMINAL and status != "SUCCESS":
        with transaction(commit_mode=CommitMode.EAGER):
            return build_started.with_options(refresh_cache=True)(spec, binding, rule)
    _log.info(
        "build %s of %s was started by an earlier attempt of this flow run (%s): following it",
        record_id,
        binding.full_name,
        status,
    )
    return record_id


@task(name="build", task_run_name="build {binding.namespace}/{binding.name}:{rule.image_tag}", **RETRY)
def build(spec: Spec, binding: BindingOutcome, rule: BoundRule) -> BuildOutcome:
    """Run one build of a bound rule, streaming its log into the task run's logs.

    While it runs, a progress artifact (``build-<namespace>-<name>-<tag>``) follows it, and the
    events ``acrvpc.build.started`` and ``acrvpc.build.succeeded`` / ``acrvpc.build.failed`` are
    emitted (:class:`tasks.build_watch.BuildWatch`). When the flow run is cancelled, the build is
    canceled too (``CancelRepoBuildRecord``) at its next poll. A build that fails is classified and, for
    a network or GitLab-auth failure, its path diagnosed at once, read-only (:mod:`tasks.diagnose`): the
    outcome's ``why``, the run's logs and an ``acrvpc.build.diagnosed`` event say which hop broke.

    Args:
        spec: the pipeline spec.
        binding: the repository's binding outcome.
        rule: the rule to build (one of ``binding.rules``).

    Returns:
        The :class:`~acrvpc.domain.outcomes.BuildOutcome` of a build that succeeded.

    Raises:
        BuildFailed: the build ended FAILED, CANCELED or TIMEOUT (not retried; its outcome attached).
        PipelineError: the build could not be started or followed (see :func:`run_build`).
    """
    from prefect.runtime import flow_run

    from tasks.build_watch import BuildWatch, stop_signal

    watch = BuildWatch(spec, binding, rule, get_run_logger())
    stop = stop_signal(str(flow_run.get_id() or ""))
    cr = cloud.cloud_clients(spec).cr
    from tasks.diagnose import explain_build

    logger = watch.logger
    outcome = run_build(
        cr,
        spec,
        binding,
        rule,
        observer=watch,
        sleep=stop.wait,
        cancelled=stop.is_set,
        start=lambda: _start_once(cr, spec, binding, rule),
        explain_failure=lambda failed: explain_build(spec, failed, logger=logger),
    )
    if not outcome.succeeded:
        raise BuildFailed(outcome)
    return outcome
