"""``acrvpc automations``: the notification automations on a Prefect server (the session's test server)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from acrvpc.cli import app
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
        client.delete_block_document(client.read_block_document_by_name(name=BLOCK_NAME,
                                                                         block_type_slug=BLOCK_TYPE).id)


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
        assert set(found) == {"acrvpc: build failed (demo-build)", "acrvpc: drift detected (demo-build)"}
        failed = found["acrvpc: build failed (demo-build)"]
        assert failed.trigger.expect == {"acrvpc.build.failed"}
        assert failed.trigger.match.model_dump() == {"prefect.resource.id": "acrvpc.repository.cri-sandbox0demo0001.*"}
        assert failed.actions[0].type == "send-notification"
        drift = found["acrvpc: drift detected (demo-build)"]
        assert drift.trigger.expect == {"acrvpc.drift.detected"}

    def test_an_unknown_block_is_refused_with_the_fix(self):
        result = CliRunner().invoke(app, ["automations", str(EXAMPLE_SPEC), "--notify", "slack-webhook/nope"])
        assert result.exit_code == 2
        assert "no such block" in result.output and "SlackWebhook(url=...)" in result.output

    def test_a_block_without_a_type_is_refused(self):
        result = CliRunner().invoke(app, ["automations", str(EXAMPLE_SPEC), "--notify", "ops"])
        assert result.exit_code == 2 and "<block-type-slug>/<name>" in result.output
