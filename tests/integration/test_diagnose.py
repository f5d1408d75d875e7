"""When a build fails, say why: each hop broken alone in the sandbox after a converged run, then a build.

For every hop of the path (the build ENI, the link's egress, GitLab's security group, the VBR return
route in data-center mode, the code-source binding's endpoint, the GitLab token) a test converges the
spec with the real flow, breaks exactly that hop in the sandbox, runs one build in a flow run (real
Prefect, real SDK clients) and finds the diagnosis naming that hop and its fix in the build summary
artifact, the ``acrvpc.build.diagnosed`` event, the run's logs, the CLI's build table and ``acrvpc
diagnose``; the sandbox's call log shows that the diagnosis wrote nothing. A Dockerfile step that fails
is an image-build failure and is not diagnosed.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml
from prefect import flow
from rich.console import Console
from typer.testing import CliRunner

from acrvpc.cloud import clients as cloud
from acrvpc.domain.outcomes import BindingOutcome, BoundRule, BuildOutcome
from acrvpc.domain.spec import Spec, load_spec
from acrvpc.sandbox import defaults as sandbox_defaults
from tests.conftest import EXAMPLE_SPEC
from tests.integration.test_build_monitoring import artifacts, events, run_logs

pytestmark = pytest.mark.usefixtures("prefect_harness")

REPO = "apps/billing-api"
GITLAB_SG = "sg-bp1gitlab00000001"
VBR_TABLE = "vtb-bp1vbr0000000001"
DC_GITLAB = "10.20.1.10"


@flow(name="diagnose-test-build", validate_parameters=False)
def build_now(spec: Spec, binding: BindingOutcome, rule: BoundRule) -> list[BuildOutcome]:
    """One build, as the on-push flow runs it (flows.builds.run_builds), whatever its result."""
    from prefect.runtime import flow_run

    from flows.builds import run_builds

    return run_builds(spec, [(binding, rule)], str(flow_run.get_id() or ""))


def write_spec(tmp_path: Path, datacenter: bool = False) -> Path:
    data = yaml.safe_load(EXAMPLE_SPEC.read_text())
    data["build"] = {"timeout_minutes": 30, "poll_seconds": 0.2}
    if datacenter:  # GitLab in the data center behind the sandbox's VBR
        data["gitlab"].update({"endpoint": f"http://{DC_GITLAB}", "private_ip": DC_GITLAB, "access": "datacenter"})
        data["network"].update({"datacenter_cidrs": ["10.20.0.0/16"], "vbr_id": "vbr-bp1idc000000000001"})
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def converge(sandbox, spec_path: Path) -> tuple[Spec, BindingOutcome, BoundRule]:
    """A converged run of the real flow (no builds), then the repository's binding read in plan mode."""
    from flows.vpc_build import vpc_build
    from tasks.binding import bind_repository

    state = vpc_build(spec_path=str(spec_path), start_builds=False, return_state=True)
    assert state.is_completed(), state.message
    spec = load_spec(spec_path)
    repo = next(r for r in spec.repositories if r.full_name == REPO)
    binding = bind_repository(cloud.cloud_clients(spec).cr, spec, repo, plan=True)
    assert binding.changes == []
    return spec, binding, binding.rules[0]


# -- breaking exactly one hop ----------------------------------------------------------------------
def break_gitlab_sg(world, spec) -> None:
    group = world.ecs.groups[GITLAB_SG]
    group.rules = [r for r in group.rules if not (r.direction == "ingress" and r.cidr == "100.104.0.0/16")]


def break_link_egress(world, spec) -> None:
    [group] = [g for g in world.ecs.groups.values() if g.name == spec.resource_name]
    group.rules = [
        r for r in group.rules if not (r.direction == "egress" and r.cidr.startswith(spec.gitlab.private_ip))
    ]


def break_eni(world, spec) -> None:
    [eni] = [n for n in world.ecs.enis.values() if n.name == spec.resource_name]
    for pid in [p.permission_id for p in world.ecs.permissions.values() if p.eni_id == eni.eni_id]:
        world.ecs.delete_permission(world.region, pid)  # as DeleteNetworkInterfacePermission does: InUse -> Detaching


