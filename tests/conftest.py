"""Hermetic test settings, set before anything imports Prefect.

Per ../shared/api/prefect-notes.md §1: a temporary PREFECT_HOME, no inherited API URL/key/profile,
no analytics. Fixtures: ``sandbox`` (a fresh in-process sandbox, with ACRVPC_SANDBOX_URL pointing
at it), ``spec`` (examples/sandbox.yaml), ``prefect_harness`` (a session-scoped Prefect test server).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_HOME = tempfile.mkdtemp(prefix="acrvpc-test-prefect-")
for _var in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE", "PREFECT_API_AUTH_STRING",
             "ACRVPC_SANDBOX_URL", "ACRVPC_GITLAB_TOKEN", "ALIBABA_CLOUD_ACCESS_KEY_ID",
             "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_var, None)
os.environ["PREFECT_HOME"] = _HOME
# Never let the Alibaba Cloud credential chain ask the ECS metadata service (a non-loopback address)
# when a test builds a client without explicit credentials. Inherited by the subprocesses tests start.
os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
# Call-level retries (acrvpc.callretry) off by default, so a test sees each injected fault where it
# lands; tests of the retries turn them on. Subprocess workers drop ACRVPC_* and use the default.
os.environ["ACRVPC_CALL_RETRIES"] = "0"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_TO_API_BATCH_INTERVAL"] = "0.3"
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_SPEC = ROOT / "examples" / "sandbox.yaml"


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch):
    """A fresh sandbox with the default scenario; clients built by acrvpc.cloud go to it."""
    from acrvpc.sandbox import SandboxServer

    server = SandboxServer().start()
    monkeypatch.setenv("ACRVPC_SANDBOX_URL", server.url)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def spec():
    """The example spec that matches the default sandbox scenario."""
    from acrvpc.spec import load_spec

    return load_spec(EXAMPLE_SPEC)


@pytest.fixture(scope="session")
def prefect_harness():
    """A Prefect test server for the session (about 10 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
