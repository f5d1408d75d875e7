"""The per-host quota broker: one host's flow runs take their Alibaba Cloud turns from their worker.

Why: a flow run of a process worker takes each call's token from the shared Prefect limit
(:mod:`acrvpc.cloud.shared_limit`) with two HTTP requests (an increment and a read). In the
50-spec fleet that was ~18 of the Prefect server's 44 CPU seconds, on the same 2 cores as the
runs; and the calls of one reservation went together, so calls reserved by several processes
within one round trip bunched on top of the account's quota. The ``acrvpc-process`` worker
(acrvpc/warm_worker.py) runs a :class:`QuotaBroker` and sets ``ACRVPC_QUOTA_BROKER`` to its
socket before it starts zygotes or runs, so every run of the host (forked or cold) asks the broker:

- **group commit per limit**: while one reservation of a limit is in flight, requests accumulate;
  the next reservation takes all of them (at most the limit's burst plus :data:`BATCH_SECONDS` of
  calls, far below what the row holds) as ONE increment of ``k * SLOTS_PER_CALL`` slots and ONE
  read (:func:`~acrvpc.cloud.shared_limit.take_slots`): two server requests per batch, not per call.
- **just in time**: requests that arrive while the previous batch's calls still wait their turn
  cannot go before its last call anyway (first come, first served), so the next batch is reserved
  :data:`LEAD_SECONDS` before that call's deadline (or as soon as the batch is full, or
  :data:`MAX_HOLD_SECONDS` after its first request arrived), not at once:
  with a backlog, one batch covers every call the host asked for meanwhile. Without a backlog a
  request is reserved at once.
- **local spacing**: call ``j`` of a batch of ``k`` goes when the backlog has drained to the burst
  plus the ``k-1-j`` calls after it (:func:`~acrvpc.cloud.shared_limit.call_waits`): the batch's calls
  are ``1 / qps`` apart, never together.

Protocol (a unix connection per request, one line of JSON each way):
request ``{"limit": NAME, "calls": N}``; answer ``{"at": T}`` (a ``time.monotonic()`` deadline: the
client sleeps until then and calls; CLOCK_MONOTONIC is host-wide on Linux, and the broker and its
runs are on one host), ``{"direct": true}`` (the limit has the old burst-sized shape: the client
uses its own reservation path), or ``{"error": TEXT, "gone": BOOL}``.

Failure modes:

- a reservation that fails (the server still failing after ``patiently()``, the limit deleted or
  inactive) answers every waiter of the batch with the error; ``gone`` true raises ``LimitGone`` in
  the run (its calls fall back to the per-process bucket, as without a broker), otherwise the run
  reserves directly;
- a waiter whose connection closed before its answer (it timed out, its run ended) simply loses
  its slot: the reservation is made, and the call it stood for is never sent (the queue runs
  ``1 / qps`` late once);
- the client side never hangs on a dead broker: a missing or refusing socket fails at once, an
  answer is awaited :data:`~acrvpc.cloud.shared_limit.BROKER_ANSWER_TIMEOUT` seconds; then the run
  says so once (WARNING, in the run's log) and reserves on the server directly for a while.

Several hosts: each host's broker reserves from the same Prefect limit, which stays the one source
of truth; a host's batch is one reservation among the others', the queue orders them all.

Observability: the broker counts batches, calls and server requests; it logs a DEBUG line per
batch, an INFO line with the counters when it has been idle for :data:`IDLE_SUMMARY_SECONDS`
after activity, and an INFO summary when it stops (when the worker stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from acrvpc.cloud.shared_limit import (
    LimitGone,
    LimitShape,
    call_waits,
    prefect_client,
    read_limit,
    row_shape,
    take_slots,
)

BATCH_SECONDS = 20.0  # a batch takes at most the burst plus this many seconds of calls
DEFAULT_MAX_BATCH = 50  # calls per batch when the acquire function does not say (tests)
LEAD_SECONDS = 0.5  # a batch is reserved this long before the previous batch's last call goes (module docstring)
MAX_HOLD_SECONDS = 4.0  # a request is reserved at most this long after it arrived (clients wait 10 s for an answer)
IDLE_SUMMARY_SECONDS = 5.0  # the counters are logged once the broker has been idle this long after activity
MAX_LINE = 4096

logger = logging.getLogger(__name__)


@dataclass
class Grant:
    """What one batch got: each call's ``time.monotonic()`` deadline (None: the limit has the old shape)."""

    deadlines: list[float] | None
    requests: int = 0  # server requests made for it