def break_vbr_route(world, spec) -> None:
    table = world.vpc.route_tables[VBR_TABLE]
    table.entries = [e for e in table.entries if e.destination != "100.104.0.0/16"]


def break_binding(world, spec) -> None:
    world.cr.bind_code_source(spec.instance_id, "GITLAB", "http://192.168.1.99", spec.gitlab.username)


def break_token(world, spec) -> None:
    world.gitlab.tokens[sandbox_defaults.GITLAB_TOKEN].revoked = True


def datacenter_policy() -> dict:
    """The suite's RAM policy for the data-center spec (its VBR reads are not in examples/sandbox.yaml's)."""
    import tempfile

    from acrvpc.domain.policy import policy_for

    with tempfile.TemporaryDirectory() as tmp:
        return policy_for(
            load_spec(write_spec(Path(tmp), datacenter=True)), with_fix=True, with_teardown=True, any_ids=True
        )


HOPS = {
    "gitlab.sg_ingress": (break_gitlab_sg, False, "aliyun ecs AuthorizeSecurityGroup"),
    "link.egress": (break_link_egress, False, "aliyun ecs AuthorizeSecurityGroupEgress"),
    "eni.attached": (break_eni, False, "aliyun ecs CreateNetworkInterfacePermission"),
    "vbr.return_route": (break_vbr_route, True, "CreateRouteEntry"),
    "binding.endpoint": (break_binding, False, "rebind the instance's GitLab code source"),
    "gitlab.token": (break_token, False, "token block"),
}
PREFLIGHT_HOPS = {"gitlab.sg_ingress", "vbr.return_route", "gitlab.token"}


def writes(world, since: int) -> list[str]:
    return [c["action"] for c in world.calls.list(since) if c["writes"]]


def table_text(outcome: BuildOutcome) -> str:
    from acrvpc.cli.report import build_table

    out = io.StringIO()
    Console(file=out, width=400, color_system=None).print(build_table({"builds": [outcome.model_dump()]}))
    return out.getvalue()


@pytest.mark.parametrize(
    "hop", [pytest.param(h, marks=pytest.mark.ram_policy(datacenter_policy())) if HOPS[h][1] else h for h in HOPS]
)
def test_a_broken_hop_is_named_with_its_fix_everywhere(sandbox, tmp_path, hop):
    world = sandbox.world
    world.clock.set_scale(200)
    breaker, datacenter, fix_words = HOPS[hop]
    spec_path = write_spec(tmp_path, datacenter)
    if datacenter:
        world.cr.bind_code_source("cri-sandbox0demo0001", "GITLAB", f"http://{DC_GITLAB}", "release-bot")
    spec, binding, rule = converge(sandbox, spec_path)
    # given exactly one hop broken
    with world.lock:
        breaker(world, spec)
    # when a build runs
    since = len(world.calls.list())
    state = build_now(spec, binding, rule, return_state=True)
    run_id = str(state.state_details.flow_run_id)
    [outcome] = state.result()
    # then it failed while cloning, and the diagnosis names that hop alone, with its fix
    assert outcome.status == "FAILED" and outcome.why["failure"]["stage"] == "clone"
    assert outcome.why["failure"]["cause"] == ("gitlab_auth" if hop == "gitlab.token" else "network")
    assert [h["id"] for h in outcome.why["broken"]] == [hop], outcome.why["summary"]
    fix = outcome.why["broken"][0]["fix"]
    assert fix_words in fix
    if hop in PREFLIGHT_HOPS:  # the same fix text preflight gives
        from tasks.preflight import run_preflight

        checks = {
            c.id: c
            for c in run_preflight(cloud.cloud_clients(spec), spec, gitlab=lambda: cloud.gitlab_for(spec)).checks
        }
        assert checks[hop].result == "fail" and checks[hop].fix == fix
    # and the diagnosis wrote nothing: the build's start is the run's only write
    assert writes(world, since) == ["CreateBuildRecordByRule"]
    # in the build summary artifact, "why it failed"
    [summary] = [a for a in artifacts(run_id) if a.key == "demo-build-builds"]
    assert "Why it failed" in summary.data and f"`{hop}`" in summary.data and fix in summary.data
    # in the event
    [event] = events("acrvpc.build.diagnosed", run_id, 1)
    assert event["payload"]["hop"] == hop and event["payload"]["broken"][0]["fix"] == fix
    assert event["payload"]["build_record_id"] == outcome.build_record_id
    assert event["resource"]["prefect.resource.id"].endswith(REPO)
    # in the run's logs
    assert any(f"why build {outcome.build_record_id} failed" in m and hop in m and fix in m for m in run_logs(run_id))
    # in the CLI's build table
    assert hop in table_text(outcome)
    # and `acrvpc diagnose --build` says the same, writing nothing
    before = len(world.calls.list())
    result = CliRunner().invoke(
        app(), ["diagnose", str(spec_path), "--build", outcome.build_record_id, "--json"], catch_exceptions=False
    )
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["hop"] == hop and data["failure"]["stage"] == "clone"
    assert [h["id"] for h in data["hops"] if h["result"] == "fail"] == [hop]
    assert next(h for h in data["hops"] if h["id"] == hop)["fix"] == fix
    human = CliRunner().invoke(
        app(), ["diagnose", str(spec_path), "--build", outcome.build_record_id], catch_exceptions=False
    )
    assert human.exit_code == 1 and hop in human.stdout and "1 hop(s) broken" in human.stdout
    assert writes(world, before) == []


