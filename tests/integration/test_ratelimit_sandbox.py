"""The client-side rate limiter against the sandbox's quotas: a fleet of threads stays under them."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from alibabacloud_ecs20140526 import models as m

from acrvpc.cloud import clients as cloud
from acrvpc.cloud import ratelimit
from acrvpc.cloud.errors import is_retryable

QPS = 20
BURST = 10  # the sandbox's; the client's burst of 1 leaves 9 tokens for scheduling jitter
THREADS = 4


@pytest.fixture(autouse=True)
def fresh_buckets():
    ratelimit.reset()
    yield
    ratelimit.reset()


@pytest.fixture
def quota(sandbox):
    """The sandbox lets ECS take 20 calls per second, 10 at once."""
    sandbox.world.faults.set_quota(QPS, product="ecs", burst=BURST)
    return sandbox


def fleet(spec, calls: int) -> tuple[list[Exception], float]:
    """THREADS task-like threads, each with its own client, making ``calls`` calls; errors and seconds taken."""
    errors: list[Exception] = []
    lock = threading.Lock()

    def run() -> None:
        ecs = cloud.cloud_clients(spec).ecs
        for _ in range(calls):
            try:
                ecs.describe_security_groups(m.DescribeSecurityGroupsRequest(region_id=spec.region))
            except Exception as exc:  # noqa: BLE001 - collected for the test
                with lock:
                    errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors, time.monotonic() - started


class TestFleetUnderQuota:
    def test_limiter_at_the_quota_avoids_every_throttling(self, quota, spec, monkeypatch):
        # given: the client limit equals the sandbox quota (with a smaller burst)
        monkeypatch.setenv("ACRVPC_QPS_ECS", str(QPS))
        monkeypatch.setenv("ACRVPC_BURST_ECS", "1")
        # when: 24 calls, well past the sandbox's burst
        errors, seconds = fleet(spec, 6)
        # then: no throttling; the calls were paced
        assert errors == []
        assert seconds >= (THREADS * 6 - 1) / QPS * 0.9
        assert [c["code"] for c in quota.world.calls.list()] == [""] * THREADS * 6

    def test_without_the_limiter_the_fleet_is_throttled(self, quota, spec, monkeypatch):
        # given: no client-side limit
        monkeypatch.setenv("ACRVPC_QPS_ECS", "0")
        # when: 32 calls as fast as they go
        errors, _ = fleet(spec, 8)
        # then: the sandbox refuses some calls, each a retryable Throttling.User
        assert errors
        assert {getattr(e, "code", None) for e in errors} == {"Throttling.User"}
        assert all(is_retryable(e) for e in errors)


class TestAsyncCalls:
    def test_async_sdk_calls_take_tokens_too(self, sandbox, spec, monkeypatch):
        # given
        monkeypatch.setenv("ACRVPC_QPS_ECS", str(QPS))
        monkeypatch.setenv("ACRVPC_BURST_ECS", "1")
        ecs = cloud.cloud_clients(spec).ecs
        request = m.DescribeSecurityGroupsRequest(region_id=spec.region)

        async def four() -> float:
            started = time.monotonic()
            await asyncio.gather(*[ecs.describe_security_groups_async(request) for _ in range(4)])
            return time.monotonic() - started

        # when
        seconds = asyncio.run(four())
        # then: three waits of 50 ms
        assert seconds >= 0.135
