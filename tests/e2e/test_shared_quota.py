"""The API quota holds across processes: two processes share one Prefect rate limit per product and region.

Two separate Python processes (as two flow runs of a process worker are) each call ECS faster
than the sandbox's ECS quota allows. With the shared limit on the session's real Prefect server
(on PostgreSQL, created by ``python -m acrvpc.cloud.ratelimit``), the sandbox answers no ``Throttling``;
without it, each process falls back to its own bucket at the full quota (said once in its log),
together they send twice the quota and the sandbox throttles them.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acrvpc.sandbox import SandboxServer
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e

QPS = 10  # the sandbox's ECS quota, and the client's
BURST = 5  # the client's (the sandbox's is QPS)
THREADS = 3
CALLS = 8  # per thread: each process alone wants more than the quota
THROTTLING = {"Throttling.User", "Throttling", "Throttling.Api"}

CALLER = r"""
import logging, sys, threading, time
from pathlib import Path
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s", stream=sys.stderr)
from alibabacloud_ecs20140526 import models as m
from acrvpc.cloud import clients as cloud, ratelimit
from acrvpc.domain.spec import load_spec
spec = load_spec(sys.argv[1])
ready, go, threads, calls = Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ratelimit.shared_limiter("ecs", spec.region)  # looked up before the start, as a long-running process would have
clients = [cloud.cloud_clients(spec).ecs for _ in range(threads)]
ready.touch()
while not go.exists():
    time.sleep(0.01)
def run(ecs):
    for _ in range(calls):
        try:
            ecs.describe_security_groups(m.DescribeSecurityGroupsRequest(region_id=spec.region))
        except Exception as exc:
            print("ERROR", type(exc).__name__, getattr(exc, "code", ""), flush=True)
ts = [threading.Thread(target=run, args=(c,)) for c in clients]
[t.start() for t in ts]; [t.join() for t in ts]
print("DONE", flush=True)
"""


def _processes(
    server,
    sandbox_url: str,
    prefix: str,
    tmp: Path,
    n: int = 2,
    script: str = CALLER,
    args: tuple[str, ...] = (str(THREADS), str(CALLS)),
    go_delay: float = 0.0,
    **extra_env: str,
) -> list[subprocess.CompletedProcess]:
    ready = [tmp / f"ready-{i}" for i in range(n)]
    go = tmp / "go"
    env = {
        "ACRVPC_SANDBOX_URL": sandbox_url,
        "ACRVPC_QPS_ECS": str(QPS),
        "ACRVPC_BURST_ECS": str(BURST),
        "ACRVPC_QPS_LIMIT_PREFIX": prefix,
        "ACRVPC_CALL_RETRIES": "0",
        **extra_env,
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(ROOT / "examples" / "sandbox.yaml"), str(r), str(go), *args],
            cwd=ROOT,
            env=server.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in ready
    ]
    deadline = time.monotonic() + 180
    while not all(r.exists() for r in ready):
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        assert time.monotonic() < deadline, "the callers did not start within 180 s"
        time.sleep(0.05)
    go.write_text(str(time.time() + go_delay))
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=240)
        outs.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
        assert p.returncode == 0 and "DONE" in stdout, stderr[-3000:]
    return outs


def _two_processes(server, sandbox_url: str, prefix: str, tmp: Path) -> list[subprocess.CompletedProcess]:
    return _processes(server, sandbox_url, prefix, tmp)


# one thread per process (as one flow run per process is), calling as fast as the limit lets it for
# SECONDS from the moment written in the go file; prints the wall time of every call it sent
TIMED_CALLER = r"""
import json, logging, sys, time
from pathlib import Path
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s", stream=sys.stderr)
from alibabacloud_ecs20140526 import models as m
from acrvpc.cloud import clients as cloud, ratelimit
from acrvpc.domain.spec import load_spec
spec = load_spec(sys.argv[1])
ready, go, seconds = Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4])
assert ratelimit.shared_limiter("ecs", spec.region) is not None, "no shared limit"
ecs = cloud.cloud_clients(spec).ecs
import httpx
requests, send = [], httpx.Client.send
def counting_send(self, request, *args, **kwargs):  # counts the requests to the Prefect API
    requests.append(request.url.path)
    return send(self, request, *args, **kwargs)
