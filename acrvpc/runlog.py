"""Our modules' log records in the run's logs (the Prefect UI).

Prefect ships to its API only the records of its run loggers (``get_run_logger()``) and of the
loggers named in ``PREFECT_LOGGING_EXTRA_LOGGERS``, a setting read when ``prefect`` is imported:
too late to set from our code in a worker's flow-run process. So the records of ``acrvpc.*``,
``tasks.*`` and ``flows.*`` (in-place retries, missed build polls, unknown build statuses, rate
limit fallbacks) would stay out of the run.

:func:`ship_our_logs`, called first thing by every flow, gives those loggers Prefect's API log
handlers (the handlers of the ``prefect.extra`` logger, i.e. ``logging.yml``'s ``api`` handler or
the user's own logging config) at INFO, through :class:`RunOnlyHandler`, which passes on only the
records emitted inside a flow or task run (outside one, Prefect's handler would warn for each
record, e.g. in the CLI after a run). It is idempotent, and leaves alone:

* propagation (``caplog`` and the root logger's handlers still see every record);
* the console: the loggers' level becomes INFO, so INFO records now also reach the root logger's
  console handler. Inside a run, ``acrvpc run``/``demo`` hold Prefect's console handlers at
  WARNING (:mod:`acrvpc.cli.live`), and a worker's console shows them as it shows the run's own INFO
  lines; outside a run, Prefect's console handler drops them as before (:func:`quiet_outside_runs`,
  a filter added to it);
* a more verbose level someone set (DEBUG stays DEBUG);
* loggers that already ship through ``PREFECT_LOGGING_EXTRA_LOGGERS`` (no record is sent twice).
"""

from __future__ import annotations

import logging

OUR_LOGGERS = ("acrvpc", "tasks", "flows")
LEVEL = logging.INFO


def _in_a_run(record: logging.LogRecord) -> bool:
    if getattr(record, "flow_run_id", None):
        return True
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


class RunOnlyHandler(logging.Handler):
    """Hands the records emitted inside a run to Prefect's API log handlers; drops the others.

    Args:
        targets: Prefect's API handlers (those of the ``prefect.extra`` logger).
        attached_at: the logger this handler is attached to (to skip records a logger below it
            already ships through the same handlers).
    """

    def __init__(self, targets: list[logging.Handler], attached_at: str) -> None:
        super().__init__(LEVEL)
        self.targets = targets
        self.attached_at = attached_at

    def _shipped_below(self, record: logging.LogRecord, target: logging.Handler) -> bool:
        name = record.name
        while name and name != self.attached_at:
            if target in logging.getLogger(name).handlers:
                return True
            name = name.rpartition(".")[0]
        return False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if not _in_a_run(record):
                return
            for target in self.targets:
                if record.levelno >= target.level and not self._shipped_below(record, target):
                    target.handle(record)
        except Exception:  # noqa: BLE001 - logging must never break the run
            self.handleError(record)


def _ours(record: logging.LogRecord) -> bool:
    return record.name.split(".", 1)[0] in OUR_LOGGERS


def quiet_outside_runs(record: logging.LogRecord) -> bool:
    """A console filter: our records below WARNING emitted outside a run stay off the console (as before)."""
    return record.levelno >= logging.WARNING or not _ours(record) or _in_a_run(record)


def ship_our_logs() -> None:
    """Send the records of ``acrvpc.*``, ``tasks.*`` and ``flows.*`` to the current run's logs (idempotent).

    Call it at the start of each flow run (every flow of ``flows/`` does).
    """
    targets = list(logging.getLogger("prefect.extra").handlers)
    if not targets:  # a logging config without the ``prefect.extra`` handlers: Prefect's API handler
        from prefect.logging.handlers import APILogHandler

        targets = [APILogHandler()]
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and quiet_outside_runs not in handler.filters:
            handler.addFilter(quiet_outside_runs)
    for name in OUR_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level > LEVEL:
            logger.setLevel(LEVEL)
        if any(isinstance(h, RunOnlyHandler) for h in logger.handlers):
            continue
        missing = [t for t in targets if t not in logger.handlers]  # already there via EXTRA_LOGGERS
        if missing:
            logger.addHandler(RunOnlyHandler(missing, name))
