"""Settings the ``acrvpc`` command gives Prefect before Prefect loads: the embedded server's telemetry is off
unless the person set it (offline it logged an ERROR on every run, and its first database write raced the
run's and failed with "database is locked")."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SHOW = (
    "import os, acrvpc.cli.app, prefect.settings as s; "
    "print(os.environ['PREFECT_SERVER_ANALYTICS_ENABLED'], s.get_current_settings().server.analytics_enabled)"
)


def settings_seen(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "PREFECT_SERVER_ANALYTICS_ENABLED"}
    proc = subprocess.run(
        [sys.executable, "-c", SHOW], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


class TestAnalyticsSetting:
    def test_off_by_default(self):
        assert settings_seen() == ["false", "False"]

    @pytest.mark.parametrize("value, seen", [("true", "True"), ("false", "False")])
    def test_the_persons_own_setting_wins(self, value, seen):
        assert settings_seen(PREFECT_SERVER_ANALYTICS_ENABLED=value) == [value, seen]


class TestABadAcrvpcSetting:
    """A bad ``ACRVPC_*`` value is one line naming the variable and the fix, exit 2, no traceback."""

    @pytest.mark.parametrize("command", [["preflight", "examples/sandbox.yaml"], ["plan", "examples/sandbox.yaml"]])
    def test_is_one_line_and_exit_2(self, command):
        env = {**os.environ, "ACRVPC_QPS_ECS": "fast", "ACRVPC_SANDBOX_URL": "http://127.0.0.1:9"}
        proc = subprocess.run(
            [sys.executable, "-m", "acrvpc", *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 2, proc.stderr
        assert "ACRVPC_QPS_ECS='fast'" in proc.stderr and "calls per second" in proc.stderr
        assert "Traceback" not in proc.stderr and "╭" not in proc.stderr, proc.stderr
