"""Crash failover across hosts of their own: worker host A dies mid-build; the run is marked Crashed
(its heartbeats stopped), rescheduled by the automation ``acrvpc automations --failover`` installs,
and the same flow run completes on worker host B, resuming at the failure.

Topology: tests/e2e/multihost.py (Prefect server on PostgreSQL, two process workers, S3-compatible
result storage, each in a network namespace). Workers emit heartbeats every 30 s (Prefect's
minimum); the automations count a run as crashed after 45 s without one; the server evaluates
proactive triggers every second (``PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY``, default 5 s).
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from acrvpc.automations import RERUN_MESSAGE, ZOMBIE_MESSAGE
from tests.e2e import netns
from tests.e2e.multihost import duplicates, prefect_hosts, resources
from tests.e2e.test_ui_retry import start_run, task_run_states, wait_final

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.multihost,
    pytest.mark.timeout(600),
    pytest.mark.skipif(netns.unavailable_reason() is not None, reason=str(netns.unavailable_reason())),
]

HEARTBEAT = 30
FAILOVER_AFTER = 45
SERVER_ENV = {"PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY": "PT1S"}
REPOS = {"apps/billing-api": 1, "apps/web-frontend": 1}  # examples/sandbox.yaml: one build each


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    started = time.monotonic()
    with prefect_hosts(tmp_path_factory.mktemp("failover"), server_env=SERVER_ENV) as cluster:
        print(f"multihost topology up in {time.monotonic() - started:.1f} s")
        yield cluster


def wait_for(what: str, check, timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout} s")


def builds_started(world) -> int:
    return sum(1 for c in world.calls.list() if c["action"] == "CreateBuildRecordByRule" and c["status"] == 200)


def ts(state: dict) -> float:
    return datetime.fromisoformat(state["timestamp"].replace("Z", "+00:00")).timestamp()


def test_worker_host_killed_mid_build_fails_over_to_the_other_host(cluster):
    world = cluster.sandbox.world
    world.reset()
    world.clock.set_scale(20.0)
    world.cr.stages = [
        {"name": "GIT_CLONE", "seconds": 3},
        {"name": "BUILD", "seconds": 1200},  # ~60 s real
        {"name": "PUSH", "seconds": 3},
    ]
    before = resources(world)
    out = cluster.install_failover(FAILOVER_AFTER)
    assert "acrvpc: crash zombie runs" in out and "acrvpc: rerun crashed runs" in out, out
    cluster.start_worker("worker-a", heartbeat=HEARTBEAT)
    # Given a deployed run on host A with both builds running
    run_id = start_run(cluster.server)
    wait_for("both builds started on host A", lambda: builds_started(world) == 2, timeout=240)
    cluster.start_worker("worker-b", heartbeat=HEARTBEAT)
    assert run_id in cluster.worker_log("worker-a").read_text()
    # When host A dies: its worker and the flow-run process, SIGKILL
    killed_at = time.time()
    cluster.topo["worker-a"].kill_all()
    # Then the run is marked Crashed (no heartbeat), rescheduled, and Running again on host B
    crashed = wait_for(
        "Crashed",
        lambda: next((s for s in cluster.states(run_id) if s["type"] == "CRASHED"), None),
        timeout=FAILOVER_AFTER + HEARTBEAT + 30,
    )
    running = wait_for(
        "Running again",
        lambda: next((s for s in cluster.states(run_id) if s["type"] == "RUNNING" and ts(s) > ts(crashed)), None),
        timeout=120,
    )
    print(
        f"kill -> Crashed {ts(crashed) - killed_at:.1f} s, kill -> Running on B {ts(running) - killed_at:.1f} s "
        f"(heartbeat {HEARTBEAT} s, failover after {FAILOVER_AFTER} s)"
    )
    done = wait_final(cluster.server, run_id, timeout=240)
    assert done["type"] == "COMPLETED", done
    # the same flow run, on both hosts, its history saying why
    history = cluster.states(run_id)
    messages = [s["message"] or "" for s in history]
    assert crashed["message"] == ZOMBIE_MESSAGE, crashed
    assert RERUN_MESSAGE in messages, messages
    assert [s["name"] for s in history].count("Running") == 2, [s["name"] for s in history]
    assert wait_for(
        "both workers' submissions",
        lambda: (hosts := cluster.worker_hosts(run_id)) == ["worker-a", "worker-b"] and hosts,
        timeout=30,
    )
    assert run_id in cluster.worker_log("worker-b").read_text()
    # resumed at the failure: completed stages Cached, the running builds followed, not started again
    writes = [c["action"] for c in world.calls.list() if c["writes"] and c["status"] == 200]
    dup, orphans = duplicates(before, resources(world), {"demo-build"}, REPOS)
    assert dup == [] and orphans == [], (dup, orphans, writes)
    for action in ("CreateSecurityGroup", "CreateNetworkInterface", "CreateBuildRecordByRule"):
        assert writes.count(action) == {"CreateBuildRecordByRule": 2}.get(action, 1), writes
    states = task_run_states(cluster.server, run_id, {"link", "eni", "gitlab", "binding", "build"})
    for stage in ("link", "eni", "gitlab", "binding"):
        assert "Cached" in states[stage], states
    assert "Cached" in states["build"], states  # build-start: the record host A started, followed by host B
