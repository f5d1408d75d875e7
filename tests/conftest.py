"""Hermetic test settings, set before anything imports Prefect.

Per ../shared/api/prefect-notes.md §1: a temporary PREFECT_HOME, no inherited API URL/key/profile,
no analytics. Fixtures: ``sandbox`` (a fresh in-process sandbox, with ACRVPC_SANDBOX_URL pointing
at it), ``spec`` (examples/sandbox.yaml), ``prefect_harness`` (a session-scoped Prefect test server).

Least privilege: every ``sandbox`` enforces the RAM policy ``acrvpc policy`` generates for
examples/sandbox.yaml (api and console mode, with ``--with-fix --with-teardown``), so the whole
suite runs as a RAM user holding exactly those actions on those resource types. Its ids are
widened to ``*`` (``any_ids``) because many tests use specs with other instances, repositories or
VPCs on purpose; tests/integration/test_ram_policy.py enforces the exact, id-scoped policy.
Tests of the emulator itself (``test_sandbox_*``, ``test_signing``, the fidelity and
unstaged-action contract tests) call actions the pipeline never calls and run without one;
``@pytest.mark.ram_policy(doc_or_None)`` sets a test's own; ``ACRVPC_TEST_RAM=off`` turns it off.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

_HOME = tempfile.mkdtemp(prefix="acrvpc-test-prefect-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)  # registered first, so run last: after Prefect's own
for _var in (
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "PREFECT_PROFILE",
    "PREFECT_API_AUTH_STRING",
    "ACRVPC_SANDBOX_URL",
    "ACRVPC_GITLAB_TOKEN",
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
):
    os.environ.pop(_var, None)
os.environ["PREFECT_HOME"] = _HOME
# Never let the Alibaba Cloud credential chain ask the ECS metadata service (a non-loopback address)
# when a test builds a client without explicit credentials. Inherited by the subprocesses tests start.
os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
# Call-level retries (acrvpc.cloud.callretry) off by default, so a test sees each injected fault where it
# lands; tests of the retries turn them on. Subprocess workers drop ACRVPC_* and use the default.
os.environ["ACRVPC_CALL_RETRIES"] = "0"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_TO_API_BATCH_INTERVAL"] = "0.3"
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

# A shell without job control (``make test-fast &``, nohup, a CI step run in the background) starts its
# background jobs with SIGINT ignored, and an ignored signal stays ignored across exec: in pytest, its xdist
# workers and every worker or receiver a test starts. Prefect's worker turns SIGTERM into a SIGINT to itself,
# so such a worker never stops gracefully (stop_group waits out its grace, then kills it), and a test's own
# SIGINT never interrupts the run it tests. (The acrvpc-process worker handles SIGTERM without SIGINT:
# tests/e2e/test_warm_worker.py starts it with SIGINT ignored on purpose.) Production processes (a
# container's worker, a service) start with SIGINT at its default: so do the tests'.
import signal  # noqa: E402

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # children exec with SIGINT at SIG_DFL

import functools  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_SPEC = ROOT / "examples" / "sandbox.yaml"
# Modules that test the emulator's own API surface (actions the pipeline never calls).
RAM_EXEMPT_MODULES = ("test_sandbox_", "test_signing", "test_fidelity", "test_contract_unstaged")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ram_policy(policy): the RAM policy this test's sandbox enforces (a policy document, or None for none)",
    )
    config.addinivalue_line(
        "markers",
        "runs_last: run after every other test of the session (e.g. scans of what the whole suite left behind)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``runs_last`` go to the end, in their collected order.

    ``make test`` runs ``pytest -n 2 --dist loadfile``: each test module stays on one xdist worker,
    in order, with its module fixtures started once; the session fixtures (the e2e PostgreSQL
    cluster, Prefect server and process worker, the test harness) start once per worker that needs
    them.
    """
    items.sort(key=lambda item: item.get_closest_marker("runs_last") is not None)


@functools.lru_cache(maxsize=1)
def example_policy() -> dict[str, Any]:
    """The policy the suite runs under: examples/sandbox.yaml's, api and console mode, fix and teardown."""
    from acrvpc.domain.policy import merge, policy_for
    from acrvpc.domain.spec import LinkMode, load_spec

    api = load_spec(EXAMPLE_SPEC)
    console = api.model_copy(update={"link": api.link.model_copy(update={"mode": LinkMode.CONSOLE})})
    return merge(policy_for(s, with_fix=True, with_teardown=True, any_ids=True) for s in (api, console))


def _ram_policy_for(request: pytest.FixtureRequest) -> dict[str, Any] | None:
    marker = request.node.get_closest_marker("ram_policy")
    if marker is not None:
        return marker.args[0] if marker.args else None
    if os.environ.get("ACRVPC_TEST_RAM", "on").lower() in ("off", "0", "false"):
        return None
    module = getattr(request.node, "module", None)
    if module is not None and module.__name__.rsplit(".", 1)[-1].startswith(RAM_EXEMPT_MODULES):
        return None
    return example_policy()


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """A fresh sandbox with the default scenario enforcing the suite's RAM policy; acrvpc.cloud.clients clients go to it."""
    from acrvpc.sandbox import SandboxServer

    server = SandboxServer(ram_policy=_ram_policy_for(request)).start()
    monkeypatch.setenv("ACRVPC_SANDBOX_URL", server.url)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def spec():
    """The example spec that matches the default sandbox scenario."""
    from acrvpc.domain.spec import load_spec

    return load_spec(EXAMPLE_SPEC)


@pytest.fixture
def ecs(sandbox, spec):
    """The ECS client the pipeline gets for the example spec, talking to the sandbox."""
    from acrvpc.cloud import clients as cloud

    return cloud.cloud_clients(spec).ecs


@pytest.fixture
def advance(sandbox):
    """A ``sleep`` that moves the sandbox clock instead of waiting, recording each step (``advance.steps``)."""
    steps: list[float] = []

    def sleep(seconds: float) -> None:
        steps.append(seconds)
        sandbox.world.clock.advance(seconds)

    sleep.steps = steps  # type: ignore[attr-defined]
    return sleep


@pytest.fixture(scope="session")
def prefect_harness():
    """A Prefect test server for the session (about 10 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
