"""Soak across hosts: 20 deployed runs on two worker hosts, 20% transient sandbox faults, worker host A
killed at a random moment: every run completes (the ones A held fail over to B through the crash
failover automations), no duplicate, no orphan -- tests/e2e/test_soak.py's check, across hosts.

Topology: tests/e2e/multihost.py; the scenario is :func:`tests.e2e.multihost.failover_soak` (shared
with bench/failover.py).
"""

from __future__ import annotations

import os
import random
import time

import pytest

from tests.e2e import netns
from tests.e2e.multihost import failover_soak, prefect_hosts

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.multihost,
    pytest.mark.soak,
    pytest.mark.timeout(900),
    pytest.mark.skipif(netns.unavailable_reason() is not None, reason=str(netns.unavailable_reason())),
]

RUNS = 20


def test_twenty_runs_across_hosts_with_faults_and_a_host_killed_converge(tmp_path):
    seed = int(os.environ.get("ACRVPC_SOAK_SEED", random.randrange(1_000_000)))
    kill_after = random.Random(seed).uniform(5.0, 40.0)
    print(f"seed {seed}: worker-a killed {kill_after:.1f} s after the runs are created")
    started = time.monotonic()
    with prefect_hosts(tmp_path, server_env={"PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY": "PT1S"}) as cluster:
        report = failover_soak(cluster, runs=RUNS, kill_after=kill_after, fault_rate=0.2, seed=seed)
    print(f"soak across hosts: {report} ({time.monotonic() - started:.0f} s in all)")
    assert report["unfinished"] == [] and report["not_completed"] == {}, report
    assert report["completed"] == RUNS
    assert report["faults_injected"] >= 0.15 * report["calls"], report
    assert report["duplicates"] == [] and report["orphans"] == [], report
    # every run host A held when it died ran again (on B)
    assert set(report["kill_to_running_s"]) == set(report["failed_over"]), report
