"""How a build task reports: run logs, a progress artifact, Prefect events, the CLI's live display.

:class:`BuildWatch` is the build task's :class:`~tasks.build.BuildObserver`. For each build it

* logs every build log line into the task run (``[namespace/name] STAGE message``), and on an
  unsuccessful end one ERROR entry quoting the last 30 lines;
* keeps a progress artifact ``build-<namespace>-<name>-<tag>`` up to date (status, stage, lines,
  elapsed), estimated from the stage (:func:`acrvpc.monitor.estimate_progress`);
* emits ``acrvpc.build.started`` and then ``acrvpc.build.succeeded`` or ``acrvpc.build.failed``
  with the repository as the resource and the image as a related resource;
* publishes the same to local listeners (:mod:`acrvpc.monitor`), which the CLI renders.

Cancellation: a flow run that is cancelled (SIGTERM from the worker, Ctrl-C on ``acrvpc run``)
calls :func:`stop_builds`; every build of that flow run waiting between polls wakes up, cancels
its build record and ends CANCELED (:func:`tasks.build.run_build`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from acrvpc import monitor
from acrvpc.domain.outcomes import BindingOutcome, BoundRule, BuildOutcome
from acrvpc.domain.spec import Spec
from tasks.build_record import TAIL_LINES, BuildObserver, LogLine

_stops: dict[str, threading.Event] = {}
_stops_lock = threading.Lock()


def stop_signal(flow_run_id: str) -> threading.Event:
    """The event that tells the builds of ``flow_run_id`` to stop (one per flow run)."""
    with _stops_lock:
        return _stops.setdefault(flow_run_id, threading.Event())


def stop_builds(flow_run_id: str) -> None:
    """Ask every build of ``flow_run_id`` running in this process to cancel itself."""
    stop_signal(flow_run_id).set()


def forget(flow_run_id: str) -> None:
    """Drop a finished flow run's stop signal."""
    with _stops_lock:
        _stops.pop(flow_run_id, None)


class BuildWatch(BuildObserver):
    """The build task's observer (see the module docstring).

    Args:
        spec: the pipeline spec (instance, region).
        binding: the repository being built.
        rule: the rule being built.
        logger: the task run's logger.
    """

    def __init__(self, spec: Spec, binding: BindingOutcome, rule: BoundRule, logger: Any) -> None:
        self.spec, self.binding, self.rule, self.logger = spec, binding, rule, logger
        self.repository = binding.full_name
        self.image = f"{binding.full_name}:{rule.image_tag}"
        self.record_id = ""
        self.t0 = time.monotonic()
        self.progress = monitor.BuildProgress(
            monitor.slug("build", binding.namespace, binding.name, rule.image_tag), self.image
        )

    def _resource(self) -> dict[str, str]:
        return monitor.repository_resource(self.spec.instance_id, self.repository, self.spec.region)

    def _related(self, image: str) -> list[dict[str, str]]:
        return [monitor.image_resource(image, self.repository)]

    def started(self, record_id: str) -> None:
        self.record_id = record_id
        self.logger.info(
            "[%s] build %s started (rule %s, %s %s)",
            self.repository,
            record_id,
            self.rule.build_rule_id,
            self.rule.push_type,
            self.rule.push_name,
        )
        payload = {
            "build_record_id": record_id,
            "build_rule_id": self.rule.build_rule_id,
            "ref": self.rule.push_name,
            "image": self.image,
            "instance_id": self.spec.instance_id,
        }
        monitor.emit(monitor.BUILD_STARTED, self._resource(), self._related(self.image), payload)
        monitor.publish("build.started", repository=self.repository, image=self.image, build_record_id=record_id)
        self.progress.update(0.0, "started")

    def status(self, status: str, stage: str | None, lines: int) -> None:
        pct = monitor.estimate_progress(status, stage)
        where = f", stage {stage}" if stage else ""
        self.progress.update(pct, f"{status}{where}, {lines} log lines")
        monitor.publish(
            "build.status",
            repository=self.repository,
            image=self.image,
            build_record_id=self.record_id,
            status=status,
            stage=stage,
            progress=pct,
            lines=lines,
            seconds=round(time.monotonic() - self.t0, 1),
        )

    def log(self, line: LogLine) -> None:
        self.logger.info("[%s] %s %s", self.repository, line.stage, line.message)
        monitor.publish(
            "build.log", repository=self.repository, number=line.number, stage=line.stage, message=line.message
        )

    def finished(self, outcome: BuildOutcome) -> None:
        """The build ended: stamp the wall time it took on ``outcome`` (``wall_seconds``), then tell everyone."""
        outcome.wall_seconds = round(time.monotonic() - self.t0, 3)
        self.logger.info(
            "[%s] build %s %s (%s%s, %.1f s)",
            self.repository,
            outcome.build_record_id,
            outcome.status,
            outcome.image,
            f" {outcome.digest}" if outcome.digest else "",
            outcome.wall_seconds,
        )
        if not outcome.succeeded:
            tail = outcome.log_tail[-TAIL_LINES:]
            self.logger.error(
                "[%s] build %s ended %s; its last %d log line(s):\n%s",
                self.repository,
                outcome.build_record_id,
                outcome.status,
                len(tail),
                "\n".join(tail),
            )
        self.progress.update(100.0, f"{outcome.status} in {outcome.wall_seconds:.0f} s")
        payload = {
            "build_record_id": outcome.build_record_id,
            "build_rule_id": outcome.build_rule_id,
            "ref": outcome.ref,
            "image": outcome.image,
            "digest": outcome.digest,
            "status": outcome.status,
            "seconds": outcome.wall_seconds,
            "record_seconds": outcome.seconds,
            "instance_id": self.spec.instance_id,
        }
        if not outcome.succeeded:
            payload["log_tail"] = outcome.log_tail[-10:]
        event = monitor.BUILD_SUCCEEDED if outcome.succeeded else monitor.BUILD_FAILED
        monitor.emit(event, self._resource(), self._related(outcome.image or self.image), payload)
        monitor.publish("build.finished", outcome=outcome.model_dump())


def publish_build_summary(spec: Spec, builds: list[BuildOutcome], flow_run_id: str = "") -> None:
    """The run's build artifacts: a markdown summary and a table, keyed ``<link>-builds`` / ``-build-table``.

    Outside a run (plain-function use) nothing is recorded.
    """
    if not monitor.in_run():
        return
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from acrvpc.cloud.clients import sandbox_url
    from acrvpc.domain.run_summary import build_markdown, build_rows, record_clock_label

    dumped = [b.model_dump() for b in builds]
    clock = record_clock_label(bool(sandbox_url()))
    create_markdown_artifact(
        markdown=build_markdown(spec.name, dumped, flow_run_id, record_clock=clock),
        key=monitor.slug(spec.name, "builds"),
        description=f"builds of {spec.name}: summary",
    )
    if builds:
        create_table_artifact(
            table=build_rows(dumped), key=monitor.slug(spec.name, "build-table"), description=f"builds of {spec.name}"
        )