httpx.Client.send = counting_send
async_send = httpx.AsyncClient.send
async def counting_async_send(self, request, *args, **kwargs):
    requests.append(request.url.path)
    return await async_send(self, request, *args, **kwargs)
httpx.AsyncClient.send = counting_async_send
ready.touch()
while not go.exists() or not go.read_text():
    time.sleep(0.01)
start = float(go.read_text())
time.sleep(max(0.0, start - time.time()))
stamps, errors, waits = [], [], []
while time.time() < start + seconds:
    asked = time.time()
    try:
        ecs.describe_security_groups(m.DescribeSecurityGroupsRequest(region_id=spec.region))
        stamps.append(time.time())
        waits.append(stamps[-1] - asked)
    except Exception as exc:
        errors.append(f"{type(exc).__name__} {getattr(exc, 'code', '')}")
print(json.dumps({"stamps": stamps, "errors": errors, "prefect_requests": len(requests), "waits": waits}))
print("DONE", flush=True)
"""


def create_ecs_limit(server, prefix: str) -> subprocess.CompletedProcess:
    """The shared ECS limit of ``prefix``, created as a deployer would (``python -m acrvpc.cloud.ratelimit``)."""
    return server.run(
        sys.executable,
        "-m",
        "acrvpc.cloud.ratelimit",
        "--region",
        "cn-hangzhou",
        "--products",
        "ecs",
        "--qps",
        str(QPS),
        "--burst",
        str(BURST),
        ACRVPC_QPS_LIMIT_PREFIX=prefix,
    )


def _worst_second(stamps: list[float]) -> int:
    worst, j = 0, 0
    for i, t in enumerate(stamps):
        while stamps[j] < t - 1.0:
            j += 1
        worst = max(worst, i - j + 1)
    return worst


@pytest.fixture
def quota_sandbox():
    with SandboxServer() as sandbox:
        sandbox.world.faults.set_quota(QPS, product="ecs", burst=QPS)
        yield sandbox


class TestSharedQuota:
    def test_two_processes_sharing_the_limit_are_never_throttled(self, prefect_server, quota_sandbox, tmp_path):
        # given: the shared ECS limit, created as a deployer would
        prefix = f"e2e-{secrets.token_hex(3)}"
        made = create_ecs_limit(prefect_server, prefix)
        assert f"{prefix}-qps-ecs-cn-hangzhou" in made.stdout
        # when: two processes make 2 x 24 calls at once
        started = time.monotonic()
        outs = _two_processes(prefect_server, quota_sandbox.url, prefix, tmp_path)
        seconds = time.monotonic() - started
        # then: every call answered, none throttled, paced at the one shared rate
        calls = [c for c in quota_sandbox.world.calls.list() if c["product"] == "ecs"]
        assert [c["code"] for c in calls if c["code"] in THROTTLING] == []
        assert len(calls) == 2 * THREADS * CALLS
        assert seconds >= (2 * THREADS * CALLS - BURST) / QPS * 0.9
        assert all("ERROR" not in o.stdout for o in outs)
        assert all("per process only" not in o.stderr for o in outs)

    def test_without_the_shared_limit_each_process_spends_the_whole_quota(
        self, prefect_server, quota_sandbox, tmp_path
    ):
        # given: no limit under this prefix on the server (the per-process fallback)
        prefix = f"e2e-{secrets.token_hex(3)}"
        # when: the same two processes
        outs = _two_processes(prefect_server, quota_sandbox.url, prefix, tmp_path)
        # then: the sandbox throttles them, and each process said once why it limits alone
        calls = [c for c in quota_sandbox.world.calls.list() if c["product"] == "ecs"]
        assert [c for c in calls if c["code"] in THROTTLING]
        for out in outs:
            assert out.stderr.count(f"no shared rate limit '{prefix}-qps-ecs-cn-hangzhou'") == 1, out.stderr[-2000:]


class TestManyProcesses:
    PROCESSES = 8
    SECONDS = 8.0

    def _fleet(self, prefect_server, quota_sandbox, tmp_path, prefix: str) -> tuple[list[float], list[str], float]:
        self.outs = outs = _processes(
            prefect_server,
            quota_sandbox.url,
            prefix,
            tmp_path,
            n=self.PROCESSES,
            script=TIMED_CALLER,
            args=(str(self.SECONDS),),
            go_delay=1.0,
        )
        results = [json.loads(o.stdout.strip().splitlines()[-2]) for o in outs]
        stamps = sorted(t for r in results for t in r["stamps"])
        self.prefect_requests = sum(r["prefect_requests"] for r in results)
        self.waits = sorted(w for r in results for w in r["waits"])
        return stamps, [e for r in results for e in r["errors"]], (stamps[-1] - stamps[0]) if len(stamps) > 1 else 1.0

    def test_eight_processes_get_the_whole_quota_and_never_more(self, prefect_server, quota_sandbox, tmp_path):
        # given: the shared ECS limit; 8 processes of one thread each (8 flow runs of a process worker)
        prefix = f"e2e-{secrets.token_hex(3)}"
        create_ecs_limit(prefect_server, prefix)
        # when: each calls ECS as fast as the limit lets it, for 8 s
        stamps, errors, span = self._fleet(prefect_server, quota_sandbox, tmp_path, prefix)
        # then: the sandbox (the account's quota: QPS, a second's worth at once) throttled nothing, and
        # >= 90 % of the quota was delivered
        calls = [c for c in quota_sandbox.world.calls.list() if c["product"] == "ecs"]
        assert [c["code"] for c in calls if c["code"] in THROTTLING] == [] and errors == []
        delivered = (len(stamps) - BURST) / span
        assert delivered >= 0.9 * QPS, f"{delivered:.1f} calls/s of {QPS}"
        assert _worst_second(sorted(c["time"] for c in calls)) <= 2 * QPS
        # a waiting call does not ask the server again: one increment and one read per call, however many wait
        # (Prefect's rate_limit() asked again after every 423)
        assert self.prefect_requests <= 2 * len(stamps) + self.PROCESSES, (  # + each process's look-up
            f"{self.prefect_requests} Prefect requests, {len(stamps)} calls"
        )
        # first come, first served: a call waits for the calls queued before it (one per other process),
        # nobody oversleeps a jittered Retry-After
        p90 = self.waits[int(len(self.waits) * 0.9)]
        assert p90 <= 1.5 * self.PROCESSES / QPS, f"90 % of the calls waited up to {p90:.2f} s"

    def test_a_limit_of_the_old_shape_still_limits(self, prefect_server, quota_sandbox, tmp_path):
        # given: a limit as the first design wrote it (limit = burst * 10 slots, decay = qps * 10 slots/s)
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

        prefix = f"e2e-{secrets.token_hex(3)}"
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        with temporary_settings(
            {PREFECT_API_URL: prefect_server.api_url, PREFECT_API_AUTH_STRING: prefect_server.auth_string}
        ):
            with get_client(sync_client=True) as client:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(
                        name=f"{prefix}-qps-ecs-cn-hangzhou", limit=BURST * 10, slot_decay_per_second=QPS * 10
                    )
                )
        # when: the same processes
        stamps, errors, span = self._fleet(prefect_server, quota_sandbox, tmp_path, prefix)
        # then: still under the quota (the calls wait by asking again), said once per process
        calls = [c for c in quota_sandbox.world.calls.list() if c["product"] == "ecs"]
        assert [c["code"] for c in calls if c["code"] in THROTTLING] == [] and errors == []
        assert _worst_second(sorted(c["time"] for c in calls)) <= 2 * QPS
        assert len(stamps) > QPS  # and it does let calls through
        assert all(o.stderr.count("old burst-sized shape") == 1 for o in self.outs), self.outs[0].stderr[-2000:]


class TestInThisProcess:
    def test_async_calls_and_a_limit_made_by_ensure_limits_share_the_server_limit(
        self, prefect_server, quota_sandbox, monkeypatch
    ):
        import asyncio

        from alibabacloud_ecs20140526 import models as m
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        from acrvpc.cloud import clients as cloud
        from acrvpc.cloud import ratelimit
        from acrvpc.domain.spec import load_spec

        prefix = f"e2e-{secrets.token_hex(3)}"
        monkeypatch.setenv("ACRVPC_SANDBOX_URL", quota_sandbox.url)
        monkeypatch.setenv("ACRVPC_QPS_LIMIT_PREFIX", prefix)
        monkeypatch.setenv("ACRVPC_QPS_ECS", str(QPS))
        spec = load_spec(ROOT / "examples" / "sandbox.yaml")
        ratelimit.reset()
        with temporary_settings(
            {PREFECT_API_URL: prefect_server.api_url, PREFECT_API_AUTH_STRING: prefect_server.auth_string}
        ):
            # given: a limit of the old burst-sized shape, reshaped by ensure_limits (twice: idempotent), then changed
            from prefect.client.orchestration import get_client
            from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

            name = f"{prefix}-qps-ecs-cn-hangzhou"
            with get_client(sync_client=True) as client:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=BURST * 10, slot_decay_per_second=QPS * 10)
                )
            ratelimit.ensure_limits(["ecs"], spec.region, qps=QPS, burst=BURST)
            ratelimit.ensure_limits(["ecs"], spec.region, qps=QPS, burst=BURST)
            made = ratelimit.ensure_limits(["ecs"], spec.region, qps=QPS, burst=2)
            paced = QPS * ratelimit.PACE * ratelimit.SLOTS_PER_CALL  # slots per second: 95 % of the quota
            assert made == {
                name: {"limit": round(paced * 60) + 2 * ratelimit.SLOTS_PER_CALL, "slot_decay_per_second": paced}
            }
            with get_client(sync_client=True) as client:
                row = client.read_global_concurrency_limit_by_name(name)
            shape = ratelimit.LimitShape(row.limit, row.slot_decay_per_second)
            assert shape.queued and (shape.quota, shape.burst_calls) == (pytest.approx(QPS), 2)
            ecs = cloud.cloud_clients(spec).ecs
            request = m.DescribeSecurityGroupsRequest(region_id=spec.region)

            async def many() -> float:
                started = time.monotonic()
                await asyncio.gather(*[ecs.describe_security_groups_async(request) for _ in range(12)])
                return time.monotonic() - started

            # when: 12 async calls at once
            seconds = asyncio.run(many())
            shared = ratelimit.shared_limiter("ecs", spec.region)
        ratelimit.reset()
        # then: they took the server's tokens (2 at once, then 10/s) and none was throttled
        assert shared is not None and shared.calls == 12
        assert seconds >= (12 - 2) / QPS * 0.9
        assert [c["code"] for c in quota_sandbox.world.calls.list()] == [""] * 12


QUOTA_POOL = "acrvpc-quota-e2e"
QUOTA_DEPLOY = """
import sys
from prefect import flow
flow.from_source(source=sys.argv[2], entrypoint="tests/e2e/quota_flows.py:quota_probe").deploy(
    name="quota-probe", work_pool_name=sys.argv[1], build=False, push=False)
