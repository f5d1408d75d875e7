"""Why a build failed: its classification, and for a network or GitLab-auth failure the broken hop.

**Classification** (:func:`classify`, pure). The stage is the one the API reports the build in when it
ended (``BuildStage`` of its last log line; names compared case-insensitively: ``GIT_CLONE`` is
``clone``, ``BUILD`` ``build``, ``PUSH`` ``push``, anything else ``other``). The log tail is a hint,
read from the last line up: ``network`` (git could not connect, timed out), ``gitlab_auth`` (GitLab
refused the token), ``image_build`` (a Dockerfile step, a dependency), ``push`` (registry permission,
quota). A clone failure is a network failure unless the tail says authentication; a failure in the
build stage is an image-build failure unless the tail says network (a dependency the link's allowed IPs
should admit); a push failure is a push failure; a canceled build is ``canceled``.

**Diagnosis** (:func:`diagnose_path`, reads only). Network and auth failures (and any clone failure)
check each hop of the path, with the code that already checks it, never a copy:

============================  =====================================================================
hop                           how
============================  =====================================================================
``eni.attached``              :func:`tasks.eni.ensure_network_interface` in plan mode: the build ENI
                              is ``InUse``, in the link's group, the registry may attach it (drift)
``link.egress``               :func:`tasks.link.converge_rules` in plan mode (drift), and
                              :func:`acrvpc.domain.netcheck.admits_egress` on the group's rules for GitLab's
                              IP:port and each allowed IP; console mode: :func:`tasks.console.verify_console_link`
``gitlab.sg_ingress``         preflight's check (:func:`tasks.preflight.run_preflight`)
``vbr.return_route``          preflight's check
``build.oversea_off``         preflight's check
``binding.endpoint``          preflight's read of the binding, judged by :func:`tasks.binding._check_endpoint`
``gitlab.reachable``,         preflight's checks (python-gitlab, :func:`tasks.gitlab_token.validate_token`)
``gitlab.token``,
``gitlab.projects``
============================  =====================================================================

A hop whose own read fails is ``skip`` ("not checked"), never reported as broken. The result names
each broken hop with its fix (preflight's own fix text for preflight's checks), or says that every hop
checks out and the failure is likely elsewhere. :func:`explain_build` is what the build task calls
(through :func:`tasks.build.run_build`'s ``explain``): it attaches the classification and diagnosis to
the outcome (``BuildOutcome.why``), logs it in the run and emits ``acrvpc.build.diagnosed``.
``acrvpc diagnose`` calls :func:`diagnose_path` and :func:`classify` too.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from alibabacloud_cr20181201 import models as cr_models
from pydantic import BaseModel, Field

from acrvpc import monitor
from acrvpc.cloud.errors import PipelineError, explain
from acrvpc.domain import netcheck
from acrvpc.domain.outcomes import BuildOutcome
from acrvpc.domain.spec import LinkMode, Spec

BUILD_DIAGNOSED = "acrvpc.build.diagnosed"
STAGES = ("clone", "build", "push", "other")
CAUSES = ("network", "gitlab_auth", "image_build", "push", "canceled", "timeout", "unknown")
DIAGNOSED_CAUSES = {"network", "gitlab_auth"}
HOPS = (
    "eni.attached",
    "link.egress",
    "gitlab.sg_ingress",
    "vbr.return_route",
    "build.oversea_off",
    "binding.endpoint",
    "gitlab.reachable",
    "gitlab.token",
    "gitlab.projects",
)
PREFLIGHT_HOPS = (
    "gitlab.sg_ingress",
    "vbr.return_route",
    "build.oversea_off",
    "gitlab.reachable",
    "gitlab.token",
    "gitlab.projects",
)
HEALTHY = "every hop checks out, the failure is likely elsewhere"

_log = logging.getLogger("acrvpc.diagnose")
# Log-tail hints, checked per line from the last one up; on one line auth wins over network (git prints
# "unable to access" for both), push over image build.
_HINTS = (
    (
        "gitlab_auth",
        re.compile(
            r"authentication failed|http basic: access denied|could not read username|"
            r"invalid username or password|returned error: 40[13]|invalid_token|"
            r"could not be found or you don't have permission",
            re.I,
        ),
    ),
    (
        "network",
        re.compile(
            r"failed to connect|connection timed out|timed out|could not resolve host|"
            r"connection refused|no route to host|network is unreachable|cannot reach|"
            r"connect to \S+ failed",
            re.I,
        ),
    ),
    (
        "push",
        re.compile(
            r"denied: requested access|unauthorized: authentication required|quota|toomanyrequests|"
            r"exceeded|push access denied|insufficient_scope",
            re.I,
        ),
    ),
    (
        "image_build",
        re.compile(
            r"did not complete successfully|failed to solve|returned a non-zero code|"
            r"dockerfile|compilation failure|\[error\]|error building image",
            re.I,
        ),
    ),
)


class Failure(BaseModel):
    """How a build failed: the stage the API reported, the cause, and the log line that hinted it."""

    status: str
    stage: Literal["clone", "build", "push", "other"]
    api_stage: str = ""  # the stage name as the API reported it
    cause: Literal["network", "gitlab_auth", "image_build", "push", "canceled", "timeout", "unknown"]
    hint: str = ""  # the log line the cause was read from ("" when none matched)
    diagnose: bool = False  # whether the path is diagnosed for it


class Hop(BaseModel):
    """One hop of the path, checked: ``fail`` is broken (with its fix), ``skip`` not checked."""

    id: str
    result: Literal["pass", "fail", "warn", "skip"]
    detail: str
    fix: str = ""


class Diagnosis(BaseModel):
    """Every hop checked, in path order; ``broken`` are the failing ones."""

    hops: list[Hop] = Field(default_factory=list)

    @property
    def broken(self) -> list[Hop]:
        return [h for h in self.hops if h.result == "fail"]

    @property
    def healthy(self) -> bool:
        return not self.broken

    def summary(self) -> str:
        if self.healthy:
            return HEALTHY
        return "; ".join(f"{h.id} is broken: {h.detail} (fix: {h.fix})" for h in self.broken)


# -- classification ------------------------------------------------------------------------------
def stage_name(api_stage: str) -> str:
    """``clone``, ``build``, ``push`` or ``other`` for a stage name the API reports (any case)."""
    name = (api_stage or "").strip().upper()
    if "CLONE" in name or "FETCH" in name or name == "GIT":
        return "clone"
    if "PUSH" in name:
        return "push"
    if "BUILD" in name:
        return "build"
    return "other"


def log_hint(tail: list[str]) -> tuple[str, str]:
    """The cause the log tail hints at and the line that says it, from the last line up; ``("", "")``."""
    for line in reversed(tail):
        for cause, pattern in _HINTS:
            if pattern.search(line):
                return cause, line
    return "", ""


def classify(status: str, api_stage: str, tail: list[str]) -> Failure | None:
    """Classify a build that ended ``status`` in ``api_stage`` with log ``tail``; ``None`` for a success.

    Args:
        status: the build's end status (any case): FAILED, CANCELED/CANCELLED, TIMEOUT...
        api_stage: the stage the API reported last (the ``BuildStage`` of the last log line).
        tail: the last log lines (``STAGE message`` or bare messages).
    """
    status = (status or "").strip().upper()
    if status == "SUCCESS":
        return None
    stage = stage_name(api_stage)
    hint, line = log_hint(tail)
    if status in ("CANCELED", "CANCELLED"):
        cause = "canceled"
    elif stage == "clone":
        cause = "gitlab_auth" if hint == "gitlab_auth" else "network"
    elif stage == "build":
        cause = "network" if hint == "network" else "image_build"
    elif stage == "push":
        cause = "push"
    elif hint:
        cause = hint
    else:
        cause = "timeout" if status == "TIMEOUT" else "unknown"
    return Failure(
        status=status, stage=stage, api_stage=api_stage, cause=cause, hint=line, diagnose=cause in DIAGNOSED_CAUSES
    )


def classify_outcome(outcome: BuildOutcome) -> Failure | None:
    """:func:`classify` for a followed build (its stage from the last line of its tail)."""
    last = outcome.log_tail[-1] if outcome.log_tail else ""
    return classify(outcome.status, last.split(" ", 1)[0] if " " in last else "", outcome.log_tail)


# -- the hops ------------------------------------------------------------------------------------
def _rerun(spec: Spec, what: str) -> str:
    return f"run the full pipeline again (`acrvpc run SPEC` for spec {spec.name}, or the vpc-build deployment): {what}"


def _guarded(hop_id: str, check: Callable[[], list[Hop]]) -> list[Hop]:
    """A hop's check; a read that fails makes it ``skip`` (not checked), never ``fail``."""
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - the other hops still run
        _log.warning("diagnosis: %s not checked: %s", hop_id, explain(exc))
        return [Hop(id=hop_id, result="skip", detail=f"not checked: {explain(exc)}")]


