"""Which of a pool's scheduled runs an ``acrvpc-process`` worker tries: its share first, anyone's once overdue.

Every worker of a pool polls the same scheduled runs and tries to submit each one; the first Pending
proposal wins and the others are refused ("cannot transition to a PENDING"). With two workers in the
50-spec fleet (issue 15), 86 submissions were tried for 50 runs: each refused one costs the Prefect
server a deployment read and an orchestrated state proposal, and whichever worker polled first took
most runs (37 against 13), so one zygote's start gate queued runs while the other's idled.

So each worker of the pool owns a share: the run whose id, as an integer, modulo the number of the
pool's online workers, is this worker's place among their sorted names (run ids are random UUIDs: the
shares are even). A worker submits the runs it owns, and any run that is :func:`overdue` (due more
than ``grace`` seconds ago: its owner is gone, stuck, or at its ``--limit``). No run waits on a worker
that will not take it longer than ``grace``; a worker that died drops out of the members once its
heartbeat is :data:`STALE_HEARTBEATS` intervals old. Workers of other types on the pool (Prefect's own
process worker) count as members and try every run, as before. Members are read from the server
(``POST /work_pools/{name}/workers/filter``) at the first poll that finds runs, then at most once per
heartbeat interval (a worker joins or leaves at that granularity anyway: one request per 30 s by
default); a failed read shares nothing (every run is tried, Prefect's behaviour).

The members must all poll the pool's every queue: the server does not say which queues a worker polls,
so a run of a queue its owner does not poll would wait the grace. A worker started with
``--work-queue`` does not share (it tries every run it sees); set ``ACRVPC_WORKER_SHARE=false`` on the
other workers of such a pool too.
"""

from __future__ import annotations

import datetime
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

STALE_HEARTBEATS = 3  # a worker whose last heartbeat is older than this many of its intervals is not a member
MIN_GRACE_SECONDS = 5.0  # a run due longer ago than max(this, 2 polls) is anyone's

logger = logging.getLogger(__name__)


def owner(run_id: uuid.UUID, members: Sequence[str]) -> str:
    """The member whose share ``run_id`` is in (``members`` non-empty)."""
    names = sorted(set(members))
    return names[run_id.int % len(names)]


def overdue(due: datetime.datetime | None, now: datetime.datetime, grace: float) -> bool:
    """A run due more than ``grace`` seconds before ``now`` (or with no due time) is anyone's."""
    return due is None or (now - due).total_seconds() > grace


def grace_seconds(query_seconds: float) -> float:
    """How long a run waits for its owner: two of the owner's polls (at least :data:`MIN_GRACE_SECONDS`)."""
    return max(MIN_GRACE_SECONDS, 2.0 * query_seconds)


def mine(responses: list[Any], me: str, members: Sequence[str], now: datetime.datetime, grace: float) -> list[Any]:
    """The ``WorkerFlowRunResponse``\\ s worker ``me`` submits: its share, and the overdue ones.

    With fewer than two members, or ``me`` not among them (it has not sent its first heartbeat yet): all.
    """
    if len(set(members)) < 2 or me not in members:
        return responses
    return [
        response
        for response in responses
        if owner(response.flow_run.id, members) == me
        or overdue(response.flow_run.next_scheduled_start_time or response.flow_run.expected_start_time, now, grace)
    ]


def online(workers: list[Any], now: datetime.datetime, default_interval: float) -> list[str]:
    """Names of the ``Worker`` rows that are ONLINE with a heartbeat newer than :data:`STALE_HEARTBEATS` intervals."""
    names = []
    for worker in workers:
        status = getattr(worker.status, "value", worker.status)
        beat = worker.last_heartbeat_time
        interval = float(worker.heartbeat_interval_seconds or default_interval)
        if status == "ONLINE" and beat is not None and (now - beat).total_seconds() <= STALE_HEARTBEATS * interval:
            names.append(worker.name)
    return names


class PoolMembers:
    """The pool's online workers' names, read from the server at most once per heartbeat interval."""

    def __init__(self) -> None:
        self._names: list[str] = []
        self._read_at = float("-inf")

    async def names(self, client: Any, pool: str, heartbeat_seconds: float) -> list[str]:
        """The members (cached); after a failed read, none (every run is tried) until the next read."""
        if time.monotonic() - self._read_at < max(1.0, heartbeat_seconds):
            return self._names
        self._read_at = time.monotonic()
        try:
            workers = await client.read_workers_for_work_pool(work_pool_name=pool, limit=200)
        except Exception as exc:  # noqa: BLE001 - sharing is an optimisation: without it every run is tried
            logger.debug("could not read the workers of pool %r: %s", pool, exc)
            self._names = []
        else:
            self._names = online(workers, datetime.datetime.now(datetime.UTC), heartbeat_seconds)
        return self._names
