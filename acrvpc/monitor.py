"""What a run is doing, told once and delivered to every audience.

Stages and builds report here (:func:`publish`); this module fans each notice out to:

* **local listeners** registered with :func:`listening` in this process: the CLI's live display
  (:mod:`acrvpc.cli.live`) renders stages, build progress and build log lines from them;
* **Prefect events** (:func:`emit`), only inside a flow or task run: ``acrvpc.build.started``,
  ``acrvpc.build.succeeded``, ``acrvpc.build.failed`` and ``acrvpc.drift.detected``, with the
  repository and the image as resources, for Prefect automations (see ``docs/observability.md``);
* **artifacts**: :class:`BuildProgress` keeps one progress artifact per build up to date.

Nothing secret passes through here: notices carry resource ids, names, statuses and build log
lines (the build log is the service's output; the pipeline never puts a credential in a build).
A listener that raises is logged and dropped from that notice; it never fails the run.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from acrvpc.domain.run_summary import run_markdown, slug

_log = logging.getLogger("acrvpc.monitor")

BUILD_STARTED = "acrvpc.build.started"
BUILD_SUCCEEDED = "acrvpc.build.succeeded"
BUILD_FAILED = "acrvpc.build.failed"
DRIFT_DETECTED = "acrvpc.drift.detected"


@dataclass(frozen=True)
class Notice:
    """One thing that happened: ``kind`` (e.g. ``stage.finished``, ``build.log``) and its data."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[Notice], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[Listener]:
    """Deliver every notice published in this process to ``listener`` while the block runs."""
    with _lock:
        _listeners.append(listener)
    try:
        yield listener
    finally:
        with _lock:
            _listeners.remove(listener)


def publish(kind: str, /, **data: Any) -> None:
    """Tell the local listeners (if any) that ``kind`` happened."""
    with _lock:
        targets = list(_listeners)
    notice = Notice(kind, data)
    for listener in targets:
        try:
            listener(notice)
        except Exception:  # noqa: BLE001 - a display must never fail the run
            _log.exception("monitor listener failed on %s", kind)


def in_run() -> bool:
    """Whether this code runs inside a Prefect flow or task run (so events and artifacts are recorded)."""
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def repository_resource(instance_id: str, repository: str, region: str) -> dict[str, str]:
    """The Prefect resource for an ACR repository (``namespace/name`` on an instance)."""
    return {
        "prefect.resource.id": f"acrvpc.repository.{instance_id}.{repository}",
        "prefect.resource.name": repository,
        "acrvpc.instance": instance_id,
        "acrvpc.region": region,
    }


def image_resource(image: str, registry_repository: str) -> dict[str, str]:
    """A related resource for an image ``namespace/name:tag``."""
    return {
        "prefect.resource.id": f"acrvpc.image.{image}",
        "prefect.resource.role": "image",
        "prefect.resource.name": image,
        "acrvpc.repository": registry_repository,
    }


def emit(
    event: str,
    resource: dict[str, str],
    related: list[dict[str, str]] | None = None,
    payload: dict[str, Any] | None = None,
) -> bool:
    """Emit a Prefect event when inside a run; False (and nothing sent) outside one.

    Prefect adds the flow run and task run as related resources, so an automation can link back.
    """
    if not in_run():
        return False
    from prefect.events import emit_event

    try:
        emit_event(event=event, resource=resource, related=related or [], payload=payload or {})
    except Exception:  # noqa: BLE001 - observability must not fail a build
        _log.warning("could not emit %s", event, exc_info=True)
        return False
    return True


# Progress of a build, estimated from its status and the stage of its latest log line. ACR gives no
# percentage; these are the documented stages in their order (unknown stages keep the last value).
STAGE_PROGRESS = {"GIT_CLONE": 10.0, "BUILD": 30.0, "PUSH": 90.0}
PENDING_PROGRESS = 5.0


def estimate_progress(status: str, stage: str | None) -> float:
    """0..100 for a build in ``status`` whose latest log line is from ``stage``."""
    status = status.upper()
    if status in {"SUCCESS", "FAILED", "CANCELED", "CANCELLED", "TIMEOUT"}:
        return 100.0
    if stage and stage.upper() in STAGE_PROGRESS:
        return STAGE_PROGRESS[stage.upper()]
    return PENDING_PROGRESS if status == "PENDING" or not stage else 0.0


class BuildProgress:
    """One build's progress artifact, created when the build starts and updated as it moves.

    Args:
        key: the artifact key (the same for every run of the same build target, so the Artifacts
            page shows its latest progress).
        title: what the artifact describes (``namespace/name:tag``).
    """

    def __init__(self, key: str, title: str) -> None:
        self.key, self.title = key, title
        self.artifact_id: Any = None
        self.last: tuple[float, str] | None = None

    def update(self, progress: float, description: str) -> None:
        """Create or update the artifact; nothing outside a run or when nothing changed."""
        if not in_run() or self.last == (progress, description):
            return
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        try:
            if self.artifact_id is None:
                self.artifact_id = create_progress_artifact(
                    progress=progress, key=self.key, description=f"{self.title}: {description}"
                )
            else:
                update_progress_artifact(
                    self.artifact_id, progress=progress, description=f"{self.title}: {description}"
                )
            self.last = (progress, description)
        except Exception:  # noqa: BLE001 - observability must not fail a build
            _log.warning("could not update the progress artifact %s", self.key, exc_info=True)