def _link_hops(ecs: Any, spec: Spec) -> list[Hop]:
    """``eni.attached`` and ``link.egress`` (api mode), from the stages' own code in plan mode."""
    from tasks.console import group_rules
    from tasks.eni import PERMISSION, ensure_network_interface
    from tasks.link import converge_rules, desired_egress, find_security_group

    key, value = spec.tag
    group_id = find_security_group(ecs, spec)
    if group_id is None:
        return [
            Hop(id="eni.attached", result="skip", detail="the link's security group is missing (link.egress)"),
            Hop(
                id="link.egress",
                result="fail",
                detail=f"no security group in {spec.network.vpc_id} carries "
                f"the tag {key}={value}: the build ENI has no egress to GitLab",
                fix=_rerun(spec, "the link stage creates the group, the eni stage moves the ENI into it"),
            ),
        ]
    drift: list[str] = []
    eni = ensure_network_interface(ecs, spec, group_id, plan=True, on_drift=lambda _id, d: drift.extend(d))
    if eni.network_interface_id.startswith("<"):
        eni_hop = Hop(
            id="eni.attached",
            result="fail",
            detail=f"no network interface in {spec.network.vswitch_id} "
            f"carries the tag {key}={value}: the builders have no way into the VPC",
            fix=_rerun(spec, "the eni stage creates it and waits until the registry attaches it"),
        )
    elif eni.status != "InUse" or drift:
        problems = ([f"{eni.network_interface_id} is {eni.status}, not InUse"] if eni.status != "InUse" else []) + drift
        account = spec.link.build_service_account_id
        grant = (
            f"; or at once: aliyun ecs CreateNetworkInterfacePermission --RegionId {spec.region} "
            f"--NetworkInterfaceId {eni.network_interface_id} --AccountId {account} --Permission {PERMISSION}"
            if any(c.startswith("CreateNetworkInterfacePermission") for c in eni.changes)
            else ""
        )
        eni_hop = Hop(
            id="eni.attached",
            result="fail",
            detail="; ".join(problems),
            fix=_rerun(
                spec,
                f"the eni stage puts {eni.network_interface_id} back in {group_id} alone, "
                f"grants {PERMISSION} to the registry's account {account} and waits for "
                f"InUse{grant}",
            ),
        )
    else:
        eni_hop = Hop(
            id="eni.attached",
            result="pass",
            detail=f"{eni.network_interface_id} is InUse in {group_id}, "
            f"attachable by the registry's account {spec.link.build_service_account_id}",
        )
    differences: list[str] = []
    converge_rules(ecs, spec, group_id, plan=True, on_drift=lambda _id, d: differences.extend(d))
    rules = [r for r in group_rules(ecs, spec, group_id) if str(r.get("Direction", "")).lower() == "egress"]
    blocked, fixes = [], []
    for want in (r for r in desired_egress(spec) if r.policy == "Accept"):
        port = netcheck.parse_port_range(want.port_range)[0]
        verdict = netcheck.admits_egress(rules, want.cidr, "TCP", port, default_accept=True)
        if not verdict.allowed:
            blocked.append(
                f"egress to {want.cidr} TCP {want.port_range} ({want.description}) is denied: {verdict.reason}"
            )
            fixes.append(
                f"aliyun ecs AuthorizeSecurityGroupEgress --RegionId {spec.region} --SecurityGroupId "
                f"{group_id} --Permissions.1.Policy Accept --Permissions.1.Priority 1 "
                f"--Permissions.1.IpProtocol TCP --Permissions.1.PortRange {want.port_range} "
                f"--Permissions.1.DestCidrIp {want.cidr}"
            )
    drift_text = f" (drift: {'; '.join(differences)})" if differences else ""
    if blocked:
        link_hop = Hop(
            id="link.egress",
            result="fail",
            detail=f"security group {group_id}: " + "; ".join(blocked) + drift_text,
            fix=_rerun(
                spec,
                f"the link stage converges {group_id} back to the spec (or at "
                f"once: {'; '.join(fixes)}, and revoke any Drop rule that wins)",
            ),
        )
    elif differences:
        link_hop = Hop(
            id="link.egress",
            result="warn",
            detail=f"security group {group_id} admits GitLab and the "
            f"allowed IPs but differs from the spec: {'; '.join(differences)}",
            fix=_rerun(spec, f"the link stage converges {group_id} back to the spec"),
        )
    else:
        link_hop = Hop(
            id="link.egress",
            result="pass",
            detail=f"security group {group_id} admits GitLab "
            f"{spec.gitlab.private_ip}:{spec.gitlab.port} and the allowed IPs, as the spec says",
        )
    return [eni_hop, link_hop]


