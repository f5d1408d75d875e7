"""The README's main command and the standalone sandbox, run as a newcomer would run them (a successful
demo prints no traceback and no ERROR line)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import urllib.request

import pytest

from tests.conftest import ROOT
from tests.e2e.prefect_server import PREFECT

pytestmark = pytest.mark.e2e

STAGES = ["preflight", "link", "eni", "gitlab", "binding", "build"]


def clean_env(prefect_home) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_", "ACRVPC_"))}
    env.update(PREFECT_HOME=str(prefect_home), PREFECT_SERVER_ANALYTICS_ENABLED="false", COLUMNS="200")
    return env


def newcomer_env(prefect_home) -> dict[str, str]:
    """``make demo`` in a fresh shell: nothing Prefect-specific set but PREFECT_HOME (the CLI sets the rest)."""
    env = {k: v for k, v in clean_env(prefect_home).items() if not k.startswith("PREFECT_SERVER_")}
    return env


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    proc = subprocess.run(
        [sys.executable, "-m", "acrvpc", "demo"],
        cwd=ROOT,
        env=newcomer_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc, home


class TestDemo:
    def test_demo_exits_zero_with_all_stages_completed_and_images_built(self, demo_run):
        proc, _ = demo_run
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        for stage in STAGES:
            assert re.search(rf"│ {stage}\s+│ completed", proc.stdout), f"stage {stage} not completed"
        assert proc.stdout.count("SUCCESS") >= 2
        assert "apps/billing-api:latest" in proc.stdout and "apps/web-frontend:latest" in proc.stdout
        assert "prefect server start" in proc.stdout  # how to see the run in the UI

    def test_the_demo_says_its_clock_is_sped_up_and_shows_each_build_stage(self, demo_run):
        proc, _ = demo_run
        assert re.search(r"its clock runs \d+x faster than real time", proc.stdout), proc.stdout[:3000]
        for repository in ("apps/billing-api", "apps/web-frontend"):
            for stage in ("GIT_CLONE", "BUILD", "PUSH"):
                assert re.search(rf"{repository}\s+{stage}\s+\S", proc.stdout), f"{repository} {stage} log lines"

    def test_the_demo_run_on_its_own_server_sends_no_heartbeat(self, demo_run):
        """Its server has no automation to tell and stops with the demo; waiting for Prefect's heartbeat thread
        at the end of the run cost up to a second."""
        proc, home = demo_run
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        with contextlib.closing(sqlite3.connect(home / "prefect.db")) as db:
            events = dict(db.execute("SELECT event, count(*) FROM events GROUP BY event").fetchall())
        assert events.get("prefect.flow-run.Completed") == 1, events
        assert "prefect.flow-run.heartbeat" not in events

    def test_a_successful_demo_prints_no_traceback_and_no_error_line(self, demo_run):
        proc, home = demo_run
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        output = proc.stdout + proc.stderr
        assert "Traceback" not in output, output[:5000]
        assert error_lines(output) == []
        # the embedded server's telemetry (offline: an ERROR per run; its first write: "database is locked")
        # never ran: it leaves no session row behind
        with contextlib.closing(sqlite3.connect(home / "prefect.db")) as db:
            rows = db.execute("SELECT key FROM configuration WHERE key = 'TELEMETRY_SESSION'").fetchall()
        assert rows == []

    def test_flow_run_is_recorded_as_completed_with_a_task_run_per_stage(self, demo_run):
        proc, home = demo_run
        run_id = re.search(r"flow run (\S+) is recorded", proc.stdout).group(1)
        listed = subprocess.run(
            [*PREFECT, "flow-run", "ls"], env=clean_env(home), capture_output=True, text=True, timeout=120
        )
        assert listed.returncode == 0, listed.stderr
        assert run_id[:8] in listed.stdout and "COMPLETED" in listed.stdout.upper()
        script = (
            "import json,uuid\n"
            "from prefect.client.orchestration import get_client\n"
            "from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId\n"
            "with get_client(sync_client=True) as c:\n"
            f"    runs = c.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId("
            f"any_=[uuid.UUID('{run_id}')])))\n"
            "    print(json.dumps([[r.name, r.state.type.value] for r in runs]))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", script], env=clean_env(home), capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        task_runs = json.loads(out.stdout.strip().splitlines()[-1])
        completed = {name.split(" ")[0].split("-")[0] for name, state in task_runs if state == "COMPLETED"}
        assert set(STAGES) <= completed, task_runs


class TestSandboxCommand:
    def test_serves_until_stopped_and_prints_the_export_line(self):
        proc = subprocess.Popen(
            [sys.executable, "-m", "acrvpc", "sandbox", "--port", "0"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        try:
            line = ""
            while "export ACRVPC_SANDBOX_URL=" not in line:
                line = proc.stdout.readline()
                assert line, proc.stderr.read()
            url = line.split("=", 1)[1].strip()
            with urllib.request.urlopen(url + "/_sandbox/healthz", timeout=5) as resp:
                assert json.loads(resp.read()) == {"status": "ok"}
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    def test_missing_scenario_file_exits_2_naming_the_option(self, tmp_path):
        proc = subprocess.run(
            [sys.executable, "-m", "acrvpc", "sandbox", "--scenario", str(tmp_path / "x.yaml")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2 and "--scenario" in proc.stderr


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if " ERROR " in line or "| ERROR" in line]


class TestRunCommand:
    def test_a_failed_run_prints_its_error_once_without_a_traceback(self, sandbox, tmp_path):
        # given a spec naming an instance the sandbox does not have (preflight fails, nothing is retried)
        bad = tmp_path / "bad.yaml"
        bad.write_text(
            (ROOT / "examples" / "sandbox.yaml").read_text().replace("cri-sandbox0demo0001", "cri-doesnotexist0001")
        )
        env = {**newcomer_env(tmp_path / "prefect"), "ACRVPC_SANDBOX_URL": sandbox.url}
        # when
        proc = subprocess.run(
            [sys.executable, "-m", "acrvpc", "run", str(bad)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        # then the command says it once, with the code and the fix; the engine's reports stay in the run's logs
        output = proc.stdout + proc.stderr
        assert proc.returncode == 1, output[-3000:]
        assert "Traceback" not in output, output[:5000]
        assert error_lines(output) == []
        assert proc.stderr.count("failed: [PREFLIGHT_FAILED]") == 1
        assert "INSTANCE_NOT_EXIST" in proc.stderr and "check instance_id" in " ".join(proc.stderr.split())
        # and, with no Prefect API URL, it said at once that it runs its own local server (the demo's: a ready
        # database, no migrations to wait for in silence), which stops with it
        said = " ".join(proc.stdout.split())
        assert "starting a local server for the run on http://127.0.0.1:" in said, said[:2000]
        assert "it stops when the run ends" in said, said[:2000]

    def test_invalid_spec_exits_2_and_names_the_field(self, tmp_path):
        bad = tmp_path / "bad.yaml"
        bad.write_text((ROOT / "examples" / "sandbox.yaml").read_text().replace("vpc-bp1sandbox00000001", "oops"))
        proc = subprocess.run(
            [sys.executable, "-m", "acrvpc", "run", str(bad)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert proc.returncode == 2
        assert "network.vpc_id" in proc.stderr and "vpc-" in proc.stderr
