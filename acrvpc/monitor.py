"""What a run is doing, told once and delivered to every audience.

Stages and builds report here (:func:`publish`); this module fans each notice out to:

* **local listeners** registered with :func:`listening` in this process: the CLI's live display
  (:mod:`acrvpc.live`) renders stages, build progress and build log lines from them;
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
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

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


def slug(*parts: str) -> str:
    """An artifact key from parts: lower-case letters, digits and dashes (Prefect's rule)."""
    text = "-".join(p for p in parts if p)
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")[:120] or "acrvpc"


def repository_resource(instance_id: str, repository: str, region: str) -> dict[str, str]:
    """The Prefect resource for an ACR repository (``namespace/name`` on an instance)."""
    return {"prefect.resource.id": f"acrvpc.repository.{instance_id}.{repository}",
            "prefect.resource.name": repository, "acrvpc.instance": instance_id, "acrvpc.region": region}


def image_resource(image: str, registry_repository: str) -> dict[str, str]:
    """A related resource for an image ``namespace/name:tag``."""
    return {"prefect.resource.id": f"acrvpc.image.{image}", "prefect.resource.role": "image",
            "prefect.resource.name": image, "acrvpc.repository": registry_repository}


def emit(event: str, resource: dict[str, str], related: list[dict[str, str]] | None = None,
         payload: dict[str, Any] | None = None) -> bool:
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
                self.artifact_id = create_progress_artifact(progress=progress, key=self.key,
                                                            description=f"{self.title}: {description}")
            else:
                update_progress_artifact(self.artifact_id, progress=progress,
                                         description=f"{self.title}: {description}")
            self.last = (progress, description)
        except Exception:  # noqa: BLE001 - observability must not fail a build
            _log.warning("could not update the progress artifact %s", self.key, exc_info=True)
