"""The plan: the writes a run would make, without making any (``acrvpc plan``).

:func:`plan_run` runs preflight first (reads only; a failing check raises ``PREFLIGHT_FAILED``, since a run
would stop there), then the stages' plain functions in plan mode, with the flow's order and concurrency:
link -> ENI on one side, each repository's binding on the other. In plan mode a stage makes its usual
reads and records the writes it would make in ``outcome.changes`` (the same lines a real run records)
without calling them. Each line becomes a :class:`PlannedWrite` (resource, action, why). The GitLab stage
writes nothing; builds are not planned (a note says how many a run would start). A converged spec
plans no write.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, Field

from acrvpc.cloud.clients import CloudClients
from acrvpc.domain.outcomes import BindingOutcome, StageOutcome
from acrvpc.domain.spec import Spec
from tasks.binding import bind_repository
from tasks.eni import ensure_network_interface
from tasks.link import ensure_security_group
from tasks.preflight import preflight_error, run_preflight

# Why each action is needed; {rest} is the change line after the action and its resource.
_WHY = {
    "CreateSecurityGroup": "no security group in {vpc} carries the tag {tag}",
    "ModifySecurityGroupPolicy": "the link's group must keep its members apart (InnerAccessPolicy Drop)",
    "AuthorizeSecurityGroupEgress": "egress rule of the spec is missing: {rest}",
    "RevokeSecurityGroupEgress": "egress rule {rest}",
    "RevokeSecurityGroup": "ingress rule {rest}",
    "CreateNetworkInterface": "no ENI in {vswitch} carries the tag {tag}",
    "ModifyNetworkInterfaceAttribute": "the ENI must be in the link's group only: {rest}",
    "CreateNetworkInterfacePermission": "the registry's build service must be allowed to attach the ENI: {rest}",
    "CreateNamespace": "namespace does not exist in {instance}",
    "CreateRepository": "repository does not exist in {instance}",
    "CreateRepoSourceCodeRepo": "repository has no source binding: bind it to {rest} with OverseaBuild=false",
    "UpdateRepoSourceCodeRepo": "source binding differs from the spec: {rest}",
    "CreateRepoBuildRule": "no build rule matches {rest}",
}
_LINE = re.compile(r"^(?P<action>\S+) (?P<resource><[^>]*>|\S+)\s*(?P<rest>.*)$")
_TRAILING_PLACEHOLDER = re.compile(r"\s*<new [^>]*>$")


class PlannedWrite(BaseModel):
    """One write a run would make.

    Attributes:
        stage: the stage that would make it (``link``, ``eni``, ``binding``).
        action: the API action, e.g. ``CreateSecurityGroup``.
        resource: what it acts on (an id, a ``namespace/name``, or ``<new ...>`` for what a run would create).
        why: why the run would make it.
    """

    stage: str
    action: str
    resource: str
    why: str


class RunPlan(BaseModel):
    """What a run of a spec would write.

    Attributes:
        spec: the spec's name.
        writes: the writes, in the order a run would make them within each stage.
        notes: what is not a write but matters (waits, builds a run would start, drift the console must fix).
    """

    spec: str
    writes: list[PlannedWrite] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @property
    def converged(self) -> bool:
        return not self.writes


def planned_write(stage: str, line: str, spec: Spec) -> PlannedWrite:
    """Turn one ``changes`` line of a stage into a :class:`PlannedWrite`.

    Args:
        stage: the stage that recorded the line.
        line: ``"<Action> <resource> <detail>"``, as the stages write their changes.
        spec: the pipeline spec (for the reasons).

    Returns:
        The planned write; its ``why`` says what the stage saw.
    """
    match = _LINE.match(line.strip())
    if match is None:
        return PlannedWrite(stage=stage, action=line.strip(), resource="", why="")
    action, resource, rest = match["action"], match["resource"], match["rest"]
    rest = _TRAILING_PLACEHOLDER.sub("", rest).removeprefix("-> ")
    if rest.startswith("(") and rest.endswith(")"):
        rest = rest[1:-1]
    key, value = spec.tag
    why = _WHY.get(action, "{rest}").format(
        rest=rest,
        vpc=spec.network.vpc_id,
        vswitch=spec.network.vswitch_id,
        tag=f"{key}={value}",
        instance=spec.instance_id,
    )
    return PlannedWrite(stage=stage, action=action, resource=resource, why=why)


def _link_and_eni(ecs: Any, spec: Spec) -> list[StageOutcome]:
    link = ensure_security_group(ecs, spec, plan=True)
    return [link, ensure_network_interface(ecs, spec, link.security_group_id, plan=True)]


def _build_note(bindings: list[BindingOutcome]) -> str:
    wanted = [
        f"{b.full_name} {r.push_type}:{r.push_name} -> {r.image_tag}" for b in bindings for r in b.rules if r.build
    ]
    if not wanted:
        return "a run would start no build (no rule has build: true)"
    return f"a run would start {len(wanted)} build(s), not planned here: {', '.join(wanted)}"


def plan_run(clients: CloudClients, gl: Any, spec: Spec) -> RunPlan:
    """The writes a run of ``spec`` would make, found with reads only.

    Args:
        clients: the CR, ECS and VPC clients from :func:`acrvpc.cloud.clients.cloud_clients`.
        gl: a python-gitlab client, or a zero-argument callable building one (as preflight takes it), or
            ``None`` to skip the GitLab checks.
        spec: the pipeline spec.

    Returns:
        The :class:`RunPlan`: no write for a converged spec.

    Raises:
        PipelineError: ``PREFLIGHT_FAILED`` naming each failing check and its fix (a run would stop there),
            or the code of a stage's read that fails (e.g. ``LINK_AMBIGUOUS``, ``GITLAB_ENDPOINT_MISMATCH``).
    """
    checks = run_preflight(clients, spec, gitlab=gl)
    if not checks.passed:
        raise preflight_error(spec, checks)
    with ThreadPoolExecutor(max_workers=1 + len(spec.repositories), thread_name_prefix="plan") as pool:
        network = pool.submit(_link_and_eni, clients.ecs, spec)
        repos = [pool.submit(bind_repository, clients.cr, spec, repo, plan=True) for repo in spec.repositories]
        outcomes = network.result() + [f.result() for f in repos]
    writes: list[PlannedWrite] = []
    notes = [f"preflight warns: {c.id}: {c.detail}" for c in checks.checks if c.result == "warn"]
    seen: set[str] = set()
    for outcome in outcomes:
        for line in outcome.changes:
            if line not in seen:  # two repositories of a new namespace: a run creates it once
                seen.add(line)
                writes.append(planned_write(outcome.stage, line, spec))
        notes += outcome.notes
    notes.append(_build_note([o for o in outcomes if isinstance(o, BindingOutcome)]))
    return RunPlan(spec=spec.name, writes=writes, notes=notes)
