"""The CR build simulation: a build record's script, derived from the sandbox clock.

A build is decided when it starts (:func:`plan_build`): which stages run, how long each takes,
every log line with the sandbox time it appears, and how it ends. Reading a record later
(:meth:`BuildRecord.status`, :meth:`BuildRecord.visible_logs`) only compares that script with
``world.clock.now()``: no threads, and a test can jump ahead with ``world.clock.advance``.

Timeline: ``PENDING`` for ``pending_seconds``, then ``BUILDING`` through the configured stages
(``GIT_CLONE``, ``BUILD``, ``PUSH`` by default), then ``SUCCESS``. A build whose GitLab is not
reachable over the build network ends ``FAILED`` at the end of ``GIT_CLONE``; a repository listed
in ``cr.builds.fail_repos`` ends ``FAILED`` at the end of ``BUILD``; one in ``cr.builds.hang_repos``
stays in ``BUILD`` for ever (until canceled). A canceled build keeps the lines it had printed and
adds a final one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

PENDING, BUILDING, SUCCESS, FAILED, CANCELED = "PENDING", "BUILDING", "SUCCESS", "FAILED", "CANCELED"
TERMINAL = {SUCCESS, FAILED, CANCELED}

DEFAULT_STAGES = [{"name": "GIT_CLONE", "seconds": 3}, {"name": "BUILD", "seconds": 12}, {"name": "PUSH", "seconds": 3}]


@dataclass
class LogLine:
    at: float  # sandbox seconds after the record was created
    stage: str
    message: str


@dataclass
class BuildRecord:
    build_record_id: str
    instance_id: str
    repo_id: str
    build_rule_id: str
    namespace: str
    name: str
    image_tag: str
    created_at: float  # sandbox seconds
    start_ms: int  # epoch ms at creation
    ends_at: float  # seconds after creation when the build ends (unless canceled)
    final_status: str  # SUCCESS | FAILED
    lines: list[LogLine] = field(default_factory=list)
    canceled_at: float | None = None  # seconds after creation

    def elapsed(self, now: float) -> float:
        return now - self.created_at

    def status(self, now: float, pending_seconds: float) -> str:
        if self.canceled_at is not None:
            return CANCELED
        elapsed = self.elapsed(now)
        if elapsed >= self.ends_at:
            return self.final_status
        return PENDING if elapsed < pending_seconds else BUILDING

    def end_offset(self, now: float) -> float | None:
        """Seconds after creation when the build ended, or ``None`` while it runs."""
        if self.canceled_at is not None:
            return self.canceled_at
        return self.ends_at if self.elapsed(now) >= self.ends_at else None

    def end_ms(self, now: float) -> int:
        """EndTime in epoch ms; 0 while the build runs."""
        end = self.end_offset(now)
        return 0 if end is None else self.start_ms + int(round(end * 1000))

    def visible_logs(self, now: float) -> list[LogLine]:
        elapsed = self.elapsed(now)
        return [line for line in self.lines if line.at <= elapsed]

    def cancel(self, now: float) -> None:
        elapsed = self.elapsed(now)
        self.lines = [line for line in self.lines if line.at <= elapsed]
        stage = self.lines[-1].stage if self.lines else "GIT_CLONE"
        self.lines.append(LogLine(elapsed, stage, "build canceled by user request"))
        self.canceled_at = elapsed


def _digest(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def _stage_script(stage: str, ctx: dict[str, Any], failure: tuple[str, list[str]] | None) -> tuple[list[str], bool]:
    """The messages of one stage, and whether the build fails in it."""
    low = stage.lower()
    fails = failure is not None and failure[0] == stage
    if stage == "GIT_CLONE":
        lines = [
            "fetch stage begin",
            f"git clone --depth 1 --branch {ctx['ref']} {ctx['clone_url']} /workspace",
            "Cloning into '/workspace'...",
        ]
        if fails:
            assert failure is not None
            lines += [*failure[1], "fetch stage failed"]
            return lines, True
        objects = 180 + int(ctx["seed"][:2], 16)
        lines += [
            f"remote: Enumerating objects: {objects}, done.",
            f"Receiving objects: 100% ({objects}/{objects}), done.",
            f"HEAD is now at {ctx['seed'][:7]} Merge branch 'feature' into '{ctx['ref']}'",
            "fetch stage end",
        ]
        return lines, False
    if stage == "BUILD":
        lines = [
            "build stage begin",
            f"Dockerfile: {ctx['dockerfile']}, platforms: {ctx['platforms']}",
            "Step 1/6 : FROM maven:3.9-eclipse-temurin-17 AS build",
            "Step 2/6 : WORKDIR /src",
            "Step 3/6 : COPY . .",
            "Step 4/6 : RUN mvn -B -q package -DskipTests",
        ]
        if fails:
            assert failure is not None
            lines += [
                *failure[1],
                "[ERROR] Failed to execute goal org.apache.maven.plugins:maven-compiler-plugin:3.13.0:compile "
                "(default-compile): Compilation failure",
                'ERROR: process "/bin/sh -c mvn -B -q package -DskipTests" did not complete successfully: exit code: 1',
                "build stage failed",
            ]
            return lines, True
        lines += [
            "Step 5/6 : FROM eclipse-temurin:17-jre",
            "Step 6/6 : COPY --from=build /src/target/app.jar /app.jar",
            f"Successfully built {ctx['seed'][8:20]}",
            f"Successfully tagged {ctx['image']}",
            "build stage end",
        ]
        return lines, False
    if stage == "PUSH":
        return [
            "push stage begin",
            f"The push refers to repository [{ctx['registry']}/{ctx['namespace']}/{ctx['name']}]",
            f"pushing layer sha256:{ctx['seed'][20:32]}",
            f"pushing layer sha256:{ctx['seed'][32:44]}",
            f"{ctx['tag']}: digest: sha256:{ctx['seed']} size: 1789",
            "push stage end",
        ], False
    extra = failure[1] if fails and failure else []
    return [f"{low} stage begin", *extra, f"{low} stage end"], fails


HANG_SECONDS = 10.0**9  # a hanging build's BUILD stage: it never ends unless canceled


def hanging(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stages of a build that hangs: the same, with the BUILD stage (else the last) never ending."""
    stages = [dict(s) for s in (stages or DEFAULT_STAGES)]
    names = [s["name"] for s in stages]
    at = names.index("BUILD") if "BUILD" in names else len(stages) - 1
    stages[at]["seconds"] = HANG_SECONDS
    return stages


