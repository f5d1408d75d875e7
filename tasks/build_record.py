"""One build record's calls and what they report: the poller and the observer protocol.

:class:`Poller` makes the calls about a build record that exists (status, log pages, the record, the
pushed tag's digest, cancel), each sent once; :class:`BuildObserver` is what a followed build reports
to. The build stage (:func:`tasks.build.run_build`), its task's observer (:mod:`tasks.build_watch`) and
the after-the-fact diagnosis (:func:`tasks.diagnose.read_build`) all build on this module, which imports
none of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any, Literal, TypeVar, overload

from alibabacloud_cr20181201 import models as cr_models
from alibabacloud_cr20181201.client import Client as CrClient

from acrvpc.cloud.errors import (
    CrBusinessError,
    PipelineError,
    check_cr,
    error_code,
    explain,
    is_retryable,
)
from acrvpc.domain.outcomes import BindingOutcome, BuildOutcome
from acrvpc.domain.spec import Spec

T = TypeVar("T")
TERMINAL = {"SUCCESS", "FAILED", "CANCELED", "CANCELLED"}
MAX_MISSED_POLLS = 4  # status polls failing in a row that are tolerated; the next failure is BUILD_POLL_FAILED
TAIL_LINES = 30
MAX_LOG_PAGES = 10_000  # per poll: a guard against a service that ignores Offset

_log = logging.getLogger("acrvpc.build")


class LogLine:
    """One build log line: ``LineNumber``, ``BuildStage``, ``Message``."""

    __slots__ = ("message", "number", "stage")

    def __init__(self, number: int, stage: str, message: str) -> None:
        self.number, self.stage, self.message = number, stage, message

    def __str__(self) -> str:
        return f"{self.stage} {self.message}"

    def __repr__(self) -> str:
        return f"LogLine({self.number}, {self.stage!r}, {self.message!r})"


class BuildObserver:
    """What a followed build reports, in order; this base class ignores everything."""

    def started(self, record_id: str) -> None:
        """CreateBuildRecordByRule answered ``record_id``."""

    def status(self, status: str, stage: str | None, lines: int) -> None:
        """A status poll answered ``status`` (upper case); ``stage`` of the latest log line."""

    def log(self, line: LogLine) -> None:
        """A new build log line (each exactly once, in order)."""

    def finished(self, outcome: BuildOutcome) -> None:
        """The build ended (any status)."""


class Poller:
    """The calls made once the build record exists, each sent once (its client retries it in place).

    No retry loop here (:mod:`acrvpc.cloud.callretry`, the policy): while the build runs, a status poll
    that fails transiently is a missed poll (the last status stands, the log read is skipped, the
    next poll comes after the usual wait); :data:`MAX_MISSED_POLLS` in a row or a fatal error raise
    ``BUILD_POLL_FAILED``. Once the build has ended its status is known: a log page that still fails
    transiently is a gap said in :attr:`gaps` (the build's notes), not a failed run; the cancel and
    the status poll after a refused cancel raise as before.
    """

    def __init__(
        self,
        cr: CrClient,
        spec: Spec,
        binding: BindingOutcome,
        record_id: str,
        sleep: Callable[[float], Any],
        observer: BuildObserver,
    ) -> None:
        self.cr, self.spec, self.binding, self.record_id = cr, spec, binding, record_id
        self.sleep, self.observer = sleep, observer
        self.last_line = 0
        self.lines: list[LogLine] = []
        self.last_status = "PENDING"
        self.missed = 0  # status polls missed in a row
        self.ended = False  # a status poll answered a terminal status: no status poll may be missed any more
        self.gaps: list[str] = []  # reads after the end that failed transiently (the log's last lines)

    @overload
    def call(self, action: str, fn: Callable[[], T], *, missable: Literal[False] = False) -> T: ...
    @overload
    def call(self, action: str, fn: Callable[[], T], *, missable: bool) -> T | None: ...

    def call(self, action: str, fn: Callable[[], T], *, missable: bool = False) -> T | None:
        """``fn()`` once; None for a missed poll (``missable``, transient, not too many in a row)."""
        try:
            result = fn()
        except Exception as exc:
            if missable and self.ended and action == "ListRepoBuildRecordLog" and is_retryable(exc):
                gap = (
                    f"build log lines after line {self.last_line} unavailable: {error_code(exc) or type(exc).__name__}"
                )
                _log.warning("build %s ended; %s (%s): %s", self.record_id, gap, action, explain(exc))
                if gap not in self.gaps:
                    self.gaps.append(gap)
                return None
            if missable and not self.ended and is_retryable(exc) and self.missed < MAX_MISSED_POLLS:
                self.missed += 1
                _log.warning(
                    "%s for build %s failed (missed poll %d of at most %d in a row): %s",
                    action,
                    self.record_id,
                    self.missed,
                    MAX_MISSED_POLLS,
                    explain(exc),
                )
                return None
            raise PipelineError(
                f"{action} for build {self.record_id} of {self.binding.full_name} failed: {explain(exc)}",
                code="BUILD_POLL_FAILED",
                fix=(
                    f"the build may still be running: see build record {self.record_id} in the console "
                    f"(instance {self.spec.instance_id}); rerun to start a new build"
                ),
            ) from exc
        if missable:
            self.missed = 0
        return result

    def status(self) -> str:
        """GetRepoBuildRecordStatus; the last status seen when this poll is missed."""
        body = self.call(
            "GetRepoBuildRecordStatus",
            lambda: check_cr(
                self.cr.get_repo_build_record_status(
                    cr_models.GetRepoBuildRecordStatusRequest(
                        instance_id=self.spec.instance_id, repo_id=self.binding.repo_id, build_record_id=self.record_id
                    )
                ),
                "GetRepoBuildRecordStatus",
            ),
            missable=True,
        )
        if body is not None:
            self.last_status = str(body.build_status or "").strip()
            self.ended = self.last_status.upper() in TERMINAL
        return self.last_status

    def fetch_logs(self) -> int:
        """Fetch the lines after the last one seen (all pages); returns how many were new."""
        new = 0
        if self.missed and not self.ended:
            return new  # the status poll was missed: so is this one
        for _ in range(MAX_LOG_PAGES):
            body = self.call("ListRepoBuildRecordLog", partial(self._log_page, self.last_line), missable=True)
            if body is None:
                break  # missed: the next poll reads from the same line
            fresh = sorted(
                (entry for entry in body.build_record_logs or [] if (entry.line_number or 0) > self.last_line),
                key=lambda e: e.line_number,
            )
            for entry in fresh:
                line = LogLine(int(entry.line_number), entry.build_stage or "", entry.message or "")
                self.last_line = line.number
                self.lines.append(line)
                new += 1
                self.observer.log(line)
            total = as_int(body.total_count)  # a string on the wire
            if not fresh or self.last_line >= total:
                break
        return new

    def _log_page(self, offset: int) -> Any:
        """ListRepoBuildRecordLog: the page of lines after line ``offset``."""
        return check_cr(
            self.cr.list_repo_build_record_log(
                cr_models.ListRepoBuildRecordLogRequest(
                    instance_id=self.spec.instance_id,
                    repo_id=self.binding.repo_id,
                    build_record_id=self.record_id,
                    offset=offset,
                )
            ),
            "ListRepoBuildRecordLog",
        )

    def record(self) -> Any:
        return self.call(
            "GetRepoBuildRecord",
            lambda: check_cr(
                self.cr.get_repo_build_record(
                    cr_models.GetRepoBuildRecordRequest(
                        instance_id=self.spec.instance_id, build_record_id=self.record_id
                    )
                ),
                "GetRepoBuildRecord",
            ),
        )

    def digest(self, tag: str) -> str:
        """GetRepoTag: the pushed image's digest as ``sha256:<hex>``."""
        body = self.call(
            "GetRepoTag",
            lambda: check_cr(
                self.cr.get_repo_tag(
                    cr_models.GetRepoTagRequest(
                        instance_id=self.spec.instance_id, repo_id=self.binding.repo_id, tag=tag
                    )
                ),
                "GetRepoTag",
            ),
        )
        digest = str(body.digest or "").strip()
        return digest if not digest or ":" in digest else f"sha256:{digest}"

    def cancel(self) -> bool:
        """CancelRepoBuildRecord; False when CR refuses because the build already ended."""
        try:
            self.call(
                "CancelRepoBuildRecord",
                lambda: check_cr(
                    self.cr.cancel_repo_build_record(
                        cr_models.CancelRepoBuildRecordRequest(
                            instance_id=self.spec.instance_id,
                            repo_id=self.binding.repo_id,
                            build_record_id=self.record_id,
                        )
                    ),
                    "CancelRepoBuildRecord",
                ),
            )
        except PipelineError as exc:
            if isinstance(exc.__cause__, CrBusinessError):
                _log.warning("build %s: cancel refused (%s)", self.record_id, exc.__cause__.code)
                return False
            raise
        return True


def as_int(value: Any) -> int:
    """A number the API sends as a string (``TotalCount``, ``StartTime``); 0 when absent or not a number."""
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return 0
