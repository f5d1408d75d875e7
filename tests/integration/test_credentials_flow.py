"""A flow run without credentials fails at once, with the one message naming how to give them, instead of
retrying its preflight with an error per API call (the credential chain is resolved before any call)."""

from __future__ import annotations

import os
import time

import pytest

from flows.vpc_build import vpc_build
from tests.conftest import EXAMPLE_SPEC

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    """The real cloud with nothing to sign with: no sandbox, no ALIBABA_CLOUD_* variable, an empty HOME."""
    monkeypatch.delenv("ACRVPC_SANDBOX_URL", raising=False)
    for name in list(os.environ):
        if name.startswith("ALIBABA_CLOUD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")  # never a non-loopback address in tests
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("ACRVPC_GITLAB_TOKEN", "glpat-unused")  # only the Alibaba Cloud credentials are missing


def task_runs(flow_run_id) -> list:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


class TestFlowRunWithoutCredentials:
    def test_fails_at_once_with_the_message_and_no_retry(self, no_credentials):
        # when
        started = time.monotonic()
        state = vpc_build(spec_path=str(EXAMPLE_SPEC), start_builds=False, return_state=True)
        elapsed = time.monotonic() - started
        # then the run failed with the message, not a table of per-call failures
        assert state.is_failed()
        with pytest.raises(Exception) as caught:
            state.result()
        message = str(caught.value)
        assert message.startswith("no Alibaba Cloud credentials found"), message
        assert "ALIBABA_CLOUD_ACCESS_KEY_ID" in message and "credentials.alibaba_block" in message
        # and its preflight ran once: no retry (the default delays alone, 1+2+4+8 s, would take 15 s)
        runs = [r for r in task_runs(state.state_details.flow_run_id) if r.name.startswith("preflight")]
        assert [r.run_count for r in runs] == [1], [(r.name, r.run_count, r.state_name) for r in runs]
        assert elapsed < 15, f"{elapsed:.1f} s"
