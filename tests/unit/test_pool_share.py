"""Which of a pool's scheduled runs an acrvpc-process worker tries (acrvpc/pool_share.py), on Prefect's own schema objects."""

from __future__ import annotations

import datetime
import uuid

from prefect.client.schemas.objects import FlowRun, Worker, WorkerStatus
from prefect.client.schemas.responses import WorkerFlowRunResponse

from acrvpc import pool_share

NOW = datetime.datetime(2026, 12, 7, 9, 0, tzinfo=datetime.UTC)
GRACE = 5.0


def response(due_seconds_ago: float | None = 0.0) -> WorkerFlowRunResponse:
    due = None if due_seconds_ago is None else NOW - datetime.timedelta(seconds=due_seconds_ago)
    run = FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), expected_start_time=due)
    return WorkerFlowRunResponse(work_pool_id=uuid.uuid4(), work_queue_id=uuid.uuid4(), flow_run=run)


def ids(responses: list[WorkerFlowRunResponse]) -> set[uuid.UUID]:
    return {r.flow_run.id for r in responses}


class TestOwner:
    def test_every_run_has_one_owner_and_the_shares_are_even(self):
        members = ["fleet-1", "fleet-0"]
        owners = [pool_share.owner(uuid.uuid4(), members) for _ in range(2000)]
        assert set(owners) == {"fleet-0", "fleet-1"}
        assert 850 <= owners.count("fleet-0") <= 1150

    def test_the_owner_does_not_depend_on_the_order_the_server_lists_the_workers(self):
        for _ in range(50):
            run = uuid.uuid4()
            assert pool_share.owner(run, ["a", "b", "c"]) == pool_share.owner(run, ["c", "a", "b", "a"])


class TestMine:
    def test_two_workers_split_the_due_runs_without_overlap(self):
        runs = [response(0.5) for _ in range(40)]
        a = pool_share.mine(runs, "a", ["a", "b"], NOW, GRACE)
        b = pool_share.mine(runs, "b", ["b", "a"], NOW, GRACE)
        assert ids(a) | ids(b) == ids(runs)
        assert not ids(a) & ids(b)
        assert a and b

    def test_a_run_its_owner_left_waiting_past_the_grace_is_anyones(self):
        late, fresh = response(GRACE + 1), response(0.0)
        members = ["a", "b"]
        other = "b" if pool_share.owner(late.flow_run.id, members) == "a" else "a"
        assert late in pool_share.mine([late, fresh], other, members, NOW, GRACE)
        undated = response(None)  # no due time: anyone's
        assert (
            pool_share.mine([undated], "a", members, NOW, GRACE)
            == pool_share.mine([undated], "b", members, NOW, GRACE)
            == [undated]
        )

    def test_a_prefetched_run_not_yet_due_waits_for_its_owner(self):
        future = response(-5.0)  # due in 5 s (the worker prefetches)
        members = ["a", "b"]
        other = "b" if pool_share.owner(future.flow_run.id, members) == "a" else "a"
        assert pool_share.mine([future], other, members, NOW, GRACE) == []

    def test_alone_or_unknown_to_the_pool_a_worker_tries_every_run(self):
        runs = [response() for _ in range(10)]
        assert pool_share.mine(runs, "a", ["a"], NOW, GRACE) == runs
        assert pool_share.mine(runs, "a", [], NOW, GRACE) == runs
        assert pool_share.mine(runs, "new", ["a", "b"], NOW, GRACE) == runs  # before its first heartbeat


class TestMembers:
    def worker(self, name: str, status: str = "ONLINE", beat_seconds_ago: float | None = 5, interval: int | None = 30):
        beat = None if beat_seconds_ago is None else NOW - datetime.timedelta(seconds=beat_seconds_ago)
        return Worker(
            name=name,
            work_pool_id=uuid.uuid4(),
            status=WorkerStatus(status),
            last_heartbeat_time=beat,
            heartbeat_interval_seconds=interval,
        )

    def test_only_online_workers_with_a_recent_heartbeat_count(self):
        workers = [
            self.worker("live"),
            self.worker("offline", status="OFFLINE"),
            self.worker("silent", beat_seconds_ago=91),  # 3 intervals of 30 s ago and more: dead
            self.worker("never", beat_seconds_ago=None),
            self.worker("quick", beat_seconds_ago=20, interval=5),  # 4 of its 5 s intervals
            self.worker("default", beat_seconds_ago=80, interval=None),  # the default interval (30 s) applies
        ]
        assert pool_share.online(workers, NOW, default_interval=30) == ["live", "default"]

    def test_the_grace_is_two_polls_and_never_under_five_seconds(self):
        assert pool_share.grace_seconds(10) == 20
        assert pool_share.grace_seconds(1) == pool_share.MIN_GRACE_SECONDS == 5


class TestWorkerShares:
    def test_by_default_unless_told_or_polling_some_queues_only(self, monkeypatch):
        from acrvpc.warm_worker import WarmProcessWorker

        assert WarmProcessWorker(work_pool_name="p")._share is True
        assert WarmProcessWorker(work_pool_name="p", work_queues=["nightly"])._share is False
        monkeypatch.setenv("ACRVPC_WORKER_SHARE", "false")
        assert WarmProcessWorker(work_pool_name="p")._share is False
