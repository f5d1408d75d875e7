"""The receiver's spool: deliveries accepted but whose flow run may not exist yet, kept on disk.

GitLab waits 10 s for an answer and does not resend on its own. A Prefect server creates a few
flow runs per second (``docs/benchmarks.md``: 5-9 here), so a burst of pushes cannot all get their
run created inside GitLab's timeout. The receiver therefore writes each routed delivery to this
spool (SQLite, one row per idempotency key) **before** it answers, tries to create the run within
a short budget, and answers either ``accepted`` with the run id or ``queued``. A
:class:`SpoolDrainer` creates the runs of queued deliveries in the background (and, after a
restart, of those a crash left behind), a few at a time, retrying while Prefect is unreachable.

Creating a run is idempotent (the key is the run's Prefect idempotency key), so a row started
twice (by a request that gave up and by the drainer) still makes one run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

_log = logging.getLogger("acrvpc.webhook")

StartRun = Callable[[dict[str, Any], str], Awaitable[str]]


class Spool:
    """Deliveries by idempotency key: their run parameters and, once created, their flow run id.

    Args:
        path: the SQLite file (created if missing); ``None`` keeps the spool in memory (tests:
            nothing survives the process).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = str(path) if path is not None else ":memory:"
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            if path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")  # an accepted delivery survives a power cut
            self._db.execute("CREATE TABLE IF NOT EXISTS deliveries (key TEXT PRIMARY KEY, parameters TEXT NOT NULL, "
                             "received REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL, "
                             "run_id TEXT)")

    def add(self, key: str, parameters: dict[str, Any]) -> str | None:
        """Record a delivery (once per key); returns its run id when one was already created."""
        now = time.time()
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO deliveries (key, parameters, received, next_try) VALUES (?, ?, ?, ?)",
                             (key, json.dumps(parameters, sort_keys=True), now, now))
            row = self._db.execute("SELECT run_id FROM deliveries WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def done(self, key: str, run_id: str) -> None:
        """The delivery's flow run exists."""
        with self._lock:
            self._db.execute("UPDATE deliveries SET run_id = ? WHERE key = ?", (run_id, key))

    def failed(self, key: str, retry_in: float) -> int:
        """Creating the run failed; try again after ``retry_in`` seconds. Returns the attempts so far."""
        with self._lock:
            self._db.execute("UPDATE deliveries SET attempts = attempts + 1, next_try = ? WHERE key = ?",
                             (time.time() + retry_in, key))
            row = self._db.execute("SELECT attempts FROM deliveries WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def due(self, older_than: float = 0.0, limit: int = 100) -> list[tuple[str, dict[str, Any], int]]:
        """Deliveries without a run, received at least ``older_than`` seconds ago and due for a try."""
        now = time.time()
        with self._lock:
            rows = self._db.execute("SELECT key, parameters, attempts FROM deliveries WHERE run_id IS NULL AND "
                                    "received <= ? AND next_try <= ? ORDER BY received LIMIT ?",
                                    (now - older_than, now, limit)).fetchall()
        return [(key, json.loads(params), attempts) for key, params, attempts in rows]

    def pending(self) -> int:
        """How many deliveries still wait for their run."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM deliveries WHERE run_id IS NULL").fetchone()[0])

    def forget_done(self, older_than: float) -> None:
        """Drop deliveries whose run was created more than ``older_than`` seconds after they came."""
        with self._lock:
            self._db.execute("DELETE FROM deliveries WHERE run_id IS NOT NULL AND received < ?",
                             (time.time() - older_than,))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def retry_delay(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failures: 1, 2, 4 ... at most 60."""
    return float(min(2 ** max(attempts - 1, 0), 60))


async def drain_once(spool: Spool, start_run: StartRun, *, older_than: float = 0.0, concurrency: int = 4,
                     timeout: float = 30.0) -> int:
    """Create the runs of the due deliveries, ``concurrency`` at a time; returns how many were created."""
    due = spool.due(older_than)
    if not due:
        return 0
    gate = asyncio.Semaphore(concurrency)
    created = 0

    async def one(key: str, parameters: dict[str, Any], attempts: int) -> None:
        nonlocal created
        async with gate:
            try:
                run_id = await asyncio.wait_for(start_run(parameters, f"gitlab:{key}"), timeout)
            except Exception as exc:  # noqa: BLE001 - kept, retried later; the details stay in our log
                tries = spool.failed(key, retry_delay(attempts + 1))
                _log.warning("delivery %r: creating its run failed (%s), try %d; retrying", key,
                             type(exc).__name__, tries)
                return
            spool.done(key, run_id)
            created += 1
            _log.info("delivery %r: flow run %s created from the spool", key, run_id)

    await asyncio.gather(*(one(*item) for item in due))
    return created


class SpoolDrainer:
    """A background thread that keeps creating the runs of queued deliveries.

    Args:
        spool: the receiver's spool.
        start_run: how to create a run (the receiver's).
        interval: seconds between looks at the spool.
        grace: leave deliveries younger than this to the request that received them.
        concurrency: runs created at a time (the Prefect server's pace, not the burst's).
    """

    def __init__(self, spool: Spool, start_run: StartRun, *, interval: float = 0.5, grace: float = 3.0,
                 concurrency: int = 4) -> None:
        self.spool, self.start_run = spool, start_run
        self.interval, self.grace, self.concurrency = interval, grace, concurrency
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="acrvpc-webhook-spool", daemon=True)

    def start(self) -> "SpoolDrainer":
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            while not self._stop.is_set():
                try:
                    loop.run_until_complete(drain_once(self.spool, self.start_run, older_than=self.grace,
                                                       concurrency=self.concurrency))
                    self.spool.forget_done(older_than=7 * 24 * 3600)
                except Exception:  # noqa: BLE001 - the drainer must outlive any one failure
                    _log.exception("the webhook spool drainer failed; it goes on")
                self._stop.wait(self.interval)
        finally:
            loop.close()
