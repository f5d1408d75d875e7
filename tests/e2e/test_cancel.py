"""Cancelling a deployed run from the UI while its builds run cancels the builds in the registry too."""

from __future__ import annotations

import time

import pytest

from tests.e2e.test_ui_retry import api, start_run, wait_final

pytestmark = pytest.mark.e2e


def test_cancel_from_the_ui_cancels_the_running_builds(prefect_server, process_worker, worker_sandbox, monkeypatch):
    # given a deployed run whose two builds never end
    world = worker_sandbox.world
    world.reset()
    world.clock.set_scale(20.0)
    world.cr.hang_repos.update({"apps/billing-api", "apps/web-frontend"})
    run_id = start_run(prefect_server)
    deadline = time.monotonic() + 180
    while True:
        with world.lock:
            building = [r for r in world.cr.records.values() if world.cr.status(r) == "BUILDING"]
        if len(building) == 2:
            break
        assert time.monotonic() < deadline, "the builds never started"
        time.sleep(0.3)
    # when the run is cancelled the way the UI's Cancel does it
    with api(prefect_server) as client:
        client.post(
            f"/flow_runs/{run_id}/set_state",
            json={"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True},
        ).raise_for_status()
    state = wait_final(prefect_server, run_id, timeout=120)
    # then the run ends Cancelled and both builds were canceled with CancelRepoBuildRecord first
    assert state["type"] == "CANCELLED", state
    cancels = [c for c in world.calls.list() if c["action"] == "CancelRepoBuildRecord" and c["status"] == 200]
    assert len(cancels) == 2
    with world.lock:
        assert {world.cr.status(r) for r in world.cr.records.values()} == {"CANCELED"}
    world.cr.hang_repos.clear()
