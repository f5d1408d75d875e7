"""The API quota holds across processes: two processes share one Prefect rate limit per product and region.

Two separate Python processes (as two flow runs of a process worker are) each call ECS faster
than the sandbox's ECS quota allows. With the shared limit on the session's real Prefect server
(on PostgreSQL, created by ``python -m acrvpc.cloud.ratelimit``), the sandbox answers no ``Throttling``;
without it, each process falls back to its own bucket at the full quota (said once in its log),
together they send twice the quota and the sandbox throttles them.
"""

from __future__ import annotations

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


def _two_processes(server, sandbox_url: str, prefix: str, tmp: Path) -> list[subprocess.CompletedProcess]:
    ready = [tmp / f"ready-{i}" for i in range(2)]
    go = tmp / "go"
    env = {"ACRVPC_SANDBOX_URL": sandbox_url, "ACRVPC_QPS_ECS": str(QPS), "ACRVPC_BURST_ECS": str(BURST),
           "ACRVPC_QPS_LIMIT_PREFIX": prefix, "ACRVPC_CALL_RETRIES": "0"}
    procs = [subprocess.Popen([sys.executable, "-c", CALLER, str(ROOT / "examples" / "sandbox.yaml"), str(r), str(go),
                               str(THREADS), str(CALLS)], cwd=ROOT, env=server.env(**env), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in ready]
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready):
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        assert time.monotonic() < deadline, "the callers did not start within 120 s"
        time.sleep(0.05)
    go.touch()
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=180)
        outs.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
        assert p.returncode == 0 and "DONE" in stdout, stderr[-3000:]
    return outs


@pytest.fixture
def quota_sandbox():
    with SandboxServer() as sandbox:
        sandbox.world.faults.set_quota(QPS, product="ecs", burst=QPS)
        yield sandbox


class TestSharedQuota:
    def test_two_processes_sharing_the_limit_are_never_throttled(self, prefect_server, quota_sandbox, tmp_path):
        # given: the shared ECS limit, created as a deployer would
        prefix = f"e2e-{secrets.token_hex(3)}"
        made = prefect_server.run(sys.executable, "-m", "acrvpc.cloud.ratelimit", "--region", "cn-hangzhou",
                                  "--products", "ecs", "--qps", str(QPS), "--burst", str(BURST),
                                  ACRVPC_QPS_LIMIT_PREFIX=prefix)
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

    def test_without_the_shared_limit_each_process_spends_the_whole_quota(self, prefect_server, quota_sandbox,
                                                                          tmp_path):
        # given: no limit under this prefix on the server (the per-process fallback)
        prefix = f"e2e-{secrets.token_hex(3)}"
        # when: the same two processes
        outs = _two_processes(prefect_server, quota_sandbox.url, prefix, tmp_path)
        # then: the sandbox throttles them, and each process said once why it limits alone
        calls = [c for c in quota_sandbox.world.calls.list() if c["product"] == "ecs"]
        assert [c for c in calls if c["code"] in THROTTLING]
        for out in outs:
            assert out.stderr.count(f"no shared rate limit '{prefix}-qps-ecs-cn-hangzhou'") == 1, out.stderr[-2000:]


class TestInThisProcess:
    def test_async_calls_and_a_limit_made_by_ensure_limits_share_the_server_limit(self, prefect_server, quota_sandbox,
                                                                                  monkeypatch):
        import asyncio

        from alibabacloud_ecs20140526 import models as m
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        from acrvpc.cloud import clients as cloud, ratelimit
        from acrvpc.domain.spec import load_spec

        prefix = f"e2e-{secrets.token_hex(3)}"
        monkeypatch.setenv("ACRVPC_SANDBOX_URL", quota_sandbox.url)
        monkeypatch.setenv("ACRVPC_QPS_LIMIT_PREFIX", prefix)
        monkeypatch.setenv("ACRVPC_QPS_ECS", str(QPS))
        spec = load_spec(ROOT / "examples" / "sandbox.yaml")
        ratelimit.reset()
        with temporary_settings({PREFECT_API_URL: prefect_server.api_url,
                                 PREFECT_API_AUTH_STRING: prefect_server.auth_string}):
            # given: the limit, created twice (idempotent), then changed
            ratelimit.ensure_limits(["ecs"], spec.region, qps=QPS, burst=BURST)
            made = ratelimit.ensure_limits(["ecs"], spec.region, qps=QPS, burst=2)
            assert made == {f"{prefix}-qps-ecs-cn-hangzhou": {"limit": 2 * ratelimit.SLOTS_PER_CALL,
                                                                "slot_decay_per_second": QPS * ratelimit.SLOTS_PER_CALL}}
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
