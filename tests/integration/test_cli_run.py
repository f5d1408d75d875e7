"""``acrvpc run`` against the sandbox: live display, --quiet, --json, exit codes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from acrvpc.cli.app import app
from tests.conftest import EXAMPLE_SPEC

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def world(sandbox):
    sandbox.world.clock.set_scale(200)
    return sandbox.world


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


class TestRunOutput:
    def test_json_is_one_object_with_every_build(self, world):
        # when
        result = invoke("run", str(EXAMPLE_SPEC), "--json")
        # then
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout.strip().splitlines()[-1])
        assert data["ok"] is True and data["error"] is None
        assert [s["stage"] for s in data["stages"]] == ["preflight", "link", "eni", "gitlab", "binding", "build"]
        assert sorted((b["repository"], b["status"]) for b in data["builds"]) == [
            ("apps/billing-api", "SUCCESS"),
            ("apps/web-frontend", "SUCCESS"),
        ]
        assert all(b["digest"].startswith("sha256:") for b in data["builds"])
        assert len(result.stdout.strip().splitlines()) == 1  # nothing else on stdout

    def test_a_failed_build_still_reports_every_build_and_exits_1(self, world):
        # given
        world.cr.fail_repos.add("apps/billing-api")
        # when
        result = invoke("run", str(EXAMPLE_SPEC), "--json")
        # then
        assert result.exit_code == 1
        data = json.loads(result.stdout.strip().splitlines()[-1])
        assert data["ok"] is False and "BUILD_FAILED" in data["error"]
        statuses = {b["repository"]: b["status"] for b in data["builds"]}
        assert statuses == {"apps/billing-api": "FAILED", "apps/web-frontend": "SUCCESS"}
        failed = next(b for b in data["builds"] if b["status"] == "FAILED")
        assert failed["log_tail"][-1] == "BUILD build stage failed"

    def test_live_output_streams_build_log_lines_and_ends_with_the_tables(self, world):
        result = invoke("run", str(EXAMPLE_SPEC))
        assert result.exit_code == 0, result.output
        record = next(iter(world.cr.records.values()))
        repo = f"{record.namespace}/{record.name}"
        for line in record.lines:
            assert f"{repo}  {line.stage}  {line.message}" in result.output
        assert "builds" in result.output and "acr-vpc-build: demo-build" in result.output

    def test_quiet_prints_nothing_on_success(self, world):
        result = invoke("run", str(EXAMPLE_SPEC), "--quiet", "--no-builds")
        assert result.exit_code == 0
        assert result.stdout == ""

    def test_quiet_and_json_together_are_refused(self, world):
        result = invoke("run", str(EXAMPLE_SPEC), "--quiet", "--json")
        assert result.exit_code == 2
        assert "choose one" in result.output
