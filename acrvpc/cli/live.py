"""The CLI's live view of a run: stages and builds as rich progress rows, build log lines above them.

:func:`live_run` subscribes to :mod:`acrvpc.monitor` for the length of a run and renders

* one row per stage (spinner while it runs, its result and time when it ends);
* one row per build (a bar from the build's estimated progress, its status and stage);
* every build log line as it arrives (``repository  STAGE  message``), printed above the rows;

then, at the end, the same summary tables as ``--json``'s data (:mod:`acrvpc.cli.report`), even when the
run failed (the build outcomes come from the notices, not from the flow's return value).

While it runs, Prefect's own console log lines are held back to WARNING (they still reach the
Prefect API and the UI) so that the display is not torn by them, and the engine's reports of a task or
flow run that failed with an error the pipeline explains (a :class:`~acrvpc.cloud.errors.PipelineError` or a
:class:`~acrvpc.cloud.clients.CredentialsError`: the state message, the traceback) are left to the run's logs:
the command prints that error itself, once. A failure nobody explains (a bug) keeps its traceback.
``quiet`` renders nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from acrvpc import monitor
from acrvpc.cli.report import wall_seconds

_STAGE_STYLE = {"completed": "green", "failed": "red", "skipped": "yellow"}


class LiveView:
    """Renders notices with a :class:`rich.progress.Progress` (see the module docstring).

    Args:
        console: where to draw.
        show_logs: print build log lines as they arrive.
    """

    def __init__(self, console: Console, *, show_logs: bool = True) -> None:
        self.console, self.show_logs = console, show_logs
        self.progress = Progress(
            SpinnerColumn(finished_text="[green]✓[/]"),
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.stages: dict[str, TaskID] = {}
        self.builds: dict[str, TaskID] = {}
        self.outcomes: dict[str, dict[str, Any]] = {}
        self.rows: list[dict[str, Any]] = []
        self.summary: dict[str, Any] | None = None

    def __call__(self, notice: monitor.Notice) -> None:
        handler = getattr(self, "_on_" + notice.kind.replace(".", "_"), None)
        if handler is not None:
            handler(notice.data)

    # stages
    def _on_stage_started(self, data: dict[str, Any]) -> None:
        stage = data["stage"]
        if stage not in self.stages:
            self.stages[stage] = self.progress.add_task(f"[bold]{stage}[/]", total=None, info="running")

    def _on_stage_finished(self, data: dict[str, Any]) -> None:
        stage, result = data["stage"], data.get("result", "completed")
        self.rows.append(dict(data))
        self._on_stage_started(data)
        style = _STAGE_STYLE.get(result, "")
        changes = len(data.get("changes", []))
        info = f"[{style}]{result}[/] · {changes} change(s) · {data.get('seconds', 0):.1f} s"
        self.progress.update(self.stages[stage], total=1, completed=1, info=info)

    # builds
    def _on_build_started(self, data: dict[str, Any]) -> None:
        self.builds[data["build_record_id"]] = self.progress.add_task(
            f"  build {data['image']}", total=100, info="started"
        )

    def _on_build_status(self, data: dict[str, Any]) -> None:
        task = self.builds.get(data["build_record_id"])
        if task is not None:
            stage = f" · {data['stage']}" if data.get("stage") else ""
            self.progress.update(
                task, completed=data["progress"], info=f"{data['status']}{stage} · {data['lines']} line(s)"
            )

    def _on_build_log(self, data: dict[str, Any]) -> None:
        if self.show_logs:
            self.progress.console.print(
                f"[dim]{escape(data['repository'])}[/]  [cyan]{escape(data['stage'])}[/]  {escape(data['message'])}",
                highlight=False,
                markup=True,
                soft_wrap=True,
            )

    def _on_build_finished(self, data: dict[str, Any]) -> None:
        outcome = data["outcome"]
        self.outcomes[outcome["build_record_id"]] = outcome
        task = self.builds.get(outcome["build_record_id"])
        ok = outcome["status"] == "SUCCESS"
        info = f"[{'green' if ok else 'red'}]{outcome['status']}[/] · {wall_seconds(outcome):.1f} s"
        if task is not None:
            self.progress.update(task, completed=100, info=info)

    def _on_drift_detected(self, data: dict[str, Any]) -> None:
        self.progress.console.print(
            f"[yellow]drift[/] on {escape(data['resource_kind'])} "
            f"{escape(data['resource_id'])}: {escape('; '.join(data['differences']))} "
            f"(converging it back to the spec)",
            highlight=False,
        )

    def _on_run_finished(self, data: dict[str, Any]) -> None:
        self.summary = data["summary"]

    def builds_seen(self) -> list[dict[str, Any]]:
        """Every build that ended during the run, as outcome dicts."""
        return list(self.outcomes.values())

    def partial_summary(self, spec_name: str, flow_run_id: str) -> dict[str, Any]:
        """The run summary (as the flow returns it) from what was seen, for a run that failed."""
        if self.summary is not None:
            return self.summary
        return {"spec": spec_name, "flow_run_id": flow_run_id, "stages": self.rows, "builds": self.builds_seen()}


_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


def _not_an_explained_failure(record: logging.LogRecord) -> bool:
    """A console filter: drop the engine's ERROR reports of runs that failed with an explained error.

    The task engine logs ``Finished in state Failed(...)`` (no exception attached), the flow engine
    ``Encountered exception during execution`` with the traceback; the command reports the run's error
    once at the end, and both records still reach the run's logs through the API handler.
    """
    if record.levelno < logging.ERROR or not record.name.startswith(_RUN_LOGGERS):
        return True
    if record.exc_info is None or record.exc_info[1] is None:
        return False  # a failed run's final state: the command says why
    from acrvpc.cloud.clients import CredentialsError
    from acrvpc.cloud.errors import PipelineError

    return not isinstance(record.exc_info[1], (PipelineError, CredentialsError))


@contextlib.contextmanager
def _prefect_console_quiet() -> Iterator[None]:
    """Hold Prefect's console log handlers at WARNING, without the explained failures (the API handler is
    untouched)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    changed: list[tuple[logging.Handler, int]] = []
    for name in ("prefect", *_RUN_LOGGERS, ""):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, PrefectConsoleHandler) and all(handler is not h for h, _ in changed):
                changed.append((handler, handler.level))
                handler.setLevel(max(handler.level, logging.WARNING))
                handler.addFilter(_not_an_explained_failure)
    try:
        yield
    finally:
        for handler, level in changed:
            handler.setLevel(level)
            handler.removeFilter(_not_an_explained_failure)


@contextlib.contextmanager
def live_run(console: Console, *, quiet: bool = False) -> Iterator[LiveView]:
    """Show a run live on ``console`` while the block runs (nothing with ``quiet``).

    Yields:
        The :class:`LiveView`, which keeps the build outcomes and the run summary it saw.
    """
    view = LiveView(console, show_logs=not quiet)
    with monitor.listening(view), _prefect_console_quiet():
        if quiet:
            yield view
            return
        with view.progress:
            yield view
