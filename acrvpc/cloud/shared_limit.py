"""The API quota shared by every process of every host: reservations on a Prefect global concurrency limit.

A Prefect global concurrency limit (GCL) with ``slot_decay_per_second`` is a leaky bucket kept by
the server: ``active_slots`` drains at the decay rate (computed by the server's clock on each
read or update) and an increment is granted while ``active_slots + slots <= limit``. This module
uses it as a **queue** (the GCRA, "generic cell rate algorithm"), not as a bucket that refuses:

- **shape** (:func:`limit_settings`): ``slot_decay_per_second = qps * PACE * SLOTS_PER_CALL`` (the
  queue drains at 95 % of the quota: :data:`PACE`) and ``limit =
  decay * HORIZON_SECONDS + burst * SLOTS_PER_CALL``: the limit holds up to a minute of backlog on
  top of the burst, so an increment is granted at once unless a minute of calls is already queued.
  Every process reads the burst off the row (``limit - decay * HORIZON_SECONDS``): nobody needs
  the deployer's settings.
- **taking k calls' tokens** (:func:`reserve`): ``POST /v2/concurrency_limits/increment`` of ``k *
  SLOTS_PER_CALL`` slots (our reservation joins the top of the backlog), then ``GET
  /v2/concurrency_limits/{name}``: its ``active_slots`` is the backlog now, decayed by the server's
  clock (no clock skew between hosts matters), ours included. Sleep ``(active_slots - burst) /
  decay`` seconds: then the backlog has drained to the burst, and the calls go. Two round trips,
  no 423s, no polling, no event per acquisition.

Runs of an ``acrvpc-process`` worker do not reserve here themselves: they ask their worker's quota
broker (:mod:`acrvpc.cloud.quota_broker`, ``ACRVPC_QUOTA_BROKER``; client: :func:`ask_broker`), which
reserves the host's waiting calls as one batch (:func:`take_slots`) and spaces them locally
(:func:`call_waits`); a broker that cannot be asked sends them back to :func:`reserve`.

Why not ``prefect.concurrency.sync.rate_limit`` on a burst-sized limit (this module's first
design; docs/benchmarks.md, "Shared API quota"): every refused increment is a 423 whose
``Retry-After`` grows with the slots denied so far (Poisson-jittered), so waiters oversleep; and
Prefect 3.9.1 records a 423 by updating ``denied_slots`` on the row, which sets ``updated`` to now
*without* decaying ``active_slots`` (``bulk_update_denied_slots``): every 423 throws away the decay
since the last update. Across many processes the limit delivered about half its rate, and each
process spent CPU asking again. ``rate_limit()`` also opens a client and sends a
``prefect.concurrency-limit.acquired`` event per acquisition (server-side event CPU).

Exactness: an increment made by another process between our increment and our read counts as
ours, so we go with it (later than our turn, never earlier): at most the calls reserved during
one round trip go together, which the burst left below the account's (half a second's worth)
absorbs. The server floors the decay of each update (``floor(decay * seconds)``): up to one slot
is lost per increment, 1/:data:`SLOTS_PER_CALL` of a call.

A limit of the old shape (``limit <= decay * HORIZON_SECONDS``: ``limit = burst * 10``, ``decay =
qps * 10``, written by earlier versions) still works: its slots are :data:`LEGACY_SLOTS_PER_CALL`
per call, the burst is the whole limit, and a refused increment sleeps the server's
``Retry-After`` and asks again, as before. ``ensure_limits`` (acrvpc.cloud.ratelimit) reshapes it.
Upgrade note: a process of an earlier version on a reshaped limit would not wait for its turn
(its increments are granted at once): reshape after every worker runs this version.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SLOTS_PER_CALL = 100  # slots per call of a queue-shaped limit: the server's floor() loses 1/100 call per increment
LEGACY_SLOTS_PER_CALL = 10  # slots per call of a limit of the old (burst-sized) shape
HORIZON_SECONDS = 60.0  # backlog a queue-shaped limit holds before it refuses (423) an increment
# The queue drains at this share of the quota. At exactly the quota the account's own bucket (what
# answers Throttling) stays empty, so one call sent late by a CPU-starved process, then its successor on
# time, is over it (a 50-spec fleet got one ECS Throttling answer that way); 5 % under, the bucket refills
# by one call a second at 20/s and absorbs such jitter.
PACE = 0.95
SERVER_RETRY_DELAYS = (1.0, 2.0, 4.0)  # a busy Prefect server's 5xx or timeout is asked again before falling back
MAX_RETRY_AFTER = 30.0  # a 423's Retry-After is slept at most this long before asking again

logger = logging.getLogger("acrvpc.cloud.ratelimit")


class LimitGone(RuntimeError):
    """The shared limit was deleted or deactivated since it was looked up."""


@dataclass(frozen=True)
class LimitShape:
    """How to read one limit's row: its slots per call, its burst and whether it queues.

    Args:
        limit: the row's ``limit`` (slots).
        decay: the row's ``slot_decay_per_second``.
    """

    limit: int
    decay: float

    @property
    def queued(self) -> bool:
        """True for a queue-shaped limit (it holds :data:`HORIZON_SECONDS` of backlog above its burst)."""
        return self.decay > 0 and self.limit > self.decay * HORIZON_SECONDS

    @property
    def slots_per_call(self) -> int:
        return SLOTS_PER_CALL if self.queued else LEGACY_SLOTS_PER_CALL

    @property
    def burst_slots(self) -> float:
        """Slots that may go at once after a quiet spell."""
        return self.limit - self.decay * HORIZON_SECONDS if self.queued else float(self.limit)

    @property
    def burst_calls(self) -> float:
        return max(1.0, self.burst_slots / self.slots_per_call)

    @property
    def qps(self) -> float:
        """Calls per second the limit lets through (a queue-shaped one: :data:`PACE` of the quota)."""
        return self.decay / self.slots_per_call

    @property
    def quota(self) -> float:
        """The account's quota the limit was written for (``ACRVPC_QPS_<PRODUCT>``)."""
        return self.qps / PACE if self.queued else self.qps


