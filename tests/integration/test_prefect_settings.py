"""Prefect's own settings are honoured: an API URL from a profile counts as much as PREFECT_API_URL."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import EXAMPLE_SPEC, ROOT
from tests.e2e.prefect_server import base_env, free_port

PROFILE = """active = "acr"

[profiles.acr]
PREFECT_API_URL = "http://127.0.0.1:{port}/api"
"""


def _acrvpc(home, *args: str, with_profile: bool) -> subprocess.CompletedProcess:
    if with_profile:
        (home / "profiles.toml").write_text(PROFILE.format(port=free_port()))  # nothing listens there
    env = base_env(home)
    env["ACRVPC_WEBHOOK_SECRET"] = "settings-test-secret-0001"
    return subprocess.run(
        [sys.executable, "-m", "acrvpc", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "args",
    [("deploy", str(EXAMPLE_SPEC), "--pool", "p"), ("webhook", "serve", "--deployment", "build-on-push/demo-build")],
    ids=["deploy", "webhook-serve"],
)
class TestApiUrlFromAProfile:
    def test_without_any_url_the_command_says_to_set_one(self, tmp_path, args):
        proc = _acrvpc(tmp_path, *args, with_profile=False)
        assert proc.returncode == 2 and "no Prefect API URL" in proc.stdout + proc.stderr

    def test_a_profile_url_is_used(self, tmp_path, args):
        proc = _acrvpc(tmp_path, *args, with_profile=True)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2, out
        assert "no Prefect API URL" not in out and "cannot reach the Prefect API at http://127.0.0.1:" in out, out
        assert "Traceback" not in out
