"""The client-side rate limiter: token bucket arithmetic, thread safety, quotas from the environment."""

from __future__ import annotations

import threading
import time

import pytest

from acrvpc.cloud import ratelimit
from acrvpc.cloud.ratelimit import DEFAULT_QPS, TokenBucket


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


class TestSharedLimitNames:
    def test_one_limit_per_product_and_region(self, monkeypatch):
        monkeypatch.delenv(ratelimit.PREFIX_ENV, raising=False)
        assert ratelimit.limit_name("ECS", "cn-hangzhou") == "acrvpc-qps-ecs-cn-hangzhou"
        assert ratelimit.limit_name("cr", "cn-shanghai") == "acrvpc-qps-cr-cn-shanghai"

    def test_a_prefix_per_account(self, monkeypatch):
        monkeypatch.setenv(ratelimit.PREFIX_ENV, "acct-prod")
        assert ratelimit.limit_name("vpc", "cn-hangzhou") == "acct-prod-qps-vpc-cn-hangzhou"

    @pytest.mark.parametrize("value", ["a/b", "-x", "two words", "x%y"])
    def test_a_bad_prefix_names_the_variable(self, monkeypatch, value):
        monkeypatch.setenv(ratelimit.PREFIX_ENV, value)
        with pytest.raises(ValueError, match="ACRVPC_QPS_LIMIT_PREFIX"):
            ratelimit.limit_name("ecs", "cn-hangzhou")


class TestLeaseArithmetic:
    @pytest.mark.parametrize(
        "waiting, lease, burst, size",
        [
            (1, 5, 10, 1),  # one caller: one call's slots, nothing taken for later
            (3, 5, 10, 3),  # every waiting call in one round trip
            (12, 5, 10, 5),  # at most the lease
            (12, 50, 10, 10),  # never more than the limit holds (the server answers 422)
            (0, 5, 10, 1),
            (4, 5, 1.5, 1),
        ],
    )
    def test_lease_size(self, waiting, lease, burst, size):
        assert ratelimit.lease_size(waiting, lease, burst) == size

    def test_limit_settings_make_a_queue_of_a_minute_above_the_burst(self):
        # decay = 95 % of qps calls per second in slots; limit = a minute of that backlog + the burst
        spc = ratelimit.SLOTS_PER_CALL
        assert ratelimit.PACE == 0.95
        assert ratelimit.limit_settings(20, 10) == (19 * spc * 60 + 10 * spc, 19.0 * spc)
        assert ratelimit.limit_settings(20, None) == (19 * spc * 60 + 10 * spc, 19.0 * spc)  # half a second's worth
        assert ratelimit.limit_settings(1, None) == (57 * spc + spc, 0.95 * spc)  # at least one call
        with pytest.raises(ValueError, match="qps"):
            ratelimit.limit_settings(0, None)

    def test_every_process_reads_the_quota_back_off_the_row(self):
        shape = ratelimit.LimitShape(*ratelimit.limit_settings(20, 4))
        assert shape.queued and (shape.quota, shape.qps, shape.burst_calls, shape.slots_per_call) == (
            pytest.approx(20),
            pytest.approx(19),
            4,
            ratelimit.SLOTS_PER_CALL,
        )

    def test_a_limit_of_the_old_shape_is_read_as_before(self):
        # the first design wrote limit = burst * 10, decay = qps * 10
        shape = ratelimit.LimitShape(10 * 10, 20.0 * 10)
        assert not shape.queued
        assert (shape.qps, shape.burst_calls, shape.slots_per_call) == (20, 10, ratelimit.LEGACY_SLOTS_PER_CALL)

    def test_lease_from_the_environment(self, monkeypatch):
        monkeypatch.delenv(ratelimit.LEASE_ENV, raising=False)
        assert ratelimit.lease_limit() == ratelimit.DEFAULT_LEASE
        monkeypatch.setenv(ratelimit.LEASE_ENV, "1")
        assert ratelimit.lease_limit() == 1

    @pytest.mark.parametrize("value", ["0", "-2", "2.5", "many"])
    def test_a_bad_lease_names_the_variable(self, monkeypatch, value):
        monkeypatch.setenv(ratelimit.LEASE_ENV, value)
        with pytest.raises(ValueError, match="ACRVPC_QPS_LEASE"):
            ratelimit.lease_limit()


