"""Console mode: the sandbox's console actions, and their verification through the real ECS/CR clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from alibabacloud_cr20181201 import models as cr_models
from alibabacloud_ecs20140526 import models as ecs_models

from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import PipelineError, check_cr
from acrvpc.domain.spec import parse_spec
from acrvpc.sandbox import defaults
from tasks.console import (
    ACCOUNT_NOT_BOUND_CODE,
    LINK_MISMATCH,
    LINK_MISSING,
    account_bound,
    account_instructions,
    check_account,
    check_console_link,
    link_instructions,
    verify_account,
    verify_console_link,
    wait_for_console_link,
)

EXAMPLE_SPEC = Path(__file__).resolve().parents[2] / "examples" / "sandbox.yaml"
REGION = "cn-hangzhou"
INSTANCE = "cri-sandbox0demo0001"
VPC = "vpc-bp1sandbox00000001"
BUILD_VSW = "vsw-bp1build000000001"
OTHER_VSW = "vsw-bp1gitlab00000001"
LINK = {
    "instance_id": INSTANCE,
    "vpc_id": VPC,
    "vswitch_id": BUILD_VSW,
    "gitlab_ip": "192.168.1.20",
    "gitlab_port": 80,
    "allowed": ["192.168.1.30:8081"],
}
BIND = {"instance_id": INSTANCE, "domain": "http://192.168.1.20", "username": "release-bot"}


@pytest.fixture
def console_spec():
    data = yaml.safe_load(EXAMPLE_SPEC.read_text())
    data["link"]["mode"] = "console"
    return parse_spec(data)


@pytest.fixture
def clients(sandbox, console_spec):
    return cloud.cloud_clients(console_spec)


def console(sandbox, action: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    resp = requests.post(f"{sandbox.url}/_sandbox/console/{action}", json=payload, timeout=5)
    return resp.status_code, resp.json()


def linked(sandbox, **changes: Any) -> dict[str, Any]:
    """Do the console's Manage Link (with ``changes``) and let the ENI finish attaching."""
    status, body = console(sandbox, "link", {**LINK, **changes})
    assert status == 200, body
    sandbox.world.clock.advance(sandbox.world.ecs.attach_seconds + 1)
    return body


def successful_writes(sandbox, since: int = 0) -> list[str]:
    return [c["action"] for c in sandbox.world.calls.list(since) if c["writes"] and not c["code"]]


def mismatch(clients, spec) -> PipelineError:
    with pytest.raises(PipelineError) as info:
        verify_console_link(clients.ecs, spec)
    assert info.value.code == LINK_MISMATCH
    return info.value


class TestConsoleLinkRoute:
    def test_makes_a_service_managed_group_and_eni_the_builders_use(self, sandbox, clients):
        # when the console's Manage Link is done
        body = linked(sandbox)
        # then ECS shows a service-managed group in the VPC and a service-managed ENI with a ServiceID, InUse
        groups = clients.ecs.describe_security_groups(
            ecs_models.DescribeSecurityGroupsRequest(region_id=REGION, vpc_id=VPC, service_managed=True)
        ).body.security_groups.security_group
        assert [g.security_group_id for g in groups] == [body["security_group_id"]]
        enis = clients.ecs.describe_network_interfaces(
            ecs_models.DescribeNetworkInterfacesRequest(region_id=REGION, v_switch_id=BUILD_VSW, service_managed=True)
        ).body.network_interface_sets
        eni = enis.network_interface_set[0]
        assert (eni.network_interface_id, eni.status, eni.service_managed) == (
            body["network_interface_id"],
            "InUse",
            True,
        )
        assert eni.service_id == sandbox.world.cr.build_service_account_id
        # and the registry's builders reach GitLab through it
        assert sandbox.world.ecs.reaches(sandbox.world.cr.build_service_account_id, "192.168.1.20", 80) == (True, "")

    def test_is_idempotent(self, sandbox):
        first = linked(sandbox)
        status, second = console(sandbox, "link", LINK)
        assert status == 200 and second["changes"] == []
        assert (second["security_group_id"], second["network_interface_id"]) == (
            first["security_group_id"],
            first["network_interface_id"],
        )

    def test_moving_the_eni_to_another_vswitch_replaces_it(self, sandbox):
        first = linked(sandbox)
        moved = linked(sandbox, vswitch_id=OTHER_VSW)
        assert moved["network_interface_id"] != first["network_interface_id"]
        assert first["network_interface_id"] not in sandbox.world.ecs.enis

    def test_bad_bodies_are_refused_without_change(self, sandbox):
        assert console(sandbox, "link", {**LINK, "allowed": ["not-an-ip"]})[0] == 400
        assert console(sandbox, "link", {**LINK, "egres_open": True})[0] == 400
        assert console(sandbox, "link", {**LINK, "instance_id": "cri-nope"})[0] == 404
        assert not any(g.service_managed for g in sandbox.world.ecs.groups.values())


