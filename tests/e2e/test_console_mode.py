"""Console mode on a Prefect test server: the run pauses, a person does the console step, resumes, it verifies."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import requests
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import resume_flow_run
from prefect.settings import PREFECT_API_URL

from acrvpc.cli.console_operator import bind_payload, link_payload
from acrvpc.cloud.errors import PipelineError
from acrvpc.domain.spec import load_spec
from acrvpc.sandbox import defaults
from flows.vpc_build import vpc_build
from tests.conftest import EXAMPLE_SPEC, ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture
def fast_sandbox(sandbox):
    sandbox.world.clock.set_scale(50.0)
    return sandbox


def console_spec(tmp_path: Path, **link: Any) -> Path:
    data = yaml.safe_load(EXAMPLE_SPEC.read_text())
    data["link"].update(mode="console", **link)
    path = tmp_path / "console.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def paused_run(spec_path: Path, key: str, timeout: float = 60.0) -> UUID:
    """The id of the run of ``spec_path`` once it is paused at ``key``."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
                )
            )
            for run in runs:
                if run.parameters.get("spec_path") == str(spec_path) and run.state.state_details.pause_key == key:
                    return run.id
            time.sleep(0.2)
    raise AssertionError(f"no run paused at {key} within {timeout} s")


def run_in_thread(spec_path: Path) -> tuple[threading.Thread, dict[str, Any]]:
    holder: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: holder.update(state=vpc_build(spec_path=str(spec_path), return_state=True))
    )
    thread.start()
    return thread, holder


def console_action(sandbox, action: str, payload: dict[str, Any]) -> None:
    resp = requests.post(f"{sandbox.url}/_sandbox/console/{action}", json=payload, timeout=5)
    assert resp.status_code == 200, resp.text


def run_texts(run_id: UUID) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """The run's log lines (once the pause answers are logged), artifacts by key, and run inputs by key."""
    with get_client(sync_client=True) as client:
        for _ in range(50):  # logs reach the API in batches
            logs = [
                log.message
                for log in client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
            ]
            if sum("operator answered" in line for line in logs) == 2:
                break
            time.sleep(0.2)
        artifacts = {
            a.key: str(a.data)
            for a in client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
            )
            if a.key
        }
        inputs = {
            i.key: i.value
            for i in client.filter_flow_run_input(run_id, key_prefix="paused-", limit=50, exclude_keys=set())
        }
    return logs, artifacts, inputs


class TestGuidedRun:
    def test_pauses_for_both_console_steps_then_verifies_and_builds(self, prefect_harness, fast_sandbox, tmp_path):
        # given a console-mode spec and an instance without its GitLab account
        path = console_spec(tmp_path)
        spec = load_spec(path)
        console_action(fast_sandbox, "unbind", {"instance_id": spec.instance_id})
        thread, holder = run_in_thread(path)
        try:
            # when the operator does Manage Link and resumes from Python (as the UI's form does)
            run_id = paused_run(path, "console-link")
            console_action(fast_sandbox, "link", link_payload(spec))
            resume_flow_run(run_id, run_input={"done": True, "note": "link made by ops"})
            # and does Bind Account and resumes with the CLI
            assert paused_run(path, "console-account") == run_id
            console_action(fast_sandbox, "bind", bind_payload(spec))
            env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
            cli = subprocess.run(
                [sys.executable, "-m", "acrvpc", "resume", str(run_id), "--note", "bound by ops"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert cli.returncode == 0, cli.stderr
        finally:
            thread.join(timeout=120)
        # then the run verified both steps and built the images
        state = holder["state"]
        assert state.is_completed(), state.message
        summary = state.result()
        assert sorted(b["status"] for b in summary["builds"]) == ["SUCCESS", "SUCCESS"]
        link_row = next(s for s in summary["stages"] if s["stage"] == "link")
        assert "service-managed" in link_row["resources"]["security_group"]
        # and the answers are recorded with the run, the runbooks published, the token nowhere
        logs, artifacts, inputs = run_texts(run_id)
        answers = {k: v for k, v in inputs.items() if k.endswith("-response")}
        assert sorted(answers) == ["paused-console-account-response", "paused-console-link-response"]
        assert json.loads(answers["paused-console-link-response"]) == {"done": True, "note": "link made by ops"}
        assert json.loads(answers["paused-console-account-response"]) == {"done": True, "note": "bound by ops"}
        assert {"console-link-demo-build", "console-account-demo-build"} <= set(artifacts)
        assert "192.168.1.30:8081" in artifacts["console-link-demo-build"]
        assert "release-bot" in artifacts["console-account-demo-build"]
        for text in [*logs, *artifacts.values(), *inputs.values()]:
            assert defaults.GITLAB_TOKEN not in text

    def test_a_pause_nobody_answers_fails_the_run_with_the_fix(self, prefect_harness, fast_sandbox, tmp_path):
        # given a console-mode spec with a one-second pause timeout and no console link
        path = console_spec(tmp_path, pause_timeout_minutes=0.02)
        # when nobody resumes the run
        state = vpc_build(spec_path=str(path), return_state=True)
        # then it ends Failed with CONSOLE_PAUSE_TIMEOUT, in this process and on the server
        assert state.is_failed()
        error = state.result(raise_on_failure=False)
        assert isinstance(error, PipelineError) and error.code == "CONSOLE_PAUSE_TIMEOUT"
        assert "console-link-demo-build" in error.fix
        with get_client(sync_client=True) as client:
            recorded = client.read_flow_run(state.state_details.flow_run_id).state
        assert recorded.is_failed() and "CONSOLE_PAUSE_TIMEOUT" in recorded.message


class TestDemoConsoleMode:
    def test_demo_with_console_link_mode_pauses_twice_and_exits_zero(self, tmp_path):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_", "ACRVPC_"))}
        env.update(
            PREFECT_HOME=str(tmp_path / "home"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            COLUMNS="200",
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        )
        proc = subprocess.run(
            [sys.executable, "-m", "acrvpc", "demo", "--link-mode", "console"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        operator = [line for line in proc.stdout.splitlines() if "console operator" in line]
        assert len(operator) == 2 and "manage link" in operator[0] and "bind account" in operator[1]
        assert re.search(r"│ link\s+│ completed", proc.stdout) and proc.stdout.count("SUCCESS") >= 2