def _console_link_hops(ecs: Any, spec: Spec) -> list[Hop]:
    """Console mode: the link stage's own verification of the console's group and ENI."""
    from tasks.console import verify_console_link

    try:
        link, eni = verify_console_link(ecs, spec)
    except PipelineError as exc:
        if not exc.code.startswith("CONSOLE_LINK"):
            raise
        return [
            Hop(id="link.egress", result="fail", detail=exc.detail, fix=exc.fix),
            Hop(id="eni.attached", result="skip", detail="checked with the console link (link.egress)"),
        ]
    return [
        Hop(id="eni.attached", result="pass", detail=f"{eni.network_interface_id} is {eni.status}"),
        Hop(
            id="link.egress",
            result="pass",
            detail=f"the console's group {link.security_group_id} admits GitLab and the allowed IPs, as the spec says",
        ),
    ]


def _binding_hops(spec: Spec, repositories: dict[str, Any], only: str | None) -> list[Hop]:
    """``binding.endpoint``: each (or the one) repository is bound to the spec's GitLab endpoint."""
    from tasks.binding import _check_endpoint

    hops: list[Hop] = []
    for repo in spec.repositories:
        if only and repo.full_name != only:
            continue
        read = repositories.get(repo.full_name)
        if read is None or not read.ok:
            hops.append(
                Hop(
                    id="binding.endpoint",
                    result="skip",
                    detail=f"{repo.full_name}: not checked: {explain(read.error) if read is not None else 'not read'}",
                )
            )
            continue
        if read.value["repository"] is None or read.value["source"] is None:
            missing = "does not exist" if read.value["repository"] is None else "is bound to no source code"
            hops.append(
                Hop(
                    id="binding.endpoint",
                    result="fail",
                    detail=f"{repo.full_name} {missing}",
                    fix=_rerun(spec, f"the binding stage binds it to {repo.gitlab_project}"),
                )
            )
            continue
        domain = str(read.value["source"].get("CodeRepoDomain") or "")
        try:
            _check_endpoint(spec, repo, domain)
        except PipelineError as exc:
            hops.append(Hop(id="binding.endpoint", result="fail", detail=exc.detail, fix=exc.fix))
            continue
        hops.append(
            Hop(
                id="binding.endpoint",
                result="pass",
                detail=f"{repo.full_name} builds from "
                f"{domain or spec.gitlab.endpoint} ({read.value['source'].get('CodeRepoNamespaceName')}/"
                f"{read.value['source'].get('CodeRepoName')})",
            )
        )
    return hops