class TestConsoleBindRoute:
    def test_binds_and_unbinds_the_gitlab_code_source(self, sandbox):
        assert console(sandbox, "unbind", {"instance_id": INSTANCE})[0] == 200
        assert sandbox.world.cr.instances[INSTANCE].code_sources == []
        status, body = console(sandbox, "bind", {**BIND, "token": defaults.GITLAB_TOKEN})
        assert status == 200 and body == {
            "instance_id": INSTANCE,
            "type": "GITLAB",
            "domain": "http://192.168.1.20",
            "username": "release-bot",
        }

    def test_needs_endpoint_and_user(self, sandbox):
        assert console(sandbox, "bind", {"instance_id": INSTANCE, "domain": "http://192.168.1.20"})[0] == 400
        assert console(sandbox, "bind", {**BIND, "domain": "192.168.1.20"})[0] == 400


class TestVerifyConsoleLink:
    def test_passes_after_the_console_link_with_reads_only(self, sandbox, clients, console_spec):
        body = linked(sandbox)
        seq = len(sandbox.world.calls.list())
        link, eni = verify_console_link(clients.ecs, console_spec)
        assert link.security_group_id == body["security_group_id"] and link.changes == []
        assert (eni.network_interface_id, eni.status) == (body["network_interface_id"], "InUse")
        assert [c["action"] for c in sandbox.world.calls.list(seq) if c["writes"]] == []

    def test_nothing_in_the_vpc_is_missing(self, sandbox, clients, console_spec):
        with pytest.raises(PipelineError) as info:
            verify_console_link(clients.ecs, console_spec)
        assert info.value.code == LINK_MISSING

    def test_egress_open_to_everything_is_named(self, sandbox, clients, console_spec):
        linked(sandbox, egress_open=True)
        assert "egress open to 0.0.0.0/0" in str(mismatch(clients, console_spec))

    def test_a_missing_allowed_ip_is_named(self, sandbox, clients, console_spec):
        linked(sandbox, allowed=[])
        assert "allowed IP 192.168.1.30:8081 missing" in str(mismatch(clients, console_spec))

    def test_a_wrong_gitlab_port_is_named(self, sandbox, clients, console_spec):
        linked(sandbox, gitlab_port=443)
        error = str(mismatch(clients, console_spec))
        assert "GitLab IP 192.168.1.20:80 missing" in error and "egress open to 192.168.1.20/32" in error

    def test_no_drop_all_rule_leaves_egress_open_by_default(self, sandbox, clients, console_spec):
        linked(sandbox, no_drop=True)
        assert "egress open to 0.0.0.0/0 by default" in str(mismatch(clients, console_spec))

    def test_an_inbound_accept_rule_is_named(self, sandbox, clients, console_spec):
        linked(sandbox, ingress_open=True)
        assert "inbound rule accepts ALL" in str(mismatch(clients, console_spec))

    def test_an_eni_in_another_vswitch_is_named(self, sandbox, clients, console_spec):
        linked(sandbox, vswitch_id=OTHER_VSW)
        assert f"is in vSwitch {OTHER_VSW}, not {BUILD_VSW}" in str(mismatch(clients, console_spec))

    def test_an_eni_still_attaching_is_not_in_use_and_waiting_sees_it_finish(self, sandbox, clients, console_spec):
        console(sandbox, "link", LINK)  # the clock does not move: the ENI is Attaching
        assert "is Attaching, not InUse" in str(mismatch(clients, console_spec))
        _, eni = wait_for_console_link(
            clients.ecs, console_spec, timeout_s=10, sleep=lambda s: sandbox.world.clock.advance(s)
        )
        assert eni.status == "InUse"

    def test_check_answers_the_problem_instead_of_raising(self, sandbox, clients, console_spec):
        found = check_console_link(clients.ecs, console_spec)
        assert not found.ok and found.code == LINK_MISSING and "Fix:" not in found.problem
        linked(sandbox)
        assert check_console_link(clients.ecs, console_spec).ok

    def test_waiting_gives_up_with_the_last_difference(self, sandbox, clients, console_spec):
        linked(sandbox, egress_open=True)
        with pytest.raises(PipelineError) as info:
            wait_for_console_link(clients.ecs, console_spec, timeout_s=3, sleep=lambda s: None)
        assert info.value.code == LINK_MISMATCH