def limit_settings(qps: float, burst: float | None) -> tuple[int, float]:
    """The queue-shaped limit's ``(limit, slot_decay_per_second)`` for a quota.

    Args:
        qps: calls per second (> 0).
        burst: calls at once (default ``qps / 2``, at least 1).

    Returns:
        ``ceil(decay * HORIZON_SECONDS) + burst * SLOTS_PER_CALL`` and ``decay = qps * PACE * SLOTS_PER_CALL``.
    """
    if qps <= 0:
        raise ValueError("qps must be > 0 (no limit at all needs no shared limit)")
    calls = int(math.floor(max(1.0, float(burst) if burst else qps / 2)))
    decay = float(qps) * PACE * SLOTS_PER_CALL
    return int(math.ceil(decay * HORIZON_SECONDS)) + calls * SLOTS_PER_CALL, decay


def lease_size(waiting: int, lease: int, burst: float) -> int:
    """Calls one acquisition covers: every call waiting in this process, within the lease and the burst.

    Args:
        waiting: calls of this process waiting for a token of the limit, the acquiring one included.
        lease: ``ACRVPC_QPS_LEASE``.
        burst: the limit's burst in calls.

    Returns:
        ``min(waiting, lease, burst)``, at least 1.
    """
    return max(1, min(int(waiting), int(lease), int(burst)))