def diagnose_path(clients: Any, spec: Spec, *, gitlab: Any = None, repository: str | None = None) -> Diagnosis:
    """Check every hop of the build's path to GitLab. Reads only, ever.

    Args:
        clients: the CR, ECS and VPC clients (:func:`acrvpc.cloud.clients.cloud_clients`).
        spec: the pipeline spec.
        gitlab: a python-gitlab client or a callable building one (as for preflight); ``None`` skips the
            GitLab hops.
        repository: ``namespace/name`` of the failed build's repository (its binding alone is checked);
            ``None`` checks every repository of the spec.

    Returns:
        The hops in path order (see the module docstring).
    """
    from tasks.preflight import observe
    from tasks.preflight_checks import evaluate

    link = _console_link_hops if spec.link.mode == LinkMode.CONSOLE else _link_hops
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="diagnose") as pool:  # beside preflight's reads
        link_hops = pool.submit(_guarded, "link.egress", lambda: link(clients.ecs, spec))
        obs = observe(clients, spec, gitlab=gitlab)
        hops = link_hops.result()
    checks = {c.id: c for c in evaluate(spec, obs).checks}
    for cid in PREFLIGHT_HOPS:
        check = checks[cid]
        if cid.startswith("gitlab.") and gitlab is None:
            continue
        hops.append(Hop(id=cid, result=check.result, detail=check.detail, fix=check.fix))
        if cid == "build.oversea_off":
            hops += _binding_hops(spec, obs.repositories, repository)
    return Diagnosis(hops=sorted(hops, key=lambda h: HOPS.index(h.id)))