def seed_repository(clients, spec) -> str:
    """Create the spec's first repository (namespace too) without binding it; returns its id."""
    repo = spec.repositories[0]
    check_cr(
        clients.cr.create_namespace(
            cr_models.CreateNamespaceRequest(instance_id=spec.instance_id, namespace_name=repo.namespace)
        ),
        "CreateNamespace",
    )
    return check_cr(
        clients.cr.create_repository(
            cr_models.CreateRepositoryRequest(
                instance_id=spec.instance_id,
                repo_namespace_name=repo.namespace,
                repo_name=repo.name,
                repo_type="PRIVATE",
                summary="seeded",
            )
        ),
        "CreateRepository",
    ).repo_id


class TestAccountBound:
    def test_false_without_writes_when_no_account_is_bound(self, sandbox, clients, console_spec):
        # given an unbound instance whose first repository exists, unbound
        console(sandbox, "unbind", {"instance_id": INSTANCE})
        repo_id = seed_repository(clients, console_spec)
        seq = len(sandbox.world.calls.list())
        # when asked
        found = check_account(clients.cr, console_spec)
        # then the answer is no, and nothing was written
        assert found.bound is False and "SOURCE_CODE_ACCOUNT_NOT_EXIST" in found.evidence
        assert successful_writes(sandbox, seq) == [] and found.changes == []
        assert sandbox.world.cr.repos[repo_id].source is None
        assert account_bound(clients.cr, console_spec) is False

    def test_true_from_a_bound_repository_with_reads_only(self, sandbox, clients, console_spec):
        repo_id = seed_repository(clients, console_spec)
        assert account_bound(clients.cr, console_spec) is True  # binds the first repository, as binding would
        assert sandbox.world.cr.repos[repo_id].source is not None
        seq = len(sandbox.world.calls.list())
        found = check_account(clients.cr, console_spec)
        assert found.bound is True and found.domain == "http://192.168.1.20"
        assert [c["action"] for c in sandbox.world.calls.list(seq) if c["writes"]] == []

    def test_false_when_bound_to_another_endpoint(self, sandbox, clients, console_spec):
        console(sandbox, "bind", {**BIND, "domain": "http://10.0.0.9"})
        seed_repository(clients, console_spec)
        found = check_account(clients.cr, console_spec)
        assert found.bound is False and "http://10.0.0.9" in found.evidence

    def test_unknown_without_a_repository_unless_asked_to_create_it(self, sandbox, clients, console_spec):
        console(sandbox, "unbind", {"instance_id": INSTANCE})
        assert check_account(clients.cr, console_spec).bound is None
        assert successful_writes(sandbox) == []
        found = check_account(clients.cr, console_spec, create_repository=True)
        assert found.bound is False
        assert successful_writes(sandbox) == ["CreateNamespace", "CreateRepository"]

    def test_verify_names_the_missing_binding_and_passes_after_bind(self, sandbox, clients, console_spec):
        console(sandbox, "unbind", {"instance_id": INSTANCE})
        with pytest.raises(PipelineError) as info:
            verify_account(clients.cr, console_spec)
        assert info.value.code == ACCOUNT_NOT_BOUND_CODE and "Bind Account" in info.value.fix
        console(sandbox, "bind", BIND)
        assert verify_account(clients.cr, console_spec).bound is True


class TestInstructions:
    def test_link_runbook_has_the_console_path_and_every_value(self, console_spec):
        text = link_instructions(console_spec, run_id="0b9f3a8e-0000-0000-0000-000000000000")
        for value in (
            "Repository > Code Source",
            "Manage Link",
            "`192.168.1.20`",
            "`192.168.1.30:8081`",
            f"`{VPC}`",
            f"`{BUILD_VSW}`",
            "acrvpc resume 0b9f3a8e-0000-0000-0000-000000000000",
        ):
            assert value in text

    def test_account_runbook_names_endpoint_and_user_but_never_the_token(self, console_spec):
        text = account_instructions(console_spec, problem="no GitLab account is bound")
        for value in ("Bind Account", "`http://192.168.1.20`", "`release-bot`", "`gitlab-token`"):
            assert value in text
        assert defaults.GITLAB_TOKEN not in text and "glpat-" not in text
