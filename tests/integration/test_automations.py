"""``acrvpc automations``: the notification automations on a Prefect server (the session's test server)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from acrvpc.cli.app import app
from tests.conftest import EXAMPLE_SPEC

pytestmark = pytest.mark.usefixtures("prefect_harness")

PREFIX = "acrvpc: "  # every automation acrvpc creates (acrvpc.automations)
BLOCK_TYPE, BLOCK_NAME = "slack-webhook", "acrvpc-ops"


def mine():
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return [a for a in client.read_automations() if a.name.startswith(PREFIX)]


def ops_block_saved() -> bool:
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_block_document_by_name(name=BLOCK_NAME, block_type_slug=BLOCK_TYPE)
        except ObjectNotFound:
            return False
    return True


@pytest.fixture(scope="module", autouse=True)
def nothing_left_on_the_server(prefect_harness):
    """Fails the module when its tests left an acrvpc automation or their block on the session's server.

    The server is shared by the whole session: a left "build failed" automation keeps firing on the
    acrvpc.build.failed events of later tests and fails sending to its (unreachable) Slack webhook.
    Set up first and torn down last, after every other fixture of the module has cleaned up.
    """
    yield
    left = [a.name for a in mine()]
    assert left == [], f"automations left on the session's Prefect server: {left}"
    assert not ops_block_saved(), f"block {BLOCK_TYPE}/{BLOCK_NAME} left on the session's Prefect server"


@pytest.fixture(scope="module")
def ops_block(prefect_harness):
    """A Slack notification block, deleted again after the module's tests."""
    from prefect import get_client
    from prefect.blocks.notifications import SlackWebhook

    SlackWebhook(url="https://hooks.slack.example/services/T000/B000/XXXX").save(BLOCK_NAME, overwrite=True)
    yield f"{BLOCK_TYPE}/{BLOCK_NAME}"
    with get_client(sync_client=True) as client:
        client.delete_block_document(client.read_block_document_by_name(name=BLOCK_NAME, block_type_slug=BLOCK_TYPE).id)


@pytest.fixture
def removes_its_automations():
    """Deletes, after the test, every acrvpc automation the test created."""
    from prefect import get_client

    before = {a.id for a in mine()}
    yield
    with get_client(sync_client=True) as client:
        for automation in mine():
            if automation.id not in before:
                client.delete_automation(automation.id)


@pytest.mark.usefixtures("removes_its_automations")
class TestAutomations:
    def test_creates_one_automation_per_event_and_replaces_them_on_a_rerun(self, ops_block):
        for _ in range(2):
            result = CliRunner().invoke(app, ["automations", str(EXAMPLE_SPEC), "--notify", ops_block])
            assert result.exit_code == 0, result.output
        found = {a.name: a for a in mine()}
        assert set(found) == {
            "acrvpc: build failed (demo-build)",
            "acrvpc: drift detected (demo-build)",
            "acrvpc: delivery failed (demo-build)",
        }
        failed = found["acrvpc: build failed (demo-build)"]
        assert failed.trigger.expect == {"acrvpc.build.failed"}
        assert failed.trigger.match.model_dump() == {"prefect.resource.id": "acrvpc.repository.cri-sandbox0demo0001.*"}
        assert failed.actions[0].type == "send-notification"
        drift = found["acrvpc: drift detected (demo-build)"]
        assert drift.trigger.expect == {"acrvpc.drift.detected"}
        delivery = found["acrvpc: delivery failed (demo-build)"]
        from deployments.webhook import DELIVERY_FAILED  # what the receiver emits

        assert delivery.trigger.expect == {DELIVERY_FAILED}
        assert delivery.trigger.match.model_dump() == {
            "prefect.resource.id": "acrvpc.delivery.*",
            "acrvpc.deployment": ["build-on-push/webhook", "build-on-push/demo-build"],
        }

    def test_an_unknown_block_is_refused_with_the_fix(self):
        result = CliRunner().invoke(app, ["automations", str(EXAMPLE_SPEC), "--notify", "slack-webhook/nope"])
        assert result.exit_code == 2
        assert "no such block" in result.output and "SlackWebhook(url=...)" in result.output

    def test_a_block_without_a_type_is_refused(self):
        result = CliRunner().invoke(app, ["automations", str(EXAMPLE_SPEC), "--notify", "ops"])
        assert result.exit_code == 2 and "<block-type-slug>/<name>" in result.output

    def test_neither_notify_nor_failover_is_refused(self):
        result = CliRunner().invoke(app, ["automations", str(EXAMPLE_SPEC)])
        assert result.exit_code == 2 and "--notify" in result.output and "--failover" in result.output
        assert mine() == []


@pytest.mark.usefixtures("removes_its_automations")
class TestFailover:
    def test_failover_creates_the_zombie_never_started_and_rerun_automations(self):
        for _ in range(2):  # replaced, not doubled, on a rerun
            result = CliRunner().invoke(app, ["automations", str(EXAMPLE_SPEC), "--failover", "--failover-after", "75"])
            assert result.exit_code == 0, result.output
        found = {a.name: a for a in mine()}
        assert set(found) == {
            "acrvpc: crash zombie runs",
            "acrvpc: crash runs never started",
            "acrvpc: rerun crashed runs",
        }
        zombie = found["acrvpc: crash zombie runs"].trigger
        # Prefect's documented zombie automation ("detect zombie flows"), scoped to acr-vpc-build runs
        assert zombie.posture == "Proactive" and zombie.within.total_seconds() == 75
        assert "prefect.flow-run.heartbeat" in zombie.after and "prefect.flow-run.heartbeat" in zombie.expect
        assert {
            "prefect.flow-run.Completed",
            "prefect.flow-run.Failed",
            "prefect.flow-run.Cancelled",
            "prefect.flow-run.Crashed",
        } <= zombie.expect
        assert zombie.for_each == {"prefect.resource.id"}
        assert zombie.match_related.model_dump() == {
            "prefect.resource.role": "tag",
            "prefect.resource.id": "prefect.tag.acr-vpc-build",
        }
        crash = found["acrvpc: crash zombie runs"].actions[0]
        assert crash.type == "change-flow-run-state" and crash.state.value == "CRASHED"
        never = found["acrvpc: crash runs never started"].trigger
        assert never.after == {"prefect.flow-run.Pending"} and "prefect.flow-run.Running" in never.expect
        rerun = found["acrvpc: rerun crashed runs"]
        assert rerun.trigger.expect == {"prefect.flow-run.Crashed"} and rerun.trigger.posture == "Reactive"
        # only runs crashed by the two above are rescheduled (no endless retry of a run that crashes itself)
        assert set(rerun.trigger.match.model_dump()["prefect.state-message"]) == {
            crash.message,
            found["acrvpc: crash runs never started"].actions[0].message,
        }
        action = rerun.actions[0]
        assert (action.state.value, action.name) == ("SCHEDULED", "AwaitingRetry")

    def test_failover_with_notify_creates_both(self, ops_block):
        result = CliRunner().invoke(app, ["automations", str(EXAMPLE_SPEC), "--notify", ops_block, "--failover"])
        assert result.exit_code == 0, result.output
        assert len(mine()) == 6  # three notifications + three failover automations

    def test_a_window_shorter_than_the_heartbeat_is_refused_before_anything_is_created(self):
        result = CliRunner().invoke(app, ["automations", str(EXAMPLE_SPEC), "--failover", "--failover-after", "20"])
        assert result.exit_code == 2
        assert "--failover-after 20" in result.output and "PREFECT_FLOWS_HEARTBEAT_FREQUENCY" in result.output
        assert mine() == []
