"""The receiver's spool: every accepted delivery until it has a flow run, or a dead letter.

GitLab waits 10 s for an answer and does not resend on its own. A Prefect server creates a few
flow runs per second (``docs/benchmarks.md``: 5-9 here), so a burst of pushes cannot all get their
run created inside GitLab's timeout. The receiver therefore writes each routed delivery to this
spool (SQLite, one row per key) **before** it answers, tries to create the run within a short
budget, and answers either ``accepted`` with the run id or ``queued``. A :class:`SpoolDrainer`
creates the runs of queued deliveries in the background (and, after a restart, of those a crash
left behind), a few at a time.

Each delivery is in one state:

- ``pending``: no run yet. A *transient* failure (Prefect unreachable or timing out, 408, 429,
  5xx) is retried with backoff (1, 2, 4 ... 60 s) until the delivery has waited ``max_age``
  seconds (:data:`MAX_AGE_S`, 24 h by default), then it is dead.
- ``dead``: a dead letter. A *permanent* refusal (any other 4xx, the deployment gone even after
  re-resolving it by name, parameters Prefect's client refuses) kills it at once. It keeps the
  delivery's parameters, the HTTP status (None without one) and the message, is logged at ERROR
  and reported once as an ``acrvpc.delivery.failed`` Prefect event (:func:`report_dead`, retried
  until Prefect takes it). ``acrvpc webhook replay`` makes it pending again.
- ``done``: its run exists (``run_id``); kept 7 days so resends find it, then forgotten.

Creating a run is idempotent (the key is the run's Prefect idempotency key), so a row started
twice (by a request that gave up and by the drainer) still makes one run. The file is shared with
``acrvpc webhook deliveries`` / ``replay`` in other processes: WAL journal, writers wait up to
``busy_timeout`` seconds for each other, and every change is one short transaction.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_log = logging.getLogger("acrvpc.webhook")

StartRun = Callable[[dict[str, Any], str], Awaitable[str]]
Report = Callable[["Delivery"], Awaitable[None]]
"""``report(dead_letter)``: tell people (the ``acrvpc.delivery.failed`` event); raises when it could not."""

PENDING, DEAD, DONE = "pending", "dead", "done"
STATES = (PENDING, DEAD, DONE)
MAX_AGE_S = 24 * 3600.0  # a delivery Prefect has not taken for this long is dead (Prefect down a whole day)
KEEP_DONE_S = 7 * 24 * 3600.0
MAX_ERROR = 1000

_COLUMNS = {
    "state": "TEXT NOT NULL DEFAULT 'pending'",
    "queued": "REAL",
    "status": "INTEGER",
    "error": "TEXT",
    "reported": "INTEGER NOT NULL DEFAULT 0",
}


@dataclass(frozen=True)
class Delivery:
    """One spooled delivery (``acrvpc webhook deliveries`` prints these fields)."""

    key: str
    project: str
    ref: str
    sha: str
    state: str
    attempts: int
    last_error: str | None
    status: int | None
    run_id: str | None
    received: float
    parameters: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("parameters")
        return out


class StartFailure(Exception):
    """Creating a run failed: ``permanent`` (dead at once) or not (retried), with the HTTP status and message."""

    def __init__(self, message: str, status: int | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.message, self.status, self.permanent = message[:MAX_ERROR], status, permanent

    def __str__(self) -> str:
        return f"{self.status} {self.message}" if self.status else self.message


def _response_message(response: Any) -> str:
    try:
        body = response.json()
    except Exception:  # noqa: BLE001 - not JSON: its text
        return (response.text or response.reason_phrase or "").strip()[:MAX_ERROR]
    if not isinstance(body, dict):
        return json.dumps(body)[:MAX_ERROR]
    parts = []  # Prefect: {"detail": ...}, or a 422's {"exception_message", "exception_detail": [{loc, msg}]}
    main = body.get("detail", body.get("exception_message"))
    if main:
        parts.append(main if isinstance(main, str) else json.dumps(main))
    for error in body.get("exception_detail") or []:
        if isinstance(error, dict) and error.get("msg"):
            parts.append(f"{'.'.join(str(p) for p in error.get('loc', []))}: {error['msg']}")
    return ("; ".join(parts) or json.dumps(body))[:MAX_ERROR]  # never the echoed request body


def classify(exc: BaseException) -> StartFailure:
    """What a failure to create a run means: its status, message, and whether retrying can help.

    Permanent: a 4xx answer other than 408 and 429, and request data Prefect's client refuses
    (``ValueError``, pydantic validation). Everything else (no answer, timeouts, 408, 429, 5xx,
    an unknown error) is retried until the delivery's maximum age.
    """
    import httpx
    from pydantic import ValidationError

    if isinstance(exc, StartFailure):
        return exc
    response = getattr(exc, "response", None)
    if isinstance(exc, httpx.HTTPStatusError) and response is not None:
        status = response.status_code
        return StartFailure(
            _response_message(response) or response.reason_phrase,
            status,
            permanent=400 <= status < 500 and status not in (408, 429),
        )
    if isinstance(exc, asyncio.TimeoutError):
        return StartFailure("Prefect did not answer in time")
    if isinstance(exc, (httpx.TransportError, OSError)):
        return StartFailure(f"Prefect unreachable ({type(exc).__name__}: {exc})")
    if isinstance(exc, (ValidationError, ValueError, TypeError)):
        return StartFailure(f"refused before sending: {exc}", permanent=True)
    return StartFailure(f"{type(exc).__name__}: {exc}")


class Spool:
    """Deliveries by key: their run parameters, state, attempts, last error and, once created, their run id.

    Args:
        path: the SQLite file (created if missing); ``None`` keeps the spool in memory (tests:
            nothing survives the process).
        busy_timeout: seconds a write waits for another process's (``acrvpc webhook replay``).
    """

    def __init__(self, path: str | Path | None = None, busy_timeout: float = 10.0) -> None:
        self.path = str(path) if path is not None else ":memory:"
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=busy_timeout)
        self._lock = threading.Lock()
        with self._lock:
            if path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")  # an accepted delivery survives a power cut
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS deliveries (key TEXT PRIMARY KEY, parameters TEXT NOT NULL, "
                "received REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL, "
                "run_id TEXT)"
            )
            have = {row[1] for row in self._db.execute("PRAGMA table_info(deliveries)")}
            for name, kind in _COLUMNS.items():  # a spool written by an older receiver
                if name not in have:
                    self._db.execute(f"ALTER TABLE deliveries ADD COLUMN {name} {kind}")
            if "state" not in have:
                self._db.execute("UPDATE deliveries SET state = 'done' WHERE run_id IS NOT NULL")
            self._db.execute("UPDATE deliveries SET queued = received WHERE queued IS NULL")
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def remember(self, name: str, value: str) -> None:
        """Keep a value across restarts (the last spec read from the deployment, for a start without Prefect)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))

    def recall(self, name: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def _one(self, key: str) -> Delivery | None:
        row = self._db.execute(
            "SELECT key, parameters, state, attempts, error, status, run_id, received FROM deliveries WHERE key = ?",
            (key,),
        ).fetchone()
        return _delivery(row) if row else None

    def add(self, key: str, parameters: dict[str, Any]) -> Delivery:
        """Record a delivery (once per key); returns what is recorded under the key (maybe an earlier delivery)."""
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO deliveries (key, parameters, received, queued, next_try) VALUES (?, ?, ?, ?, ?)",
                (key, json.dumps(parameters, sort_keys=True), now, now, now),
            )
            found = self._one(key)
        assert found is not None
        return found

    def get(self, key: str) -> Delivery | None:
        with self._lock:
            return self._one(key)

    def done(self, key: str, run_id: str) -> None:
        """The delivery's flow run exists."""
        with self._lock:
            self._db.execute("UPDATE deliveries SET run_id = ?, state = 'done' WHERE key = ?", (run_id, key))

    def failed(self, key: str, failure: StartFailure, retry_in: float) -> int:
        """A transient failure: try again after ``retry_in`` seconds. Returns the attempts so far."""
        with self._lock:
            self._db.execute(
                "UPDATE deliveries SET attempts = attempts + 1, next_try = ?, status = ?, error = ? "
                "WHERE key = ? AND state = 'pending'",
                (time.time() + retry_in, failure.status, failure.message, key),
            )
            row = self._db.execute("SELECT attempts FROM deliveries WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def dead(self, key: str, failure: StartFailure) -> Delivery | None:
        """Make the delivery a dead letter with its last status and message (to be reported)."""
        with self._lock:
            self._db.execute(
                "UPDATE deliveries SET attempts = attempts + 1, state = 'dead', status = ?, error = ?, "
                "reported = 0 WHERE key = ? AND state = 'pending'",
                (failure.status, failure.message, key),
            )
            return self._one(key)

    def due(self, older_than: float = 0.0, limit: int = 100) -> list[tuple[str, dict[str, Any], int, float]]:
        """Pending deliveries received at least ``older_than`` seconds ago and due for a try:
        ``(key, parameters, attempts, queued since)``."""
        now = time.time()
        with self._lock:
            rows = self._db.execute(
                "SELECT key, parameters, attempts, queued FROM deliveries WHERE state = 'pending' "
                "AND received <= ? AND next_try <= ? ORDER BY received LIMIT ?",
                (now - older_than, now, limit),
            ).fetchall()
        return [(key, json.loads(params), attempts, queued) for key, params, attempts, queued in rows]

    def counts(self) -> dict[str, int]:
        """How many deliveries are in each state."""
        with self._lock:
            rows = dict(self._db.execute("SELECT state, COUNT(*) FROM deliveries GROUP BY state").fetchall())
        return {state: int(rows.get(state, 0)) for state in STATES}

    def pending(self) -> int:
        """How many deliveries still wait for their run."""
        return self.counts()[PENDING]

    def deliveries(self, state: str | None = None, limit: int = 1000) -> list[Delivery]:
        """The deliveries (in one state), newest first."""
        where, args = ("WHERE state = ?", (state,)) if state else ("", ())
        with self._lock:
            rows = self._db.execute(
                f"SELECT key, parameters, state, attempts, error, status, run_id, received FROM "
                f"deliveries {where} ORDER BY received DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [_delivery(row) for row in rows]

    def replay(self, key: str | None = None) -> int:
        """Make the dead letter ``key`` (None: every dead letter) pending again, from now; returns how many."""
        now = time.time()
        where, args = ("AND key = ?", (key,)) if key is not None else ("", ())
        with self._lock:
            cursor = self._db.execute(
                f"UPDATE deliveries SET state = 'pending', attempts = 0, next_try = ?, "
                f"queued = ?, reported = 0 WHERE state = 'dead' {where}",
                (now, now, *args),
            )
        return cursor.rowcount

    def unreported(self) -> list[Delivery]:
        """Dead letters not yet reported."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, parameters, state, attempts, error, status, run_id, received FROM "
                "deliveries WHERE state = 'dead' AND reported = 0 ORDER BY received"
            ).fetchall()
        return [_delivery(row) for row in rows]

    def reported(self, key: str) -> None:
        with self._lock:
            self._db.execute("UPDATE deliveries SET reported = 1 WHERE key = ? AND state = 'dead'", (key,))

    def forget_done(self, older_than: float = KEEP_DONE_S) -> None:
        """Drop deliveries whose run was created, received more than ``older_than`` seconds ago."""
        with self._lock:
            self._db.execute(
                "DELETE FROM deliveries WHERE state = 'done' AND received < ?", (time.time() - older_than,)
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _delivery(row: tuple) -> Delivery:
    key, params, state, attempts, error, status, run_id, received = row
    parameters = json.loads(params)
    return Delivery(
        key=key,
        project=str(parameters.get("project", "")),
        ref=str(parameters.get("ref", "")),
        sha=str(parameters.get("sha", "")),
        state=state,
        attempts=int(attempts),
        last_error=error,
        status=status,
        run_id=run_id,
        received=received,
        parameters=parameters,
    )


def retry_delay(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failures: 1, 2, 4 ... at most 60."""
    return float(min(2 ** max(attempts - 1, 0), 60))


def settle_failure(
    spool: Spool,
    key: str,
    exc: BaseException,
    attempts: int,
    queued: float,
    max_age: float = MAX_AGE_S,
    retry_in: float | None = None,
) -> StartFailure:
    """Record a failed attempt: a dead letter when permanent or older than ``max_age``, else retried after
    ``retry_in`` seconds (default: the backoff after ``attempts`` + 1 failures)."""
    failure = classify(exc)
    age = time.time() - queued
    if failure.permanent or age >= max_age:
        spool.dead(key, failure)
        why = "refused" if failure.permanent else f"still failing after {age:.0f} s (max age {max_age:.0f} s)"
        _log.error(
            "delivery %r: dead letter, its run was %s: %s (replay it with `acrvpc webhook replay %s`)",
            key,
            why,
            failure,
            key,
        )
    else:
        tries = spool.failed(key, failure, retry_delay(attempts + 1) if retry_in is None else retry_in)
        _log.warning("delivery %r: creating its run failed (%s), try %d; retrying", key, failure, tries)
    return failure


async def drain_once(
    spool: Spool,
    start_run: StartRun,
    *,
    older_than: float = 0.0,
    concurrency: int = 4,
    timeout: float = 30.0,
    max_age: float = MAX_AGE_S,
) -> int:
    """Create the runs of the due deliveries, ``concurrency`` at a time; returns how many were created."""
    due = spool.due(older_than)
    if not due:
        return 0
    gate = asyncio.Semaphore(concurrency)
    created = 0

    async def one(key: str, parameters: dict[str, Any], attempts: int, queued: float) -> None:
        nonlocal created
        async with gate:
            try:
                run_id = await asyncio.wait_for(start_run(parameters, f"gitlab:{key}"), timeout)
            except Exception as exc:  # noqa: BLE001 - classified: retried or dead-lettered, with the message
                settle_failure(spool, key, exc, attempts, queued, max_age)
                return
            spool.done(key, run_id)
            created += 1
            _log.info("delivery %r: flow run %s created from the spool", key, run_id)

    await asyncio.gather(*(one(*item) for item in due))
    return created


async def report_dead(spool: Spool, report: Report | None) -> int:
    """Report the dead letters not reported yet; those Prefect did not take stay for the next call."""
    if report is None:
        return 0
    sent = 0
    for letter in spool.unreported():
        try:
            await report(letter)
        except Exception as exc:  # noqa: BLE001 - Prefect down: reported on a later pass
            _log.warning("dead letter %r: could not emit its event yet (%s)", letter.key, classify(exc))
            break
        spool.reported(letter.key)
        sent += 1
    return sent


class SpoolDrainer:
    """A background thread that keeps creating the runs of queued deliveries and reporting dead letters.

    Args:
        spool: the receiver's spool.
        start_run: how to create a run (the receiver's).
        interval: seconds between looks at the spool.
        grace: leave deliveries younger than this to the request that received them.
        concurrency: runs created at a time (the Prefect server's pace, not the burst's).
        max_age: seconds a delivery may stay pending before it is dead.
        report: how a dead letter is reported (the ``acrvpc.delivery.failed`` event).
    """

    def __init__(
        self,
        spool: Spool,
        start_run: StartRun,
        *,
        interval: float = 0.5,
        grace: float = 3.0,
        concurrency: int = 4,
        max_age: float = MAX_AGE_S,
        report: Report | None = None,
    ) -> None:
        self.spool, self.start_run, self.report = spool, start_run, report
        self.interval, self.grace, self.concurrency, self.max_age = interval, grace, concurrency, max_age
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="acrvpc-webhook-spool", daemon=True)

    def start(self) -> SpoolDrainer:
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
                    loop.run_until_complete(
                        drain_once(
                            self.spool,
                            self.start_run,
                            older_than=self.grace,
                            concurrency=self.concurrency,
                            max_age=self.max_age,
                        )
                    )
                    loop.run_until_complete(report_dead(self.spool, self.report))
                    self.spool.forget_done()
                except Exception:  # noqa: BLE001 - the drainer must outlive any one failure
                    _log.exception("the webhook spool drainer failed; it goes on")
                self._stop.wait(self.interval)
        finally:
            loop.close()