# -- the build task's hook -----------------------------------------------------------------------
def why(failure: Failure, diagnosis: Diagnosis | None) -> dict[str, Any]:
    """``BuildOutcome.why``: the classification, the diagnosis (when one ran) and a one-line summary."""
    if diagnosis is None:
        summary = (
            f"{failure.cause.replace('_', ' ')} failure in the {failure.stage} stage"
            + (f": {failure.hint}" if failure.hint else "")
            + " (no network diagnosis)"
        )
    else:
        summary = diagnosis.summary()
    broken = diagnosis.broken if diagnosis is not None else []
    return {
        "failure": failure.model_dump(),
        "diagnosis": diagnosis.model_dump() if diagnosis else None,
        "hop": broken[0].id if broken else "",
        "broken": [h.model_dump() for h in broken],
        "healthy": diagnosis.healthy if diagnosis is not None else None,
        "summary": summary,
    }


def explain_build(
    spec: Spec, outcome: BuildOutcome, *, clients: Any = None, gitlab: Any = None, logger: Any = None
) -> BuildOutcome:
    """Classify a build that did not succeed and, for a network or auth failure, diagnose the path at once.

    The result goes into the outcome (``why``), the run's logs (``logger``), and an
    ``acrvpc.build.diagnosed`` event (inside a run). Never raises: a diagnosis that cannot run says so.

    Args:
        spec: the pipeline spec.
        outcome: the build's outcome (returned as is when it succeeded).
        clients: the cloud clients (default: :func:`acrvpc.cloud.clients.cloud_clients` of the spec).
        gitlab: a python-gitlab client or a callable building one (default: the spec's).
        logger: where to log (default: this module's logger).

    Returns:
        The outcome with ``why`` set.
    """
    from acrvpc.cloud import clients as cloud

    failure = classify_outcome(outcome)
    if failure is None:
        return outcome
    logger = logger or _log
    diagnosis = None
    if failure.diagnose:
        try:
            clients = clients or cloud.cloud_clients(spec)
            gitlab = gitlab if gitlab is not None else functools.partial(cloud.gitlab_for, spec)
            diagnosis = diagnose_path(clients, spec, gitlab=gitlab, repository=outcome.repository)
        except Exception as exc:  # noqa: BLE001 - a build's result must not be lost to its diagnosis
            logger.warning(
                "[%s] the diagnosis of build %s could not run: %s",
                outcome.repository,
                outcome.build_record_id,
                explain(exc),
            )
    found = why(failure, diagnosis)
    logger.error(
        "[%s] why build %s failed: %s failure in the %s stage%s; %s",
        outcome.repository,
        outcome.build_record_id,
        failure.cause.replace("_", " "),
        failure.stage,
        f" ({failure.hint})" if failure.hint else "",
        found["summary"],
    )
    if diagnosis is not None:
        resource = monitor.repository_resource(spec.instance_id, outcome.repository, spec.region)
        payload = {
            "build_record_id": outcome.build_record_id,
            "image": outcome.image,
            "status": outcome.status,
            "stage": failure.stage,
            "cause": failure.cause,
            "hint": failure.hint,
            "hop": found["hop"],
            "broken": found["broken"],
            "healthy": diagnosis.healthy,
            "summary": found["summary"],
            "instance_id": spec.instance_id,
        }
        monitor.emit(BUILD_DIAGNOSED, resource, [monitor.image_resource(outcome.image, outcome.repository)], payload)
        monitor.publish(
            "build.diagnosed", repository=outcome.repository, build_record_id=outcome.build_record_id, why=found
        )
    return outcome.model_copy(update={"why": found})