class SlowServer:
    """Stands in for the server's grant: records each acquisition's slots, takes ``delay`` seconds."""

    def __init__(self, delay: float = 0.05, fail: int = 0) -> None:
        self.delay = delay
        self.fail = fail
        self.grants: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, name: str, slots: int) -> None:
        time.sleep(self.delay)
        with self.lock:
            if self.fail:
                self.fail -= 1
                raise RuntimeError("server unreachable")
            self.grants.append(slots)


class TestSharedLimiterLease:
    def test_one_caller_takes_one_call_per_round_trip(self):
        server = SlowServer(delay=0)
        limiter = ratelimit.SharedLimiter("n", burst=10, lease=5, acquire=server)
        for _ in range(3):
            limiter.acquire()
        assert server.grants == [ratelimit.SLOTS_PER_CALL] * 3
        assert (limiter.acquisitions, limiter.calls) == (3, 3)

    def test_waiting_threads_share_acquisitions_and_no_slot_is_wasted(self):
        # given: 12 threads wanting a token at once, a server taking 50 ms per grant
        server = SlowServer(delay=0.05)
        limiter = ratelimit.SharedLimiter("n", burst=10, lease=5, acquire=server)
        threads = [threading.Thread(target=limiter.acquire) for _ in range(12)]
        # when
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # then: every slot granted served a call, no acquisition larger than the lease, fewer round trips than calls
        assert sum(server.grants) == 12 * ratelimit.SLOTS_PER_CALL
        assert max(server.grants) <= 5 * ratelimit.SLOTS_PER_CALL
        assert len(server.grants) < 12
        assert limiter.calls == 12

    def test_a_failed_acquisition_raises_and_the_next_caller_asks_again(self):
        server = SlowServer(delay=0, fail=1)
        limiter = ratelimit.SharedLimiter("n", burst=10, lease=5, acquire=server)
        with pytest.raises(RuntimeError, match="unreachable"):
            limiter.acquire()
        limiter.acquire()
        assert server.grants == [ratelimit.SLOTS_PER_CALL]


class TestFallback:
    def test_without_a_prefect_api_url_the_bucket_is_used_and_said_once(self, monkeypatch, caplog):
        from prefect.settings import PREFECT_API_URL, temporary_settings

        monkeypatch.setenv("ACRVPC_QPS_ECS", "1000")
        with temporary_settings({PREFECT_API_URL: None}), caplog.at_level("INFO", logger="acrvpc.cloud.ratelimit"):
            assert ratelimit.shared_limiter("ecs", "cn-hangzhou") is None
            for _ in range(3):
                ratelimit.take("ecs", "cn-hangzhou")
        said = [r for r in caplog.records if "no Prefect API URL" in r.getMessage()]
        assert len(said) == 1 and said[0].levelname == "INFO"
        assert ratelimit.limiter("ecs", "cn-hangzhou") is not None


class TestServerHiccups:
    def test_a_failing_server_is_asked_again_before_falling_back(self):
        answers = iter([RuntimeError("500 QueuePool limit reached"), RuntimeError("500 again"), "limit"])

        def ask():
            answer = next(answers)
            if isinstance(answer, Exception):
                raise answer
            return answer

        assert ratelimit._patiently(ask, delays=(0, 0, 0)) == "limit"

    def test_after_the_last_attempt_the_error_is_raised(self):
        calls = []

        def ask():
            calls.append(1)
            raise RuntimeError("down")

        with pytest.raises(RuntimeError, match="down"):
            ratelimit._patiently(ask, delays=(0, 0))
        assert len(calls) == 3


