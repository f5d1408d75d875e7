"""The per-host quota broker (acrvpc/cloud/quota_broker.py) and its client in SharedLimiter.

Real unix sockets and a real broker; the reservation on the Prefect server (the broker's own server
boundary) is an injected ``acquire`` here, and the real one in tests/e2e/test_shared_quota.py.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import threading
import time

import pytest

from acrvpc.cloud import quota_broker, shared_limit
from acrvpc.cloud.quota_broker import Grant, QuotaBroker
from acrvpc.cloud.shared_limit import (
    SLOTS_PER_CALL,
    BrokerUnavailable,
    LimitGone,
    LimitShape,
    SharedLimiter,
    ask_broker,
    call_waits,
    limit_settings,
)

NAME = "acrvpc-qps-ecs-cn-hangzhou"


@pytest.fixture(autouse=True)
def broker_state():
    shared_limit._broker_down.clear()
    shared_limit._broker_said.clear()
    yield
    shared_limit._broker_down.clear()
    shared_limit._broker_said.clear()


class Recorder:
    """An ``acquire`` for the broker: records each batch's size; the first batch may be held back."""

    def __init__(
        self,
        hold_first: bool = False,
        error: Exception | None = None,
        direct: bool = False,
        first_at: float = 0.0,
        spacing: float = 1.0,
    ) -> None:
        self.first_at, self.spacing = first_at, spacing
        self.sizes: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self.error, self.direct = error, direct

    def __call__(self, name: str, calls: int) -> Grant:
        self.sizes.append(calls)
        self.entered.set()
        assert self.release.wait(10)
        if self.error is not None:
            raise self.error
        if self.direct:
            return Grant(None, 1)
        now = time.monotonic()
        first = self.first_at if len(self.sizes) == 1 else 0.0
        return Grant([now + first + j * self.spacing for j in range(calls)], 2)


class TestCallWaits:
    shape = LimitShape(*limit_settings(10, 1))  # 9.5 calls/s, a burst of one call

    def test_the_calls_of_a_batch_are_spaced_one_per_call_time_never_together(self):
        # given: an empty queue, then our 3 calls' slots on top of it
        backlog = 3 * SLOTS_PER_CALL
        # when
        waits = call_waits(backlog, self.shape, 3)
        # then: the first goes at once (within the burst), the others 1/qps apart
        step = 1 / self.shape.qps
        assert waits == pytest.approx([0.0, step, 2 * step])

    def test_behind_a_backlog_the_last_call_waits_what_a_single_reservation_waits(self):
        # given: 10 calls queued before our 4
        backlog = 14 * SLOTS_PER_CALL
        # when
        waits = call_waits(backlog, self.shape, 4)
        # then: call j goes when the backlog has drained to the burst plus the calls after it
        burst = self.shape.burst_slots
        expected = [(backlog - burst - (3 - j) * SLOTS_PER_CALL) / self.shape.decay for j in range(4)]
        assert waits == pytest.approx(expected)
        assert waits[-1] == pytest.approx(call_waits(backlog, self.shape, 1)[0])
        assert waits == sorted(waits) and len(set(waits)) == 4

    def test_an_old_shaped_limit_never_waits_here(self):
        assert call_waits(500, LimitShape(50, 200.0), 3) == [0.0, 0.0, 0.0]