def image_digest(record: BuildRecord) -> str:
    """The pushed manifest's digest (bare hex), the same one the PUSH stage's log line prints."""
    return _digest(record.build_record_id)


def image_digest_of(digest: str) -> str:
    """An image id for a digest (the config blob's hash: any stable 64 hex digits will do)."""
    return _digest(f"config:{digest}")


def plan_build(
    record: BuildRecord,
    stages: list[dict[str, Any]],
    pending_seconds: float,
    ctx: dict[str, Any],
    failure: tuple[str, list[str]] | None,
) -> BuildRecord:
    """Fill in a record's log script and end.

    Args:
        record: the new record (its ``lines``, ``ends_at`` and ``final_status`` are set here).
        stages: ``[{"name": "GIT_CLONE", "seconds": 3}, ...]`` in order.
        pending_seconds: how long the build waits in ``PENDING``.
        ctx: text for the log lines (``clone_url``, ``ref``, ``image``, ``registry``, ...).
        failure: ``(stage, extra log lines)`` when the build fails in that stage, else ``None``.
    """
    ctx = {
        **ctx,
        "seed": _digest(record.build_record_id),
        "namespace": record.namespace,
        "name": record.name,
        "tag": record.image_tag,
    }
    start = float(pending_seconds)
    record.final_status = SUCCESS
    for stage in stages or DEFAULT_STAGES:
        name, seconds = str(stage["name"]), float(str(stage.get("seconds", 1)))
        messages, failed = _stage_script(name, ctx, failure)
        n = len(messages)
        for k, message in enumerate(messages):
            at = start + (seconds * k / (n - 1) if n > 1 else seconds)
            record.lines.append(LogLine(at, name, message))
        start += seconds
        if failed:
            record.final_status = FAILED
            break
    record.ends_at = start
    return record