class PrefectReservations:
    """The broker's default ``acquire``: batches reserved on the Prefect server's limits.

    Args:
        url: the Prefect API URL, or a function returning it (read at each batch; None: no server).
    """

    def __init__(self, url: str | Callable[[], str | None]) -> None:
        self._url = url
        self._shapes: dict[str, LimitShape] = {}

    def _client(self) -> Any:
        url = self._url() if callable(self._url) else self._url
        if not url:
            raise RuntimeError("the quota broker has no Prefect API URL")
        return prefect_client(url)

    def cap(self, name: str) -> int:
        """Calls one batch may take: the burst plus :data:`BATCH_SECONDS` of calls (the row holds a minute)."""
        shape = self._shapes.get(name)
        if shape is None or not shape.queued:
            return 1  # the first batch learns the shape
        return max(1, int(shape.burst_calls + BATCH_SECONDS * shape.qps))

    def __call__(self, name: str, calls: int) -> Grant:
        client, requests = self._client(), 0
        shape = self._shapes.get(name)
        if shape is None:
            row = read_limit(client, name)
            requests += 1
            if row is None or not row.get("active", True):
                raise LimitGone(
                    f"the shared rate limit {name!r} is gone or inactive (create it, or make it active: "
                    "python -m acrvpc.cloud.ratelimit --region REGION)"
                )
            shape = self._shapes[name] = row_shape(row)
        if not shape.queued:
            return Grant(None, requests)
        row, made = take_slots(client, name, calls * shape.slots_per_call)
        now = time.monotonic()
        self._shapes[name] = row_shape(row)
        waits = call_waits(float(row["active_slots"]), self._shapes[name], calls)
        return Grant([now + w for w in waits], requests + made)


@dataclass
class _Limit:
    pending: deque[tuple[asyncio.Future, int, float]] = field(default_factory=deque)  # (answer, calls, arrived)
    pending_calls: int = 0
    running: bool = False
    last_at: float = 0.0  # the deadline of the last call granted
    full: asyncio.Event = field(default_factory=asyncio.Event)  # pending calls reached the batch cap


