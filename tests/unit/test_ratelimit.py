"""The client-side rate limiter: token bucket arithmetic, thread safety, quotas from the environment."""

from __future__ import annotations

import threading
import time

import pytest

from acrvpc import ratelimit
from acrvpc.ratelimit import DEFAULT_QPS, TokenBucket


class FrozenClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture(autouse=True)
def fresh_buckets(monkeypatch):
    for product in ("ECS", "CR", "VPC"):
        monkeypatch.delenv(f"ACRVPC_QPS_{product}", raising=False)
        monkeypatch.delenv(f"ACRVPC_BURST_{product}", raising=False)
    ratelimit.reset()
    yield
    ratelimit.reset()


class TestReserve:
    def test_a_full_bucket_lets_a_burst_through_at_once(self, clock):
        # given
        bucket = TokenBucket(10, burst=3, clock=clock)
        # when
        waits = [bucket.reserve() for _ in range(3)]
        # then
        assert waits == [0.0, 0.0, 0.0]

    def test_calls_past_the_burst_wait_in_turn(self, clock):
        # given: an empty bucket refilled 10 times a second
        bucket = TokenBucket(10, burst=1, clock=clock)
        bucket.reserve()
        # when
        waits = [bucket.reserve() for _ in range(3)]
        # then: 0.1 s, 0.2 s, 0.3 s from now
        assert waits == pytest.approx([0.1, 0.2, 0.3])

    def test_tokens_come_back_with_time_but_never_past_the_burst(self, clock):
        # given
        bucket = TokenBucket(10, burst=2, clock=clock)
        bucket.reserve()
        bucket.reserve()
        # when: a long quiet spell
        clock.now += 60
        # then: only two calls go at once
        assert [bucket.reserve() for _ in range(3)] == pytest.approx([0.0, 0.0, 0.1])

    def test_default_burst_is_one_second(self, clock):
        assert TokenBucket(4, clock=clock).burst == 4.0
        assert TokenBucket(0.5, clock=clock).burst == 1.0

    def test_zero_rate_is_refused(self):
        with pytest.raises(ValueError):
            TokenBucket(0)


class TestThreads:
    def test_concurrent_reservations_get_distinct_turns(self, clock):
        # given: 8 threads reserving 25 tokens each from a frozen clock
        bucket = TokenBucket(100, burst=1, clock=clock)
        waits: list[float] = []
        lock = threading.Lock()

        def worker() -> None:
            mine = [bucket.reserve() for _ in range(25)]
            with lock:
                waits.extend(mine)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        # when
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # then: every token is handed out once, 10 ms apart
        assert sorted(round(w, 6) for w in waits) == [round(i / 100, 6) for i in range(200)]

    def test_acquire_paces_real_calls(self):
        # given: 50 calls per second, no burst
        bucket = TokenBucket(50, burst=1)
        started = time.monotonic()
        # when: 11 acquisitions from 4 threads
        threads = [threading.Thread(target=lambda n=n: [bucket.acquire() for _ in range(n)]) for n in (3, 3, 3, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # then: at least 10 intervals of 20 ms
        assert time.monotonic() - started >= 0.19


class TestQuota:
    def test_default_quota(self):
        assert ratelimit.quota("ecs") == (DEFAULT_QPS, DEFAULT_QPS / 2)

    def test_quota_and_burst_from_the_environment(self, monkeypatch):
        # given
        monkeypatch.setenv("ACRVPC_QPS_ECS", "8")
        monkeypatch.setenv("ACRVPC_BURST_CR", "3")
        # then
        assert ratelimit.quota("ecs") == (8.0, 4.0)
        assert ratelimit.quota("cr") == (DEFAULT_QPS, 3.0)

    def test_zero_means_no_limiter(self, monkeypatch):
        monkeypatch.setenv("ACRVPC_QPS_VPC", "0")
        assert ratelimit.limiter("vpc", "cn-hangzhou") is None

    @pytest.mark.parametrize("value", ["fast", "-1"])
    def test_a_bad_value_names_the_variable(self, monkeypatch, value):
        monkeypatch.setenv("ACRVPC_QPS_ECS", value)
        with pytest.raises(ValueError, match="ACRVPC_QPS_ECS"):
            ratelimit.quota("ecs")


class TestLimiter:
    def test_one_bucket_per_product_and_region(self):
        # when
        a = ratelimit.limiter("ecs", "cn-hangzhou")
        # then
        assert ratelimit.limiter("ecs", "cn-hangzhou") is a
        assert ratelimit.limiter("ecs", "cn-shanghai") is not a
        assert ratelimit.limiter("vpc", "cn-hangzhou") is not a

    def test_a_changed_quota_gives_a_new_bucket(self, monkeypatch):
        # given
        before = ratelimit.limiter("ecs", "cn-hangzhou")
        # when
        monkeypatch.setenv("ACRVPC_QPS_ECS", "5")
        after = ratelimit.limiter("ecs", "cn-hangzhou")
        # then
        assert after is not before and after.qps == 5.0
