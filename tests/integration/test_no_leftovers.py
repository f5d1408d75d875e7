"""Nothing a test created stays on the session's Prefect test server (issue 14).

The session shares one Prefect server (``prefect_harness``). An automation a test leaves there keeps
reacting to the events of every later test: a left "acrvpc: build failed" automation fired on the
build failures of later tests and failed sending to its unreachable Slack webhook. Blocks and
deployments left behind change what later tests read (a block name that "does not exist"). Every
test removes what it creates (fixtures with finalizers); this test, run after all the others
(``runs_last``), checks that they did.
"""

from __future__ import annotations

import pytest


@pytest.mark.runs_last
@pytest.mark.usefixtures("prefect_harness")
class TestNothingLeftOnTheSessionServer:
    def test_no_automation(self):
        from prefect import get_client

        with get_client(sync_client=True) as client:
            left = [a.name for a in client.read_automations()]
        assert left == [], f"automations left on the session's Prefect server by the tests: {left}"

    def test_no_named_block(self):
        from prefect import get_client

        with get_client(sync_client=True) as client:
            documents = client.read_block_documents()
        left = [f"{d.block_type.slug if d.block_type else '?'}/{d.name}" for d in documents if not d.is_anonymous]
        assert left == [], f"blocks left on the session's Prefect server by the tests: {left}"

    def test_no_deployment(self):
        from prefect import get_client

        with get_client(sync_client=True) as client:
            left = [d.name for d in client.read_deployments()]
        assert left == [], f"deployments left on the session's Prefect server by the tests: {left}"
