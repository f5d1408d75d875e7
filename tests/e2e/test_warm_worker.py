"""The acrvpc-process worker (acrvpc/warm_worker.py): runs forked by a pre-imported zygote, one process each.

On the session's Prefect server (PostgreSQL), a worker of the new type polls its own pool; the tests
deploy a probe flow (tests/e2e/warm_flows.py) and the project's vpc-build flow to it and check that a
run completes forked by the worker's zygote, that two runs have two processes (neither the worker), that a
run whose process dies is Crashed while the next one completes, and that the UI's Cancel cancels a
running run and its builds.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.prefect_server import stop_group, wait_until, wait_worker_online
from tests.e2e.test_ui_retry import api, wait_final

pytestmark = pytest.mark.e2e

POOL = "acrvpc-warm-e2e"
DEPLOY = """
import sys
from prefect import flow
pool = sys.argv[1]
flow.from_source(source=sys.argv[2], entrypoint="tests/e2e/warm_flows.py:probe").deploy(
    name="warm-probe", work_pool_name=pool, build=False, push=False)
flow.from_source(source=sys.argv[2], entrypoint="flows/vpc_build.py:vpc_build").deploy(
    name="warm-nightly", work_pool_name=pool, build=False, push=False,
    parameters={"spec_path": "examples/sandbox.yaml", "start_builds": True})