class QuotaBroker:
    """Serves the host's runs their turns under the shared limits (see the module docstring).

    One thread of its own runs an asyncio loop: it accepts the unix connections, groups the
    requests per limit, and hands each batch's reservation (blocking HTTP) to a helper thread, one
    batch in flight per limit. Use :meth:`start` / :meth:`stop`, or as a context manager.

    Args:
        acquire: ``acquire(name, calls) -> Grant`` (default: :class:`PrefectReservations` on the
            process's Prefect API URL); an optional ``acquire.cap(name)`` bounds a batch.
        log: where the INFO summaries go (default: this module's logger).
    """

    def __init__(
        self,
        acquire: Callable[[str, int], Grant] | None = None,
        log: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> None:
        if acquire is None:
            from acrvpc.prefect_api import api_url

            acquire = PrefectReservations(lambda: api_url(max_age=60))
        self._acquire = acquire
        self._log = log or logger
        self._limits: dict[str, _Limit] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._dir: str | None = None
        self.path = ""
        self.batches = self.calls = self.requests = self.errors = self.abandoned = 0
        self._last_request = 0.0
        self._summarised = (0, 0)

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> str:
        """Listen on a socket in a private (0700) temp dir; returns its path."""
        self._dir = tempfile.mkdtemp(prefix="acrvpc-quota-")
        self.path = os.path.join(self._dir, "broker.sock")
        ready = threading.Event()
        failed: list[BaseException] = []

        def serve() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                self._server = loop.run_until_complete(asyncio.start_unix_server(self._serve, path=self.path))
                loop.create_task(self._idle_summaries())
            except BaseException as exc:  # noqa: BLE001 - handed to start()
                failed.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                with contextlib.suppress(BaseException):
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.close()

        self._thread = threading.Thread(target=serve, name="acrvpc-quota-broker", daemon=True)
        self._thread.start()
        ready.wait()
        if failed:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise failed[0]
        return self.path

    def stop(self) -> None:
        """Stop serving, remove the socket's directory, log the summary (waiters still queued get no answer)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._server is not None:
            loop.call_soon_threadsafe(self._server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self._loop = self._thread = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._log.info("quota broker stopped: %s", self.summary())

    def __enter__(self) -> QuotaBroker:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def counters(self) -> dict[str, float]:
        """``batches``, ``calls``, ``server_requests``, ``errors``, ``abandoned``, ``mean_batch``, ``requests_per_call``."""
        return {
            "batches": self.batches,
            "calls": self.calls,
            "server_requests": self.requests,
            "errors": self.errors,
            "abandoned": self.abandoned,
            "mean_batch": round(self.calls / self.batches, 2) if self.batches else 0.0,
            "requests_per_call": round(self.requests / self.calls, 3) if self.calls else 0.0,
        }

    def summary(self) -> str:
        c = self.counters()
        return (
            f"{c['batches']} batches, {c['calls']} calls (mean batch {c['mean_batch']}), "
            f"{c['server_requests']} server requests ({c['requests_per_call']} per call), "
            f"{c['errors']} failed batches, {c['abandoned']} answers nobody waited for"
        )

    # -- serving ----------------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve_one(reader, writer)
        except asyncio.CancelledError:  # the broker stops: end quietly (Python 3.11's stream callback would log it)
            writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            answer = await self._answer(line)
            if answer is not None:
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            self.abandoned += 1
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> dict | None:
        try:
            request = json.loads(line[:MAX_LINE])
            name, calls = str(request["limit"]), int(request.get("calls", 1))
            if not name or calls < 1:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return {"error": 'bad request: send {"limit": NAME, "calls": N >= 1} and a newline', "gone": False}
        self._last_request = time.monotonic()
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        state = self._limits.setdefault(name, _Limit())
        state.pending.append((future, calls, time.monotonic()))
        state.pending_calls += calls
        if state.pending_calls >= self._cap(name):
            state.full.set()
        if not state.running:
            state.running = True
            asyncio.get_running_loop().create_task(self._drain(name, state))
        return await future

    def _cap(self, name: str) -> int:
        cap = getattr(self._acquire, "cap", None)
        return cap(name) if callable(cap) else DEFAULT_MAX_BATCH

    async def _drain(self, name: str, state: _Limit) -> None:
        """Reserve the pending requests of one limit, a batch at a time, until none is left."""
        try:
            while state.pending:
                cap, calls = self._cap(name), 0
                now = time.monotonic()
                linger = min(state.last_at - LEAD_SECONDS, state.pending[0][2] + MAX_HOLD_SECONDS) - now
                if linger > 0 and state.pending_calls < cap:
                    # Calls asked now cannot go before the last granted one (first come, first served): gather
                    # them until just before it, then reserve them as one batch.
                    state.full.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(state.full.wait(), linger)
                batch: list[tuple[asyncio.Future, int]] = []
                while state.pending and (not batch or calls + state.pending[0][1] <= cap):
                    future, n, _ = state.pending.popleft()
                    batch.append((future, n))
                    calls += n
                state.pending_calls -= calls
                try:
                    grant = await asyncio.to_thread(self._acquire, name, calls)
                except Exception as exc:  # noqa: BLE001 - every waiter of the batch gets the error
                    self.errors += 1
                    error = {"error": f"{type(exc).__name__}: {str(exc)[:300]}", "gone": isinstance(exc, LimitGone)}
                    logger.debug("quota broker: %s: batch of %d calls failed: %s", name, calls, error["error"])
                    answers: list[dict] = [error] * len(batch)
                else:
                    self.requests += grant.requests
                    if grant.deadlines is None:
                        answers = [{"direct": True}] * len(batch)
                    else:
                        self.batches += 1
                        self.calls += calls
                        state.last_at = max(state.last_at, grant.deadlines[-1])
                        ends, answers = 0, []
                        for _, n in batch:
                            ends += n
                            answers.append({"at": grant.deadlines[ends - 1]})
                        logger.debug(
                            "quota broker: %s: batch of %d calls, %d server requests, the last in %.2f s",
                            name,
                            calls,
                            grant.requests,
                            grant.deadlines[-1] - time.monotonic(),
                        )
                for (future, _), answer in zip(batch, answers, strict=True):
                    if not future.done():
                        future.set_result(answer)
        finally:
            state.running = False

    async def _idle_summaries(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = (self.batches, self.errors)
            if now != self._summarised and time.monotonic() - self._last_request >= IDLE_SUMMARY_SECONDS:
                self._summarised = now
                self._log.info("quota broker idle: %s", self.summary())