def _transient(exc: Exception) -> bool:
    """A server error worth asking again (5xx, timeout, refused connection), not a 4xx answer."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status is None or status >= 500


def patiently(what: Callable[[], Any], delays: tuple[float, ...] = SERVER_RETRY_DELAYS) -> Any:
    """``what()``, asked again after each of ``delays`` when the server fails (a loaded Prefect server
    answers 500 when its database pool is exhausted; falling back to a per-process bucket at the
    full quota then would let this process spend the quota on top of the others). A 4xx answer is
    raised at once."""
    for delay in (*delays, None):
        try:
            return what()
        except Exception as exc:
            if delay is None or not _transient(exc):
                raise
            logger.debug(
                "the Prefect server failed (%s: %s); asking again in %.0f s", type(exc).__name__, str(exc)[:200], delay
            )
            time.sleep(delay)


# -- one Prefect client per process ------------------------------------------------------------------
_clients: dict[tuple[int, str, str | None, str | None], Any] = {}
_clients_lock = threading.Lock()


def prefect_client(url: str) -> Any:
    """The process's Prefect sync client for ``url`` (created once, kept open; thread-safe).

    Built like ``get_client(sync_client=True)`` builds one (``PREFECT_API_AUTH_STRING``,
    ``PREFECT_API_KEY``, TLS and retry settings), but never the flow run's own client, which
    closes with the run; keyed by process id, so a forked process never shares its parent's
    connections.
    """
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY

    auth, key = PREFECT_API_AUTH_STRING.value(), PREFECT_API_KEY.value()
    ident = (os.getpid(), url, auth, key)
    with _clients_lock:
        client = _clients.get(ident)
        if client is None:
            for old in [k for k in _clients if k[0] != os.getpid()]:
                _clients.pop(old)  # a parent's, before a fork: not ours to close
            client = SyncPrefectClient(url, auth_string=auth, api_key=key)
            client.__enter__()
            _clients[ident] = client
        return client


def close_clients() -> None:
    """Close this process's clients (tests, benchmarks)."""
    with _clients_lock:
        mine = [k for k in _clients if k[0] == os.getpid()]
        clients = [_clients.pop(k) for k in mine]
    for client in clients:
        try:
            client.__exit__(None, None, None)
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


def read_limit(client: Any, name: str) -> dict | None:
    """The limit's row (``limit``, ``slot_decay_per_second``, ``active``, ``active_slots`` decayed now), or None."""
    from prefect.exceptions import PrefectHTTPStatusError

    try:
        response = patiently(lambda: client.request("GET", f"/v2/concurrency_limits/{urllib.parse.quote(name)}"))
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code == 404:
            return None
        raise
    return response.json()


def call_waits(backlog_slots: float, shape: LimitShape, calls: int) -> list[float]:
    """Seconds from now until each of ``calls`` calls whose slots were just taken may go.

    ``backlog_slots`` is the limit's ``active_slots`` read after the increment: our ``calls``
    calls are its top ``calls * slots_per_call`` slots. Call ``j`` (0-based) goes when the backlog
    has drained to ``burst_slots + (calls - 1 - j) * slots_per_call`` (the calls after it still
    queued above the burst): ``max(0, (backlog - burst - (calls - 1 - j) * S) / decay)``, so the
    calls of one reservation are spaced ``1 / qps`` apart, the last at the old single-call wait.
    A limit of the old shape (:attr:`LimitShape.queued` false) never waits here (granted = go).

    Args:
        backlog_slots: ``active_slots`` after the increment, ours included.
        shape: the limit's shape (from the same row).
        calls: calls the increment stood for (>= 1).

    Returns:
        ``calls`` non-decreasing waits in seconds, each >= 0.
    """
    if not shape.queued:
        return [0.0] * calls
    per_call, excess = shape.slots_per_call, float(backlog_slots) - shape.burst_slots
    return [max(0.0, (excess - (calls - 1 - j) * per_call) / shape.decay) for j in range(calls)]


def take_slots(client: Any, name: str, slots: int, sleep: Callable[[float], None] = time.sleep) -> tuple[dict, int]:
    """``POST /v2/concurrency_limits/increment`` of ``slots`` (a full limit's 423 is slept and asked again),
    then ``GET`` the row: its ``active_slots`` is the backlog now, ours included.

    Returns:
        The row and the HTTP requests made (for the quota broker's counters).

    Raises:
        LimitGone: the limit was deleted or deactivated.
        PrefectHTTPStatusError: any other refusal (e.g. 422: more slots than the limit holds).
    """
    from prefect.exceptions import PrefectHTTPStatusError

    body = {"names": [name], "slots": int(slots), "mode": "rate_limit"}
    requests = 0
    while True:
        requests += 1
        try:
            granted = patiently(lambda: client.request("POST", "/v2/concurrency_limits/increment", json=body)).json()
            break
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != 423:
                raise
            # full: an old-shaped limit's burst is spent, or a queue holds HORIZON_SECONDS of backlog
            sleep(min(MAX_RETRY_AFTER, max(0.0, float(exc.response.headers.get("Retry-After") or 1.0))))
    if not granted:  # the server skips (and grants) a name it does not know
        raise LimitGone(f"the shared rate limit {name!r} is gone")
    row = read_limit(client, name)
    if row is None or not row.get("active", True):
        raise LimitGone(f"the shared rate limit {name!r} is gone or inactive")
    return row, requests + 1