"""


@pytest.fixture(scope="module")
def warm_worker(prefect_server, worker_sandbox):
    """A worker of type acrvpc-process on its own pool (it creates the pool), with the two deployments."""
    log = prefect_server.home / "warm-worker.log"
    proc = prefect_server.spawn(
        sys.executable,
        "-m",
        "acrvpc.warm_worker",
        "--pool",
        POOL,
        log=log,
        ACRVPC_SANDBOX_URL=worker_sandbox.url,
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_WORKER_PREFETCH_SECONDS="1",
    )
    wait_worker_online(prefect_server, POOL, proc, log)
    prefect_server.run(sys.executable, "-c", DEPLOY, POOL, str(ROOT))
    yield proc, log
    stop_group(proc)


def start(server, deployment: str, **parameters) -> str:
    with api(server) as client:
        found = client.get(f"/deployments/name/{deployment}").raise_for_status().json()
        return (
            client.post(f"/deployments/{found['id']}/create_flow_run", json={"parameters": parameters})
            .raise_for_status()
            .json()["id"]
        )


def seen(out: Path, run_id: str) -> dict:
    return json.loads((out / f"{run_id}.json").read_text())


def test_runs_complete_each_in_its_own_process_started_warm(prefect_server, warm_worker, tmp_path):
    proc, log = warm_worker
    first = start(prefect_server, "warm-probe/warm-probe", out_dir=str(tmp_path), seconds=3)
    second = start(prefect_server, "warm-probe/warm-probe", out_dir=str(tmp_path), seconds=3)
    assert wait_final(prefect_server, first)["type"] == "COMPLETED"
    assert wait_final(prefect_server, second)["type"] == "COMPLETED"
    a, b = seen(tmp_path, first), seen(tmp_path, second)
    assert a["pid"] != b["pid"]
    assert proc.pid not in (a["pid"], b["pid"])
    # the worker checked the server's version and asked for a CSRF token (the server has no CSRF protection)
    # when it started: its runs do not ask again
    assert a["version_check"] is False and b["version_check"] is False
    assert a["csrf"] is False and b["csrf"] is False
    # forked by one zygote, itself the worker's child; the run's process (the stub) is the worker's child
    zygote = a["ppid"]
    assert b["ppid"] == zygote
    assert int(Path(f"/proc/{zygote}/stat").read_text().rsplit(")", 1)[1].split()[1]) == proc.pid
    assert b"zygote" in Path(f"/proc/{zygote}/cmdline").read_bytes()
    text = log.read_text()
    for run_id in (first, second):
        assert f"flow run {run_id}: started warm: process pid " in text, text[-3000:]
        assert f"forked by zygote pid {zygote}" in text, text[-3000:]
    assert "starting it cold" not in text


def test_a_run_whose_process_dies_is_crashed_and_the_next_run_completes(prefect_server, warm_worker, tmp_path):
    proc, _ = warm_worker
    crashing = start(prefect_server, "warm-probe/warm-probe", out_dir=str(tmp_path), mode="exit")
    assert wait_final(prefect_server, crashing)["type"] == "CRASHED"
    assert proc.poll() is None  # the worker lives on
    after = start(prefect_server, "warm-probe/warm-probe", out_dir=str(tmp_path))
    assert wait_final(prefect_server, after)["type"] == "COMPLETED"
    assert seen(tmp_path, after)["pid"] != seen(tmp_path, crashing)["pid"]


def test_cancel_from_the_ui_cancels_the_run_and_its_builds(prefect_server, warm_worker, worker_sandbox):
    world = worker_sandbox.world
    world.reset()
    world.clock.set_scale(20.0)
    world.cr.hang_repos.update({"apps/billing-api", "apps/web-frontend"})
    try:
        run_id = start(prefect_server, "vpc-build/warm-nightly")

        def both_building() -> bool:
            with world.lock:
                return sum(world.cr.status(r) == "BUILDING" for r in world.cr.records.values()) == 2

        wait_until(both_building, 180, "the two builds BUILDING")
        with api(prefect_server) as client:  # what the UI's Cancel does
            client.post(
                f"/flow_runs/{run_id}/set_state",
                json={"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True},
            ).raise_for_status()
        state = wait_final(prefect_server, run_id, timeout=120)
        assert state["type"] == "CANCELLED", state
        cancels = [c for c in world.calls.list() if c["action"] == "CancelRepoBuildRecord" and c["status"] == 200]
        assert len(cancels) == 2
        with world.lock:
            assert {world.cr.status(r) for r in world.cr.records.values()} == {"CANCELED"}
    finally:
        world.cr.hang_repos.clear()


@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_sigterm_stops_the_worker_gracefully(prefect_server, worker_sandbox, tmp_path, sigint):
    """A container stop sends SIGTERM: the worker tears down (zygote and quota broker stopped, the broker's
    socket directory removed) and exits, as ``prefect worker start`` does, instead of dying at once. Also when
    it started with SIGINT ignored (a background job of a shell without job control, nohup'd scripts, some
    supervisors), where turning SIGTERM into a SIGINT (as Prefect's worker does) would stop nothing."""
    import os
    import signal

    log = prefect_server.home / f"warm-worker-sigterm-{sigint}.log"
    command = [sys.executable, "-m", "acrvpc.warm_worker", "--pool", f"{POOL}-sigterm-{sigint}"]
    if sigint == "ignored":  # the shell ignores SIGINT and execs the worker: it starts with SIGINT ignored
        command = ["/bin/sh", "-c", 'trap "" INT; exec "$@"', "sh", *command]
    proc = prefect_server.spawn(*command, log=log, ACRVPC_SANDBOX_URL=worker_sandbox.url)
    try:

        def ready() -> bool:  # the zygote has imported: the worker is set up
            assert proc.poll() is None, log.read_text()[-3000:]
            return "ready:" in log.read_text(errors="replace")

        wait_until(ready, 120, lambda: f"the worker ready: {log.read_text()[-3000:]}")
        text = log.read_text(errors="replace")
        socket_path = text.split("quota broker listening on ", 1)[1].split()[0]
        assert Path(socket_path).exists()
        os.kill(proc.pid, signal.SIGTERM)  # the worker only, not its group: the worker must stop its children
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
        text = log.read_text(errors="replace")
        assert "quota broker stopped:" in text, text[-3000:]
        assert not Path(socket_path).parent.exists()
    finally:
        stop_group(proc)


SHARE_DEPLOY = """
import sys
from prefect import flow
flow.from_source(source=sys.argv[2], entrypoint="tests/e2e/warm_flows.py:probe").deploy(
    name="warm-probe-share", work_pool_name=sys.argv[1], build=False, push=False)
"""


def test_two_workers_on_one_pool_each_take_their_share(prefect_server, worker_sandbox, tmp_path):
    """Two acrvpc-process workers on one pool: each run is tried by one worker only, its owner
    (acrvpc/pool_share.py), instead of by both with one Pending proposal refused per run."""
    from acrvpc import pool_share

    pool, names = f"{POOL}-share", ["share-a", "share-b"]
    procs, logs = [], {}
    try:
        for name in names:
            logs[name] = prefect_server.home / f"warm-worker-{name}.log"
            procs.append(
                prefect_server.spawn(
                    sys.executable,
                    *("-m", "acrvpc.warm_worker", "--pool", pool, "--name", name),
                    log=logs[name],
                    ACRVPC_SANDBOX_URL=worker_sandbox.url,
                    PREFECT_WORKER_QUERY_SECONDS="1",
                    PREFECT_WORKER_PREFETCH_SECONDS="1",
                )
            )

        def both_online() -> bool:
            for proc, name in zip(procs, names, strict=True):
                assert proc.poll() is None, logs[name].read_text(errors="replace")[-3000:]
            with api(prefect_server) as client:
                found = client.post(f"/work_pools/{pool}/workers/filter", json={})
            if found.status_code == 404:  # neither has created the pool yet
                return False
            workers = found.raise_for_status().json()
            return sorted(w["name"] for w in workers if w["status"] == "ONLINE") == names

        wait_until(both_online, 120, "both workers ONLINE")
        prefect_server.run(sys.executable, "-c", SHARE_DEPLOY, pool, str(ROOT))
        runs = [start(prefect_server, "warm-probe/warm-probe-share", out_dir=str(tmp_path)) for _ in range(10)]
        for run_id in runs:
            assert wait_final(prefect_server, run_id)["type"] == "COMPLETED"
        texts = {name: log.read_text(errors="replace") for name, log in logs.items()}
        ran_on = {run_id: [n for n in names if f"flow run {run_id}: started warm" in texts[n]] for run_id in runs}
        owners = {run_id: pool_share.owner(uuid.UUID(run_id), names) for run_id in runs}
        assert ran_on == {run_id: [owners[run_id]] for run_id in runs}
        for name in names:  # neither tried a run of the other's share (a refused Pending proposal says so)
            assert "Aborted submission" not in texts[name], texts[name][-3000:]
    finally:
        for proc in procs:
            stop_group(proc)