# The run summary artifact (``<spec>-run``): the CLI's stage table, with links to the stages' artifacts.
_STAGE_OF_KEY = (
    ("preflight-", "preflight"),
    ("drift-", "link"),
    ("console-link-", "link"),
    ("console-account-", "gitlab"),
    ("teardown-", "teardown"),
    ("build-", "build"),
)


def stage_of_artifact(key: str, spec_name: str) -> tuple[str, str]:
    """(stage, link label) for one of this pipeline's artifact keys."""
    if key == slug(spec_name, "builds"):
        return "build", "summary"
    if key == slug(spec_name, "build-table"):
        return "build", "table"
    for prefix, stage in _STAGE_OF_KEY:
        if key.startswith(prefix):
            return stage, f"progress {key[len(prefix) :]}" if stage == "build" else prefix.rstrip("-")
    return "other", key


def artifact_links(flow_run_id: str, spec_name: str) -> dict[str, list[tuple[str, str]]]:
    """Stage -> (label, UI link) of every keyed artifact of a flow run (empty when the API cannot be read).

    The links are relative (``../../artifacts/artifact/<id>``): the UI shows the summary on the run's page
    and on the artifact's own page, both two levels below the UI's root, so they work behind any base URL.
    """
    if not flow_run_id:
        return {}
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    try:
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]))
            )
    except Exception:  # noqa: BLE001 - the summary is published without links
        _log.warning("could not list the artifacts of flow run %s", flow_run_id, exc_info=True)
        return {}
    links: dict[str, list[tuple[str, str]]] = {}
    latest: dict[str, Any] = {}
    for artifact in artifacts:
        if artifact.key and (artifact.key not in latest or artifact.created > latest[artifact.key].created):
            latest[artifact.key] = artifact
    for key in sorted(latest):
        if key == slug(spec_name, "run"):
            continue
        stage, label = stage_of_artifact(key, spec_name)
        links.setdefault(stage, []).append((label, f"../../artifacts/artifact/{latest[key].id}"))
    return links


def failed_task_runs(flow_run_id: str) -> list[tuple[str, str]]:
    """(name, state message) of a flow run's failed task runs, oldest first (empty when unreadable)."""
    if not flow_run_id:
        return []
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    try:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)])),
                task_run_filter=TaskRunFilter(
                    state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.FAILED]))
                ),
            )
    except Exception:  # noqa: BLE001
        _log.warning("could not read the failed task runs of flow run %s", flow_run_id, exc_info=True)
        return []
    never = datetime.min.replace(tzinfo=UTC)
    runs.sort(key=lambda r: r.start_time or r.expected_start_time or r.created or never)
    return [(r.name, (r.state.message or "") if r.state else "") for r in runs]


def failure_of(exc: BaseException, flow_run_id: str = "", stage: str = "") -> dict[str, str]:
    """What ended a run, for its summary: ``stage`` (the failed task run's name), ``code``, ``message``, ``fix``.

    Args:
        exc: the error the flow raised.
        flow_run_id: the flow run (its failed task runs name the stage and subject).
        stage: the stage the flow was in, when no task run failed (e.g. a console step or the spec).
    """
    from acrvpc.cloud.errors import FIXES, PipelineError, error_code

    failed = failed_task_runs(flow_run_id)
    code = error_code(exc) or type(exc).__name__
    fix = str(getattr(exc, "fix", "") or FIXES.get(code, ""))
    found = exc.detail if isinstance(exc, PipelineError) else getattr(exc, "message", None)  # an SDK's: its message
    message = str(found) if found and str(found) != "None" else str(exc)
    message = message.removeprefix(f"[{code}] ").removesuffix(f" Fix: {fix}." if fix else "\0")
    if type(exc).__name__ == "SpecError":
        stage = stage or "spec"
    where = failed[0][0] if failed else stage
    if len(failed) > 1:
        where += f" (and {len(failed) - 1} more: {', '.join(name for name, _ in failed[1:4])})"
    return {"stage": where, "code": str(code), "message": message[:1500], "fix": fix}


def explained(exc: BaseException, failure: dict[str, str]) -> BaseException:
    """The error a failed run ends with: a provider's error (an SDK exception with a code) becomes a
    :class:`~acrvpc.cloud.errors.PipelineError` naming the stage, the code and the fix, so the run's state message
    (the UI's Details tab) says what to do; any other error is returned as it is."""
    from acrvpc.cloud.errors import PipelineError, error_code

    if isinstance(exc, PipelineError) or not error_code(exc):
        return exc
    where = f"{failure['stage']}: " if failure.get("stage") else ""
    return PipelineError(f"{where}{failure['message']}", code=failure["code"], fix=failure.get("fix", ""))


def publish_run_summary(summary: dict[str, Any], failure: dict[str, str] | None = None) -> None:
    """Publish the run's summary artifact ``<spec>-run`` (:func:`acrvpc.domain.run_summary.run_markdown`); nothing outside a run."""
    if not in_run():
        return
    from prefect.artifacts import create_markdown_artifact

    spec_name = summary.get("spec", "")
    try:
        markdown = run_markdown(summary, artifact_links(summary.get("flow_run_id", ""), spec_name), failure)
        description = f"Run of {spec_name}: completed"
        if failure:  # the run page's Artifacts tab shows the description on the artifact's card
            description = (
                f"Run of {spec_name}: failed at {failure.get('stage') or '?'}: {failure.get('code')}. "
                f"Fix: {failure.get('fix') or 'see the summary'}"
            )
        create_markdown_artifact(markdown=markdown, key=slug(spec_name, "run"), description=description)
    except Exception:  # noqa: BLE001 - observability must not change the run's outcome
        _log.warning("could not publish the run summary of %s", spec_name, exc_info=True)