def row_shape(row: dict) -> LimitShape:
    """The :class:`LimitShape` of a limit's row."""
    return LimitShape(int(row["limit"]), float(row["slot_decay_per_second"] or 0.0))


def reserve(client: Any, name: str, slots: int, sleep: Callable[[float], None] = time.sleep) -> float:
    """Take ``slots`` slots of the limit ``name`` and sleep until the calls they stand for may go.

    All of them go together, when the backlog has drained to the burst (the last of
    :func:`call_waits`' waits for one call).

    Returns:
        The seconds slept.

    Raises:
        LimitGone: the limit was deleted or deactivated.
        PrefectHTTPStatusError: any other refusal (e.g. 422: more slots than the limit holds).
    """
    slept = 0.0

    def sleeping(seconds: float) -> None:
        nonlocal slept
        sleep(seconds)
        slept += seconds

    row, _ = take_slots(client, name, slots, sleeping)
    wait = call_waits(float(row["active_slots"]), row_shape(row), 1)[0]
    if wait > 0:
        sleeping(wait)
    return slept


# -- the per-host quota broker's client (the broker: acrvpc.cloud.quota_broker) ----------------------
BROKER_CONNECT_TIMEOUT = 1.0  # a unix connect takes ~20 us; a broker that does not accept in 1 s is stuck
BROKER_ANSWER_TIMEOUT = 10.0  # the answer comes after one or two server round trips; then the direct path
BROKER_RETRY_SECONDS = 60.0  # after a broker failure, this process reserves directly for this long


class BrokerUnavailable(RuntimeError):
    """The quota broker could not be asked (no socket, refused, timed out, broken answer) or failed."""


