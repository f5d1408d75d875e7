"""What each stage returns: plain, picklable data (never SDK objects).

Every stage outcome names the resources it found or made (``resources``, shown in the CLI
table and artifacts) and lists the writes it made (``changes``: empty on a converged rerun).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class StageOutcome(BaseModel):
    stage: str
    resources: dict[str, str] = Field(default_factory=dict)
    changes: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


CheckResult = Literal["pass", "fail", "warn", "skip"]


class PreflightCheck(BaseModel):
    id: str  # stable, e.g. "instance.running"
    result: CheckResult
    detail: str
    fix: str = ""


class PreflightOutcome(StageOutcome):
    stage: str = "preflight"
    checks: list[PreflightCheck] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.result != "fail" for c in self.checks)

    @property
    def failures(self) -> list[PreflightCheck]:
        return [c for c in self.checks if c.result == "fail"]


class LinkOutcome(StageOutcome):
    stage: str = "link"
    security_group_id: str


class EniOutcome(StageOutcome):
    stage: str = "eni"
    network_interface_id: str
    status: str
    private_ip: str = ""


class GitLabOutcome(StageOutcome):
    stage: str = "gitlab"
    username: str
    user_id: int
    scopes: list[str]
    expires_at: str | None = None
    projects: dict[str, int] = Field(default_factory=dict)  # project path -> project id


class BoundRule(BaseModel):
    build_rule_id: str
    push_type: str
    push_name: str
    image_tag: str
    build: bool = True


class BindingOutcome(StageOutcome):
    stage: str = "binding"
    namespace: str
    name: str
    repo_id: str
    gitlab_project: str
    rules: list[BoundRule] = Field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.namespace}/{self.name}"


class BuildOutcome(StageOutcome):
    stage: str = "build"
    repository: str  # namespace/name
    repo_id: str
    build_rule_id: str
    build_record_id: str
    status: str  # SUCCESS | FAILED | CANCELED | TIMEOUT (upper case)
    image: str = ""  # registry path namespace/name:tag
    digest: str = ""  # sha256:<hex> of the pushed image (GetRepoTag), when it succeeded
    push_type: str = ""  # the rule's GIT_BRANCH | GIT_TAG
    ref: str = ""  # the rule's branch or tag (push name)
    seconds: float = 0.0  # the build record's StartTime..EndTime (the service's clock; the sandbox's runs fast)
    wall_seconds: float = 0.0  # how long the pipeline followed the build, wall clock (0: not measured)
    log_lines: int = 0
    log_tail: list[str] = Field(default_factory=list)
    why: dict[str, Any] = Field(default_factory=dict)  # why it failed (tasks.diagnose.why); {} when it succeeded

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCESS"
