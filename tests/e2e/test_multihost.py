"""Across hosts of their own: a run that failed on worker host A, retried the way the Prefect UI does
while A is down, resumes on worker host B with the completed stages Cached, because results live in
the shared S3-compatible bucket (``acrvpc.results``), not on A's disk.

The topology (tests/e2e/multihost.py): the Prefect server on PostgreSQL, two process workers, the
S3-compatible store, each in its own network namespace with its own address; the sandbox on the
bridge's address (the test process's own).
"""

from __future__ import annotations

import time

import pytest

from tests.e2e import netns
from tests.e2e.multihost import prefect_hosts
from tests.e2e.test_ui_retry import ECS_WRITES, UI_RETRY_BODY, api, start_run, task_run_states, wait_final

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.multihost,
    pytest.mark.skipif(netns.unavailable_reason() is not None, reason=str(netns.unavailable_reason())),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    started = time.monotonic()
    with prefect_hosts(tmp_path_factory.mktemp("multihost")) as cluster:
        print(f"multihost topology up in {time.monotonic() - started:.1f} s")
        yield cluster


def result_files(home) -> list[str]:
    storage = home / "storage"
    return sorted(str(p) for p in storage.rglob("*") if p.is_file()) if storage.exists() else []


def test_run_failed_on_host_a_resumes_on_host_b_from_shared_results(cluster):
    world = cluster.sandbox.world
    world.reset()
    world.clock.set_scale(20.0)
    cluster.start_worker("worker-a")
    # Given a run that fails on host A at the binding stage, with a fatal fault (both repositories)
    world.faults.fail_next("CreateRepository", count=2, code="Forbidden.RAM")
    run_id = start_run(cluster.server)
    failed = wait_final(cluster.server, run_id, timeout=120)
    assert failed["type"] == "FAILED" and "Forbidden.RAM" in failed["message"], failed
    first_writes = {c["action"] for c in world.calls.list() if c["writes"]}
    assert ECS_WRITES <= first_writes and "CreateBuildRecordByRule" not in first_writes
    assert run_id in cluster.worker_log("worker-a").read_text()
    assert any(key.startswith("results/") for key in cluster.s3_keys()), "no result in the bucket"
    # When host A dies (its worker and anything it started) and the run is retried as the UI does
    cluster.topo["worker-a"].kill_all()
    cluster.start_worker("worker-b")
    seq = len(world.calls.list())
    with api(cluster.server) as client:
        answer = client.post(f"/flow_runs/{run_id}/set_state", json=UI_RETRY_BODY).raise_for_status().json()
        assert answer["status"] == "ACCEPT", answer
    done = wait_final(cluster.server, run_id, timeout=120)
    # Then host B completes the same flow run, from the results A left in the bucket
    assert done["type"] == "COMPLETED", done
    assert run_id in cluster.worker_log("worker-b").read_text()
    retry_writes = [c["action"] for c in world.calls.list(seq) if c["writes"]]
    assert not ECS_WRITES & set(retry_writes), retry_writes
    assert retry_writes.count("CreateRepository") == 2 and retry_writes.count("CreateBuildRecordByRule") == 2
    states = task_run_states(cluster.server, run_id, {"preflight", "link", "eni", "gitlab", "binding", "build"})
    for stage in ("link", "eni", "gitlab"):
        assert "Cached" in states[stage], states
    # and no result was written to either worker host's disk
    for host, home in cluster.workers.items():
        assert result_files(home) == [], (host, result_files(home))
    # The bucket's secret is in the block only: in no log of the server, workers or flow runs
    for log in cluster.root.glob("*.log"):
        assert cluster.s3_secret not in log.read_text(errors="replace"), log