def ask_broker(
    path: str,
    name: str,
    calls: int = 1,
    connect_timeout: float | None = None,
    answer_timeout: float | None = None,
) -> float | None:
    """Ask the quota broker at ``path`` for ``calls`` calls' tokens of the limit ``name``.

    Args:
        connect_timeout, answer_timeout: default :data:`BROKER_CONNECT_TIMEOUT`, :data:`BROKER_ANSWER_TIMEOUT`.

    Returns:
        The ``time.monotonic()`` deadline at which the (last) call may go, or None: the limit has
        the old shape, reserve directly.

    Raises:
        LimitGone: the broker found the limit deleted or inactive.
        BrokerUnavailable: anything else (the caller reserves directly).
    """
    import json
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(BROKER_CONNECT_TIMEOUT if connect_timeout is None else connect_timeout)
            sock.connect(path)
            sock.settimeout(BROKER_ANSWER_TIMEOUT if answer_timeout is None else answer_timeout)
            sock.sendall(json.dumps({"limit": name, "calls": int(calls)}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        answer = json.loads(data)
    except (OSError, ValueError) as exc:  # socket.timeout is an OSError; a truncated answer a ValueError
        raise BrokerUnavailable(f"{type(exc).__name__}: {exc or 'no answer'}") from exc
    if not isinstance(answer, dict):
        raise BrokerUnavailable(f"unexpected answer {str(answer)[:100]!r}")
    if "at" in answer:
        return float(answer["at"])
    if answer.get("direct"):
        return None
    if answer.get("gone"):
        raise LimitGone(str(answer.get("error") or f"the shared rate limit {name!r} is gone"))
    raise BrokerUnavailable(str(answer.get("error") or f"unexpected answer {str(answer)[:100]!r}"))


_broker_down: dict[tuple[int, str], float] = {}  # (pid, socket) -> monotonic time until which not to ask it
_broker_said: set[tuple[int, str]] = set()
_broker_lock = threading.Lock()


def _broker_usable(path: str) -> bool:
    return time.monotonic() >= _broker_down.get((os.getpid(), path), 0.0)


def _broker_failed(path: str, exc: Exception) -> None:
    """Reserve directly for :data:`BROKER_RETRY_SECONDS`; say so once per process (WARNING: it reaches the run's log)."""
    key = (os.getpid(), path)
    with _broker_lock:
        _broker_down[key] = time.monotonic() + BROKER_RETRY_SECONDS
        first = key not in _broker_said
        _broker_said.add(key)
    if first:
        logger.warning(
            "the quota broker %s failed (%s): this process takes its API tokens from the Prefect server "
            "directly (asking the broker again after %.0f s)",
            path,
            str(exc)[:200],
            BROKER_RETRY_SECONDS,
        )


class SharedLimiter:
    """A token from a Prefect global concurrency limit, shared by every process of every host.

    Threads of this process that wait at the same time share one acquisition (:func:`lease_size`):
    the first asks the server for everyone waiting when it starts, and hands the other tokens
    out; nothing is kept for later, so no slot is taken for a call that is never made.

    Args:
        name: the limit.
        burst: the limit's burst in calls (:attr:`LimitShape.burst_calls`).
        lease: ``ACRVPC_QPS_LEASE``.
        acquire: ``acquire(name, slots)`` blocks until ``slots`` slots may be spent (default:
            :func:`reserve` through the process's client for ``url``).
        slots_per_call: :attr:`LimitShape.slots_per_call`.
        url: the Prefect API URL (for the default ``acquire``).
        broker: the per-host quota broker's socket (``ACRVPC_QUOTA_BROKER``): each call asks it for its
            turn (:func:`ask_broker`), no lease; when it cannot be asked, the call reserves directly
            (said once per process) and the process does so for :data:`BROKER_RETRY_SECONDS`.
        describe: with a broker, the limit's shape may be unknown at first (``burst`` and
            ``slots_per_call`` then unused): the broker reads the limit, not each run. The first call
            that reserves directly calls ``describe()`` (a :class:`LimitShape`, or :class:`LimitGone`).
    """

    def __init__(
        self,
        name: str,
        burst: float,
        lease: int,
        acquire: Callable[[str, int], Any] | None = None,
        slots_per_call: int = SLOTS_PER_CALL,
        url: str | None = None,
        broker: str | None = None,
        describe: Callable[[], LimitShape] | None = None,
    ) -> None:
        self.name = name
        self.broker = broker
        self.burst = burst
        self.lease = lease
        self.slots_per_call = slots_per_call
        self._describe = describe
        self._describe_lock = threading.Lock()
        self.url = url
        self._acquire = acquire or self._reserve
        self._cond = threading.Condition()
        self._ready = 0  # tokens granted and not yet handed out
        self._fetching = False
        self._waiting = 0  # threads waiting for the current acquisition
        self.acquisitions = 0  # round trips made (for benchmarks and tests)
        self.calls = 0
        self.brokered = 0  # calls whose turn the quota broker gave
        self.sleep: Callable[[float], None] = time.sleep

    def _learn_shape(self) -> None:
        """The shape, read once, before the first direct reservation (see ``describe``)."""
        with self._describe_lock:
            if self._describe is not None:
                shape = self._describe()
                self.burst, self.slots_per_call = shape.burst_calls, shape.slots_per_call
                self._describe = None

    def _reserve(self, name: str, slots: int) -> float:
        if not self.url:
            raise LimitGone("no Prefect API URL")
        return reserve(prefect_client(self.url), name, slots)

    def acquire(self) -> None:
        """Take one token, waiting for its turn (:class:`LimitGone` or the server's error on failure)."""
        if self.broker and _broker_usable(self.broker):
            try:
                at = ask_broker(self.broker, self.name)
            except BrokerUnavailable as exc:
                _broker_failed(self.broker, exc)
            else:
                if at is not None:
                    wait = at - time.monotonic()
                    if wait > 0:
                        self.sleep(wait)
                    with self._cond:
                        self.calls += 1
                        self.brokered += 1
                    return
        if self._describe is not None:
            self._learn_shape()
        with self._cond:
            while True:
                if self._ready > 0:
                    self._ready -= 1
                    self.calls += 1
                    return
                if not self._fetching:
                    self._fetching = True
                    size = lease_size(1 + self._waiting, self.lease, self.burst)
                    break
                self._waiting += 1
                try:
                    self._cond.wait()
                finally:
                    self._waiting -= 1
        try:
            self._acquire(self.name, size * self.slots_per_call)
        except BaseException:
            with self._cond:
                self._fetching = False
                self._cond.notify()  # the next waiter tries (and most likely fails the same way)
            raise
        with self._cond:
            self.acquisitions += 1
            self.calls += 1
            self._ready += size - 1
            self._fetching = False
            self._cond.notify_all()
