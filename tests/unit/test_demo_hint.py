"""The demo's closing hint runs as printed, also when `make demo` left .venv unactivated (issue 14)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from acrvpc.cli.shell import command
from tests.conftest import ROOT

SCRUBBED_PATH = "/usr/local/bin:/usr/bin:/bin"  # a shell where the virtualenv is not activated
BINDIR = Path(sys.executable).parent


def shell(line: str, path: str) -> subprocess.CompletedProcess:
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}
    return subprocess.run(["/bin/sh", "-c", line], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def in_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.mark.skipif(str(BINDIR) in SCRUBBED_PATH.split(":"), reason="the interpreter is on the scrubbed PATH")
class TestNotActivated:
    def test_the_printed_prefect_command_runs_from_a_shell_without_the_venv(self, in_root, monkeypatch):
        # given a shell whose PATH lacks the virtualenv (as after `make demo`)
        monkeypatch.setenv("PATH", SCRUBBED_PATH)
        # when the hint names prefect
        cmd = command("prefect")
        # then it is a path to this environment's prefect (.venv/bin/prefect), and it runs as printed
        assert cmd != "prefect" and "/" in cmd and cmd.endswith("bin/prefect")
        ran = shell(f"{cmd} --version", SCRUBBED_PATH)
        assert ran.returncode == 0, ran.stderr

    def test_the_demo_closing_hint_is_runnable_as_printed(self, in_root, monkeypatch, capsys, tmp_path):
        from acrvpc.cli.app import _where

        monkeypatch.setenv("PATH", SCRUBBED_PATH)
        monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home dir"))
        monkeypatch.delenv("PREFECT_API_URL", raising=False)
        monkeypatch.setenv("COLUMNS", "60")  # a narrow terminal must not break the command lines
        from prefect.settings import PREFECT_API_URL, temporary_settings

        # no API URL in the settings context either (a session test harness in this process sets one)
        with temporary_settings(restore_defaults={PREFECT_API_URL}):
            _where("0f0e6f3c-1c2b-4a5d-9e8f-000000000001")
        out = capsys.readouterr().out
        listed = re.search(r"or list runs with: (.+) flow-run ls$", out, re.M).group(1)
        server = re.search(r"^\s+(.+) server start\s+# then open", out, re.M).group(1)
        assert listed == server
        assert shlex.split(listed)[0] == f"PREFECT_HOME={tmp_path / 'home dir'}"
        ran = shell(f"{listed} --version", SCRUBBED_PATH)
        assert ran.returncode == 0, (listed, ran.stderr)


def test_an_activated_venv_gets_the_bare_name(monkeypatch):
    monkeypatch.setenv("PATH", f"{BINDIR}:{SCRUBBED_PATH}")
    assert command("prefect") == "prefect"


def test_a_missing_script_falls_back_to_python_dash_m(monkeypatch, in_root):
    assert command("no-such-script-acrvpc").endswith(" -m no-such-script-acrvpc")
