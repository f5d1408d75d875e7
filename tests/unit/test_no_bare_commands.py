"""Every command a test or benchmark starts comes from the project's own environment.

A bare ``"prefect"`` or ``"acrvpc"`` as a subprocess's program is looked up on the caller's PATH: it
works on a developer machine where one was installed globally and fails on a fresh one (issue 14:
18 errors ``FileNotFoundError: 'prefect'``). Tests start them as ``sys.executable -m prefect`` /
``-m acrvpc`` (``tests.e2e.prefect_server.PREFECT``); this scan keeps it so.
"""

from __future__ import annotations

import ast
import os
import sys

import pytest

from tests.conftest import ROOT
from tests.e2e.prefect_server import PREFECT, VENV_BIN, base_env

SCANNED = ("tests", "bench")
BARE = {"prefect", "acrvpc"}
STARTERS = {"run", "Popen", "call", "check_call", "check_output", "spawn", "create_subprocess_exec"}


def _program(call: ast.Call) -> str | None:
    """The literal program name a call would start, if its first argument names one."""
    if not call.args:
        return None
    first = call.args[0]
    if isinstance(first, (ast.List, ast.Tuple)) and first.elts:
        first = first.elts[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return None


def bare_commands(source: str, filename: str = "<test>") -> list[str]:
    """``file:line program`` for every subprocess start whose program is a bare prefect/acrvpc."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            program = _program(node)
            if name in STARTERS and program in BARE:
                found.append(f"{filename}:{node.lineno} {program}")
    return found


class TestBareCommands:
    def test_no_test_or_benchmark_starts_a_bare_prefect_or_acrvpc(self):
        found = []
        for top in SCANNED:
            for path in sorted((ROOT / top).rglob("*.py")):
                found += bare_commands(path.read_text(), str(path.relative_to(ROOT)))
        assert found == [], (
            "start these as (sys.executable, '-m', ...) (tests.e2e.prefect_server.PREFECT):\n" + "\n".join(found)
        )

    @pytest.mark.parametrize(
        "source",
        [
            'subprocess.run(["prefect", "flow-run", "ls"])',
            'subprocess.Popen(("acrvpc", "demo"))',
            'server.run("prefect", "deploy", "--all")',
            'server.spawn("prefect", "worker", "start", log=log)',
        ],
    )
    def test_the_scan_catches_each_way_of_starting_one(self, source):
        assert bare_commands(source) != []

    @pytest.mark.parametrize(
        "source",
        [
            'subprocess.run([sys.executable, "-m", "prefect", "flow-run", "ls"])',
            'server.run(*PREFECT, "deploy", "--all")',
            'subprocess.run(["psql", "-U", "prefect"])',
        ],
    )
    def test_the_scan_accepts_the_project_interpreter(self, source):
        assert bare_commands(source) == []


class TestChildEnvironment:
    def test_prefect_runs_from_this_interpreter(self):
        assert PREFECT[0] == sys.executable

    def test_child_path_starts_with_the_project_environment(self, monkeypatch, tmp_path):
        monkeypatch.setenv("PATH", "/usr/bin:/bin")
        path = base_env(tmp_path)["PATH"].split(os.pathsep)
        assert path[0] == VENV_BIN and path[1:] == ["/usr/bin", "/bin"]