"""


class TestQuotaBroker:
    RUNS, THREADS, CALLS = 4, 2, 6

    def test_forked_runs_take_their_turns_from_the_workers_broker_and_the_quota_holds(
        self, prefect_server, quota_sandbox, tmp_path
    ):
        from tests.e2e.prefect_server import stop_group
        from tests.e2e.test_ui_retry import api, wait_final

        # given: the shared ECS limit, and an acrvpc-process worker (its broker) on a pool of its own
        prefix = f"e2e-{secrets.token_hex(3)}"
        create_ecs_limit(prefect_server, prefix)
        log = tmp_path / "worker.log"
        worker = prefect_server.spawn(
            sys.executable,
            "-m",
            "acrvpc.warm_worker",
            "--pool",
            QUOTA_POOL,
            log=log,
            ACRVPC_SANDBOX_URL=quota_sandbox.url,
            ACRVPC_QPS_ECS=str(QPS),
            ACRVPC_BURST_ECS=str(BURST),
            ACRVPC_QPS_LIMIT_PREFIX=prefix,
            ACRVPC_CALL_RETRIES="0",
            PREFECT_WORKER_QUERY_SECONDS="1",
            PREFECT_WORKER_PREFETCH_SECONDS="1",
            PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="INFO",
        )
        out = tmp_path / "out"
        out.mkdir()
        try:
            deadline = time.monotonic() + 120
            while "ready:" not in log.read_text(errors="replace"):  # the zygote has imported the flows
                assert worker.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, f"the worker never got ready: {log.read_text()[-3000:]}"
                time.sleep(0.3)
            prefect_server.run(sys.executable, "-c", QUOTA_DEPLOY, QUOTA_POOL, str(ROOT))
            # when: 4 deployment runs at once, each making 2 x 6 ECS calls
            with api(prefect_server) as client:
                dep = client.get("/deployments/name/quota-probe/quota-probe").raise_for_status().json()["id"]
                parameters = {
                    "spec_path": str(ROOT / "examples" / "sandbox.yaml"),
                    "out_dir": str(out),
                    "threads": self.THREADS,
                    "calls": self.CALLS,
                }
                runs = [
                    client.post(f"/deployments/{dep}/create_flow_run", json={"parameters": parameters})
                    .raise_for_status()
                    .json()["id"]
                    for _ in range(self.RUNS)
                ]
            states = [wait_final(prefect_server, run, timeout=240)["type"] for run in runs]
            total = self.RUNS * self.THREADS * self.CALLS
            deadline = time.monotonic() + 30  # the broker logs its counters once idle
            while f", {total} calls (mean batch" not in log.read_text(errors="replace"):
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
        finally:
            stop_group(worker)
        text = log.read_text(errors="replace")
        # then: every run completed, forked; every call took its turn from the broker (none reserved directly)
        assert states == ["COMPLETED"] * self.RUNS, text[-3000:]
        assert text.count(": started warm: ") == self.RUNS
        seen = [json.loads(p.read_text()) for p in out.glob("*.json")]
        assert len(seen) == self.RUNS
        assert all(s["errors"] == [] and s["shared"] and s["broker"] for s in seen), seen
        assert [s["brokered"] for s in seen] == [self.THREADS * self.CALLS] * self.RUNS, seen
        # the broker reserved them: one increment and one read per batch (plus its look-up of the shape)
        line = next(x for x in text.splitlines() if "quota broker idle:" in x and f", {total} calls" in x)
        batches = int(re.search(r"(\d+) batches", line).group(1))
        requests = int(re.search(r"(\d+) server requests", line).group(1))
        assert 1 <= batches <= total and requests == 2 * batches + 1, line
        # and the quota held: no throttling answer, at most the account's burst on top of a second's calls
        calls = [c for c in quota_sandbox.world.calls.list() if c["product"] == "ecs"]
        assert len(calls) == total
        assert [c["code"] for c in calls if c["code"] in THROTTLING] == []
        assert _worst_second(sorted(c["time"] for c in calls)) <= 2 * QPS