# -- after the fact (acrvpc diagnose --build) ------------------------------------------------------
def read_build(cr: Any, spec: Spec, record_id: str) -> BuildOutcome:
    """A build record as a :class:`BuildOutcome` (status, repository, the last lines), read only.

    Raises:
        PipelineError: ``BUILD_RECORD_NOT_EXIST`` (CR's code) with the fix; other CR codes as they come.
    """
    from acrvpc.cloud.errors import CrBusinessError, check_cr
    from acrvpc.domain.outcomes import BindingOutcome
    from tasks.build_record import TAIL_LINES, BuildObserver, Poller

    try:
        record = check_cr(
            cr.get_repo_build_record(
                cr_models.GetRepoBuildRecordRequest(instance_id=spec.instance_id, build_record_id=record_id)
            ),
            "GetRepoBuildRecord",
        )
    except CrBusinessError as exc:
        raise PipelineError(
            f"--build: instance {spec.instance_id} has no build record {record_id} ({exc.code})",
            code=exc.code,
            fix="copy the build record id from the build table, the build summary artifact or the console's build log",
        ) from exc
    image = record.image
    namespace, name = (image.repo_namespace_name, image.repo_name) if image else ("", "")
    repo = check_cr(
        cr.get_repository(
            cr_models.GetRepositoryRequest(instance_id=spec.instance_id, repo_namespace_name=namespace, repo_name=name)
        ),
        "GetRepository",
    )
    binding = BindingOutcome(namespace=namespace, name=name, repo_id=str(repo.repo_id), gitlab_project="")
    poller = Poller(cr, spec, binding, record_id, lambda _s: None, BuildObserver())
    poller.ended = True
    poller.fetch_logs()
    status = str(record.status or "").upper()
    return BuildOutcome(
        repository=binding.full_name,
        repo_id=binding.repo_id,
        build_rule_id="",
        build_record_id=record_id,
        status="CANCELED" if status == "CANCELLED" else status,
        image=f"{binding.full_name}:{image.image_tag if image else ''}",
        log_lines=len(poller.lines),
        log_tail=[str(line) for line in poller.lines[-TAIL_LINES:]],
    )
