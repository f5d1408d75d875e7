"""``acrvpc automations``: the notification automations on a Prefect server (the session's test server)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from acrvpc.cli import app
from tests.conftest import EXAMPLE_SPEC

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def ops_block(prefect_harness):
    from prefect.blocks.notifications import SlackWebhook

    SlackWebhook(url="https://hooks.slack.example/services/T000/B000/XXXX").save("acrvpc-ops", overwrite=True)
    return "slack-webhook/acrvpc-ops"


def mine():
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return [a for a in client.read_automations() if a.name.startswith("acrvpc: ")]


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