def ask_in_threads(path: str, n: int) -> tuple[list[threading.Thread], list]:
    answers: list = [None] * n

    def one(i: int) -> None:
        try:
            answers[i] = ask_broker(path, NAME)
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            answers[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    return threads, answers


class TestBroker:
    def test_the_socket_is_in_a_private_directory_and_gone_after_stop(self):
        broker = QuotaBroker(Recorder())
        path = broker.start()
        try:
            assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
            assert stat.S_ISSOCK(os.stat(path).st_mode)
        finally:
            broker.stop()
        assert not os.path.exists(os.path.dirname(path))

    def test_requests_arriving_during_a_reservation_go_as_one_batch(self):
        # given: a broker whose first reservation is still in flight
        acquire = Recorder(hold_first=True)
        with QuotaBroker(acquire) as broker:
            first, first_answer = ask_in_threads(broker.path, 1)
            first[0].start()
            assert acquire.entered.wait(10)
            # when: 5 more requests arrive meanwhile, then the reservation returns
            rest, answers = ask_in_threads(broker.path, 5)
            [t.start() for t in rest]
            deadline = time.monotonic() + 10
            while sum(len(s.pending) for s in broker._limits.values()) < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            acquire.release.set()
            [t.join(10) for t in first + rest]
            counters = broker.counters()
        # then: two batches, of 1 and of 5 calls; each waiter got its own call's deadline (all different)
        assert acquire.sizes == [1, 5]
        assert all(isinstance(a, float) for a in first_answer + answers), answers
        assert len(set(answers)) == 5
        assert sorted(answers)[-1] - sorted(answers)[0] == pytest.approx(4.0, abs=0.01)
        assert counters["batches"] == 2 and counters["calls"] == 6 and counters["server_requests"] == 4
        assert counters["requests_per_call"] == pytest.approx(4 / 6, abs=0.01)

    def test_a_batch_never_exceeds_the_cap(self):
        acquire = Recorder(hold_first=True, spacing=0.0)
        acquire.cap = lambda name: 2  # type: ignore[attr-defined]
        with QuotaBroker(acquire) as broker:
            threads, answers = ask_in_threads(broker.path, 5)
            threads[0].start()
            assert acquire.entered.wait(10)
            [t.start() for t in threads[1:]]
            deadline = time.monotonic() + 10
            while sum(len(s.pending) for s in broker._limits.values()) < 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            acquire.release.set()
            [t.join(10) for t in threads]
        assert acquire.sizes == [1, 2, 2]
        assert all(isinstance(a, float) for a in answers)

    def test_requests_arriving_while_granted_calls_still_wait_are_reserved_together_just_in_time(self, monkeypatch):
        # given: a first call granted 2 s ahead (a backlog), batches reserved 0.5 s before the last granted call
        monkeypatch.setattr(quota_broker, "LEAD_SECONDS", 0.5)
        acquire = Recorder(first_at=2.0)
        with QuotaBroker(acquire) as broker:
            first = ask_broker(broker.path, NAME)
            # when: three requests arrive one after the other meanwhile
            threads, answers = ask_in_threads(broker.path, 3)
            for t in threads:
                t.start()
                time.sleep(0.05)
            [t.join(10) for t in threads]
        # then: one batch for the three, reserved before the first call's turn (0.5 s ahead of it)
        assert acquire.sizes == [1, 3]
        assert all(isinstance(a, float) for a in answers) and len(set(answers)) == 3, answers
        assert min(answers) < first  # the Recorder grants from the moment it is asked

    def test_a_failed_reservation_answers_every_waiter_of_the_batch(self):
        with QuotaBroker(Recorder(error=RuntimeError("500 from the server"))) as broker:
            with pytest.raises(BrokerUnavailable, match="500 from the server"):
                ask_broker(broker.path, NAME)
        with QuotaBroker(Recorder(error=LimitGone("the shared rate limit is gone"))) as broker:
            with pytest.raises(LimitGone, match="gone"):
                ask_broker(broker.path, NAME)

    def test_an_old_shaped_limit_is_answered_direct(self):
        with QuotaBroker(Recorder(direct=True)) as broker:
            assert ask_broker(broker.path, NAME) is None

    def test_a_waiter_that_left_loses_its_slot_and_the_broker_serves_on(self):
        acquire = Recorder(hold_first=True)
        with QuotaBroker(acquire) as broker:
            # given: a client that asks, then closes before its answer
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(broker.path)
            sock.sendall(b'{"limit": "%s", "calls": 1}\n' % NAME.encode())
            assert acquire.entered.wait(10)
            sock.close()
            acquire.release.set()
            # when / then: the next request is answered
            assert isinstance(ask_broker(broker.path, NAME), float)
            assert broker.counters()["calls"] == 2

    def test_a_bad_request_gets_an_error_naming_the_fields(self):
        with QuotaBroker(Recorder()) as broker:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(broker.path)
            sock.sendall(b'{"calls": 0}\n')
            answer = json.loads(sock.makefile().readline())
            sock.close()
        assert '"limit"' in answer["error"] and answer["gone"] is False


class DirectRecorder:
    """The SharedLimiter's direct reservation (the Prefect server), recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, name: str, slots: int) -> float:
        self.calls.append((name, slots))
        return 0.0


def limiter(broker: str | None, direct: DirectRecorder) -> SharedLimiter:
    return SharedLimiter(NAME, burst=1, lease=5, acquire=direct, broker=broker)


class TestClient:
    def test_a_call_waits_for_the_deadline_the_broker_gave(self):
        with QuotaBroker(Recorder()) as broker:
            direct, slept = DirectRecorder(), []
            broker._acquire.first_at = 100.0  # type: ignore[attr-defined]
            shared = limiter(broker.path, direct)
            shared.sleep = slept.append
            shared.acquire()
        assert direct.calls == [] and shared.brokered == 1 and shared.calls == 1
        assert slept and 99.0 < slept[0] <= 100.0  # the Recorder's first batch went 100 s from its answer

    def test_a_missing_broker_falls_back_to_the_direct_reservation_said_once(self, tmp_path, caplog):
        direct = DirectRecorder()
        shared = limiter(str(tmp_path / "no-such.sock"), direct)
        with caplog.at_level(logging.WARNING, logger="acrvpc.cloud.ratelimit"):
            shared.acquire()
            shared.acquire()
        assert len(direct.calls) == 2  # the second without asking the dead broker again
        assert shared.calls == 2 and shared.brokered == 0
        warnings = [r for r in caplog.records if "quota broker" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING

    def test_a_broker_that_never_answers_does_not_hang_the_run(self, tmp_path, monkeypatch):
        # given: a socket that accepts connections and never answers
        path = str(tmp_path / "mute.sock")
        mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        mute.bind(path)
        mute.listen(8)
        monkeypatch.setattr(shared_limit, "BROKER_ANSWER_TIMEOUT", 0.3)
        direct = DirectRecorder()
        try:
            # when
            limiter(path, direct).acquire()
        finally:
            mute.close()
        # then: the call reserved directly
        assert len(direct.calls) == 1

    def test_a_failing_broker_falls_back_and_a_gone_limit_raises(self):
        direct = DirectRecorder()
        with QuotaBroker(Recorder(error=RuntimeError("500"))) as broker:
            limiter(broker.path, direct).acquire()
        assert len(direct.calls) == 1
        shared_limit._broker_down.clear()
        with QuotaBroker(Recorder(error=LimitGone("gone"))) as broker:
            with pytest.raises(LimitGone):
                limiter(broker.path, direct).acquire()
        assert len(direct.calls) == 1

    def test_an_old_shaped_limit_reserves_directly_without_a_warning(self, caplog):
        direct = DirectRecorder()
        with QuotaBroker(Recorder(direct=True)) as broker, caplog.at_level(logging.WARNING):
            limiter(broker.path, direct).acquire()
        assert len(direct.calls) == 1
        assert not [r for r in caplog.records if "quota broker" in r.getMessage()]


class TestShapeFromTheBroker:
    """With a broker, a process learns the limit's shape only when it must reserve directly (``describe``)."""

    @staticmethod
    def described(shape: LimitShape, said: list[str]):
        def describe() -> LimitShape:
            said.append("read")
            return shape

        return describe

    def test_a_brokered_call_never_reads_the_limit(self):
        direct, said = DirectRecorder(), []
        with QuotaBroker(Recorder()) as broker:
            shared = SharedLimiter(
                NAME,
                burst=1,
                lease=5,
                acquire=direct,
                broker=broker.path,
                describe=self.described(LimitShape(1, 1), said),
            )
            shared.acquire()
            shared.acquire()
        assert said == [] and direct.calls == [] and shared.brokered == 2

    def test_the_first_direct_reservation_reads_the_shape_once_and_reserves_by_it(self, tmp_path):
        # given: no broker to ask, and a limit of 4 slots per call with a burst of 2 calls
        limit, decay = limit_settings(10.0, 2.0)
        shape = LimitShape(limit, decay)
        direct, said = DirectRecorder(), []
        shared = SharedLimiter(
            NAME,
            burst=1,
            lease=5,
            acquire=direct,
            broker=str(tmp_path / "no-such.sock"),
            describe=self.described(shape, said),
        )
        # when: two calls reserve directly
        shared.acquire()
        shared.acquire()
        # then: the shape was read once, and each reservation took its slots by it
        assert said == ["read"]
        assert direct.calls == [(NAME, shape.slots_per_call)] * 2
        assert shared.burst == shape.burst_calls

    def test_a_limit_that_cannot_be_described_raises_limit_gone(self, tmp_path):
        def gone() -> LimitShape:
            raise LimitGone("no shared rate limit")

        direct = DirectRecorder()
        shared = SharedLimiter(NAME, burst=1, lease=5, acquire=direct, broker=str(tmp_path / "x.sock"), describe=gone)
        with pytest.raises(LimitGone):
            shared.acquire()
        assert direct.calls == []


def test_a_process_with_a_broker_looks_its_limit_up_without_the_server(monkeypatch):
    """``ratelimit.take`` in a run of a brokered worker: no request to the Prefect server before the broker's answer."""
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    from acrvpc.cloud import ratelimit

    server = socket.socket()  # where PREFECT_API_URL points: counts connections and closes each at once
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    connections: list[int] = []

    def count() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            connections.append(1)
            conn.close()

    threading.Thread(target=count, daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/api"
    monkeypatch.setenv("ACRVPC_QPS_ECS", "10")
    ratelimit.reset()
    try:
        with (
            QuotaBroker(Recorder()) as broker,
            temporary_settings({PREFECT_API_URL: url, PREFECT_CLIENT_MAX_RETRIES: 0}),
        ):
            monkeypatch.setenv("ACRVPC_QUOTA_BROKER", broker.path)
            ratelimit.take("ecs", "cn-hangzhou")
            shared = ratelimit.shared_limiter("ecs", "cn-hangzhou")
    finally:
        server.close()
        ratelimit.reset()
    # then: the call took its turn from the broker, and nothing connected to the server to look the limit up
    # (a look-up would fail here after shared_limit.SERVER_RETRY_DELAYS: the client does not retry itself)
    assert shared is not None and shared.brokered == 1
    assert connections == []