def count_settings_reads(monkeypatch) -> list[int]:
    """Count the ``prefect.settings.Settings()`` builds from now on (each costs ~19 ms of CPU)."""
    import prefect.settings

    reads: list[int] = []

    class Counted(prefect.settings.Settings):
        def __init__(self, *args, **kwargs):
            reads.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(prefect.settings, "Settings", Counted)
    return reads


class TestApiUrlReuse:
    def test_a_changed_environment_is_noticed_at_once(self, monkeypatch):
        from acrvpc.prefect_api import api_url, forget_api_url

        forget_api_url()
        monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
        assert api_url(max_age=60) == "http://127.0.0.1:9/api"
        monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:10/api")
        assert api_url(max_age=60) == "http://127.0.0.1:10/api"

    def test_a_settings_context_is_noticed_at_once(self, monkeypatch):
        from prefect.settings import PREFECT_API_URL, Settings, temporary_settings

        from acrvpc.prefect_api import api_url, forget_api_url

        forget_api_url()
        monkeypatch.delenv("PREFECT_API_URL", raising=False)
        before = api_url(max_age=60)
        # what a profile (or prefect.toml) names wins over a settings context; here, on a test machine, none
        # does, unless the root context holds one from an earlier test's environment (then only `before` shows it)
        profile = Settings().api.url
        with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:11/api"}):
            inside = api_url(max_age=60)
        assert inside == (str(profile) if profile else "http://127.0.0.1:11/api")
        assert api_url(max_age=60) == before

    def test_a_reused_answer_costs_no_settings_read(self, monkeypatch):
        # Settings() costs ~19 ms of CPU (bench/shared_quota.py measures it); a reused answer reads none

        from acrvpc.prefect_api import api_url, forget_api_url

        forget_api_url()
        monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
        reads = count_settings_reads(monkeypatch)
        assert api_url() == "http://127.0.0.1:9/api" and len(reads) == 1  # max_age 0: read afresh
        assert [api_url(max_age=60) for _ in range(100)] == ["http://127.0.0.1:9/api"] * 100
        assert len(reads) == 2  # the first reuse-allowed call read once more (the fresh read cached nothing)

    def test_a_flow_run_process_uses_the_url_its_run_reports_to_without_a_settings_read(self, monkeypatch):
        # a worker's flow-run process (PREFECT__FLOW_RUN_ID) read its settings when it started: no Settings() more
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from acrvpc.prefect_api import api_url, forget_api_url

        forget_api_url()
        monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
        monkeypatch.setenv("PREFECT__FLOW_RUN_ID", "00000000-0000-0000-0000-000000000001")
        reads = count_settings_reads(monkeypatch)
        with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:11/api"}):
            assert api_url() == "http://127.0.0.1:11/api"
            assert api_url(max_age=60) == "http://127.0.0.1:11/api"
        assert reads == []
        monkeypatch.delenv("PREFECT__FLOW_RUN_ID")  # any other process reads its settings afresh, as before
        assert api_url() == "http://127.0.0.1:9/api" and len(reads) == 1

    def test_concurrent_first_callers_share_one_settings_read(self, monkeypatch):
        # a run's preflight reads start together: each used to build its own Settings() (~20 ms of CPU)
        import threading

        from acrvpc.prefect_api import api_url, forget_api_url

        forget_api_url()
        monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
        reads = count_settings_reads(monkeypatch)
        gate = threading.Barrier(8)
        answers = []

        def ask():
            gate.wait()
            answers.append(api_url(max_age=60))

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers == ["http://127.0.0.1:9/api"] * 8
        assert len(reads) == 1


class TestServerAnswers:
    def test_a_refusal_is_not_asked_again(self):
        class Refused(Exception):
            class response:
                status_code = 423

        calls = []

        def ask():
            calls.append(1)
            raise Refused()

        with pytest.raises(Refused):
            ratelimit._patiently(ask, delays=(0, 0))
        assert len(calls) == 1