def app():
    from acrvpc.cli.app import app as cli_app

    return cli_app


def test_a_dockerfile_step_failure_is_an_image_build_failure_and_not_diagnosed(sandbox, tmp_path):
    world = sandbox.world
    world.clock.set_scale(200)
    spec_path = write_spec(tmp_path)
    spec, binding, rule = converge(sandbox, spec_path)
    world.cr.fail_repos.add(REPO)  # the Dockerfile's RUN mvn step fails
    since = len(world.calls.list())
    state = build_now(spec, binding, rule, return_state=True)
    run_id = str(state.state_details.flow_run_id)
    [outcome] = state.result()
    assert outcome.status == "FAILED"
    failure = outcome.why["failure"]
    assert (failure["stage"], failure["cause"], failure["diagnose"]) == ("build", "image_build", False)
    assert "did not complete successfully" in failure["hint"]
    assert outcome.why["diagnosis"] is None and outcome.why["hop"] == ""
    # no diagnosis ran: only the build's own calls, no event
    build_calls = {
        "CreateBuildRecordByRule",
        "GetRepoBuildRecordStatus",
        "ListRepoBuildRecordLog",
        "GetRepoBuildRecord",
    }
    assert {c["action"] for c in world.calls.list(since)} <= build_calls
    assert events("acrvpc.build.diagnosed", run_id, 1, timeout=3) == []
    [summary] = [a for a in artifacts(run_id) if a.key == "demo-build-builds"]
    assert "Why it failed" in summary.data and "**image build** failure" in summary.data
    # acrvpc diagnose --build classifies it the same way and checks no hop (exit 0: the path is not to blame)
    result = CliRunner().invoke(
        app(), ["diagnose", str(spec_path), "--build", outcome.build_record_id, "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["failure"]["cause"] == "image_build" and data["diagnosed"] is False and data["hops"] == []


def test_diagnose_on_a_healthy_path_exits_0_and_an_unknown_record_exits_2(sandbox, tmp_path):
    sandbox.world.clock.set_scale(200)
    spec_path = write_spec(tmp_path)
    converge(sandbox, spec_path)
    before = len(sandbox.world.calls.list())
    result = CliRunner().invoke(app(), ["diagnose", str(spec_path), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["healthy"] is True and data["hop"] == "" and "every hop checks out" in data["summary"]
    assert writes(sandbox.world, before) == []
    missing = CliRunner().invoke(app(), ["diagnose", str(spec_path), "--build", "no-such-record"])
    assert missing.exit_code == 2 and "no-such-record" in missing.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n")
    assert CliRunner().invoke(app(), ["diagnose", str(bad)]).exit_code == 2
