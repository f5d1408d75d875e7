"""What every benchmark shares: the machine, figures arithmetic, output, worlds and specs, Prefect servers.

Every script under ``bench/`` prints a human table and, as its LAST line, one JSON object with
its figures (``emit``). Figures are ratios or counts measured in one run, because the machines
these run on are noisy. Nothing here is a timed test.

* :func:`percentile`, :func:`lower_bound`, :func:`efficiency` are the arithmetic (unit-tested in
  ``tests/unit/test_bench_common.py``).
* :func:`bench_scenario` derives a sandbox world from the default one with more GitLab projects
  and, with ``instant=True``, ENIs and builds that take no sandbox time (so a benchmark measures
  API calls and overhead, never a build's own duration); :func:`write_spec` writes matching specs.
* :func:`prefect_server` starts a throwaway PostgreSQL cluster and a real ``prefect server start``
  with ``tests/e2e/prefect_server.py`` (the e2e tests' harness), SQLite only without PostgreSQL.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The e2e harness (PostgreSQL cluster, prefect server). Importing it imports tests/conftest.py, which
# sets hermetic test settings in os.environ; setup() below then sets the benchmarks' own.
from tests.e2e import prefect_server as harness  # noqa: E402

GITLAB_USER = "release-bot"
FIRST_PROJECT_ID = 1000
ALIBABA_PRODUCTS = ("cr", "ecs", "vpc")


# -- arithmetic --------------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks (numpy's default).

    Args:
        values: the samples (at least one).
        q: the percentile, 0 to 100.

    Returns:
        The interpolated value.

    Raises:
        ValueError: no samples, or ``q`` outside 0..100.
    """
    if not values:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def lower_bound(calls: dict[str, int], qps: dict[str, float]) -> tuple[float, str]:
    """The least wall time the quotas allow: ``max(calls_p / qps_p)`` over the products with a quota.

    Args:
        calls: calls made per product.
        qps: the quota per product (calls per second); products absent or at 0 have no quota.

    Returns:
        ``(seconds, product)``: the bound and the product that sets it (``""`` when none has a quota).
    """
    best, which = 0.0, ""
    for product, count in sorted(calls.items()):
        rate = qps.get(product) or 0
        if rate > 0 and count / rate > best:
            best, which = count / rate, product
    return best, which


def efficiency(bound_s: float, wall_s: float) -> float:
    """``bound / wall``: 1.0 means the run took no longer than the quotas force."""
    if wall_s <= 0:
        raise ValueError("wall time must be positive")
    return bound_s / wall_s


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


# -- output ------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """The machine a figure was measured on: CPUs, RAM, load, Python, Prefect."""
    import prefect

    ram_gb = 0.0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "nproc": os.cpu_count(),
        "ram_gb": ram_gb,
        "loadavg_1m": round(load[0], 2),
        "python": platform.python_version(),
        "prefect": prefect.__version__,
        "platform": platform.platform(),
    }


def table(rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain text table of ``rows`` (floats with 3 significant decimals)."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
        return str(value)

    cells = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def emit(figures: dict[str, Any]) -> None:
    """Print the figures as one JSON object: always the script's last line of output."""
    sys.stdout.flush()
    print(json.dumps(figures, sort_keys=True, default=str), flush=True)


def say(text: str) -> None:
    """Progress and tables go to stdout too, before the JSON line."""
    print(text, flush=True)


# -- worlds and specs --------------------------------------------------------------------------------
def project_path(i: int) -> str:
    return f"bench/svc-{i:03d}"


def bench_scenario(projects: int, *, instant: bool = True) -> dict[str, Any]:
    """The default sandbox world plus ``projects`` GitLab projects ``bench/svc-NNN`` owned by the bot.

    Args:
        projects: how many extra projects (ids from 1000), each with ``release-bot`` as maintainer.
        instant: ENIs attach and builds finish in zero sandbox time (no waiting measured, and
            poll counts are deterministic: one status read per build, one ENI read).

    Returns:
        A scenario mapping for :class:`acrvpc.sandbox.SandboxServer`.
    """
    from acrvpc.sandbox.world import load_scenario

    scenario = copy.deepcopy(load_scenario())
    for i in range(projects):
        scenario["gitlab"]["projects"].append(
            {
                "id": FIRST_PROJECT_ID + i,
                "path_with_namespace": project_path(i),
                "default_branch": "main",
                "visibility": "private",
                "members": {GITLAB_USER: 40},
            }
        )
    if instant:
        scenario["ecs"]["eni_attach_seconds"] = 0
        builds = scenario["cr"]["builds"]
        builds["pending_seconds"] = 0
        builds["stages"] = [{"name": s["name"], "seconds": 0} for s in builds["stages"]]
    scenario["vpc"]["vpcs"][0]["vswitches"][0]["available_ips"] = 250
    return scenario


def write_spec(
    directory: Path, name: str, projects: Sequence[int], *, namespace: str = "bench", namespace_per_repo: bool = False
) -> Path:
    """Write a spec for the bench world: the example spec's network and GitLab, its own link and repositories.

    Args:
        directory: where to write ``<name>.yaml``.
        name: the spec name (the link tag; distinct per spec).
        projects: indexes of the ``bench/svc-NNN`` projects, one repository ``<namespace>/svc-NNN`` each.
        namespace: the registry namespace of the repositories.
        namespace_per_repo: put repository ``i`` in namespace ``<namespace>-<i>`` instead (concurrent
            bindings then never race to create the same namespace).

    Returns:
        The spec file's path.
    """
    import yaml

    spec = yaml.safe_load((ROOT / "examples" / "sandbox.yaml").read_text())
    spec["name"] = name
    spec["repositories"] = [
        {
            "namespace": f"{namespace}-{i}" if namespace_per_repo else namespace,
            "name": f"svc-{i:03d}",
            "gitlab_project": project_path(i),
            "build_rules": [{"push_type": "GIT_BRANCH", "push_name": "main", "image_tag": "latest"}],
        }
        for i in projects
    ]
    spec.pop("webhook", None)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def action_counts(calls: Iterable[dict[str, Any]]) -> Counter:
    """``Counter`` of ``(product, action)`` over a sandbox call log."""
    return Counter((c["product"], c["action"]) for c in calls)


def product_counts(calls: Iterable[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(c["product"] for c in calls))


# -- Prefect -----------------------------------------------------------------------------------------
def setup() -> Path:
    """Call first in a benchmark script: a fresh PREFECT_HOME, no inherited API URL/profile, no analytics.

    The product's defaults stay (call-level retries on, as in production): tests/conftest.py turns
    them off for tests, not here.
    """
    home = Path(tempfile.mkdtemp(prefix="acrvpc-bench-prefect-"))
    for var in (
        "PREFECT_API_URL",
        "PREFECT_API_KEY",
        "PREFECT_PROFILE",
        "PREFECT_API_AUTH_STRING",
        "ACRVPC_CALL_RETRIES",
        "PREFECT_LOGGING_TO_API_BATCH_INTERVAL",
    ):
        os.environ.pop(var, None)
    os.environ.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        ALIBABA_CLOUD_ECS_METADATA_DISABLED="true",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    # Flow and task logs still go to the Prefect API at INFO (as in production); the console shows warnings.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    return home


def _flush_prefect_logs() -> None:
    """Send the flow runs' buffered logs and events while the server still answers."""
    with contextlib.suppress(Exception):
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()
    with contextlib.suppress(Exception):
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=10)


@contextlib.contextmanager
def prefect_server(*, deploy: bool = False, server_env: dict[str, str] | None = None) -> Iterator[Any]:
    """A throwaway PostgreSQL cluster and ``prefect server start`` on it (``tests/e2e/prefect_server.py``).

    Sets ``PREFECT_API_URL`` in this process while it runs. With ``deploy``, creates the
    ``acr-vpc-build`` process pool and applies prefect.yaml (``prefect --no-prompt deploy --all``).

    Yields:
        The ``PrefectServer`` (``.api_url``, ``.env()``, ``.spawn()``, ``.home``), with ``.database``
        set to ``"postgresql <version>"`` or ``"sqlite"``.
    """
    bindir = harness.postgres_bindir()
    cluster = harness.PostgresCluster(bindir).start() if bindir else None
    home = Path(tempfile.mkdtemp(prefix="acrvpc-bench-server-"))
    server = harness.PrefectServer(
        home=home,
        port=harness.free_port(),
        log=home / "server.log",
        database_url=cluster.url if cluster else None,
        server_env=dict(server_env or {}),
    )
    server.database = f"postgresql {cluster.version}" if cluster else "sqlite"
    server.cluster = cluster  # postgres_cpu_seconds(server) reads its processes
    if cluster is None:
        say("!!! PostgreSQL not installed (apt-get install -y postgresql): the Prefect server runs on SQLite")
    try:
        server.start()
        if deploy:
            server.run(*harness.PREFECT, "work-pool", "create", "acr-vpc-build", "--type", "process")
            server.run(*harness.PREFECT, "--no-prompt", "deploy", "--all")
        os.environ["PREFECT_API_URL"] = server.api_url  # for subprocesses
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: server.api_url}):  # this process (settings are cached)
            try:
                yield server
            finally:
                _flush_prefect_logs()
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()
        if cluster is not None:
            cluster.stop()


# -- webhook receiver and flow-run states ------------------------------------------------------------
WEBHOOK_SECRET = "bench-webhook-secret-0001"


def start_receiver(
    server: Any, *, rate_limit: str | None = None, log_name: str = "webhook.log", timeout: float = 60
) -> tuple[str, Any]:
    """``acrvpc webhook serve examples/sandbox.yaml`` on a free port against ``server``; ``(url, process)``.

    Args:
        server: the ``PrefectServer`` (its deployments applied).
        rate_limit: ``--rate-limit`` (deliveries per source address), when not the spec's default.
        log_name: the receiver's log file, under the server's home.
        timeout: seconds to wait for ``GET /healthz``.
    """
    import httpx

    port = harness.free_port()
    args = [sys.executable, "-m", "acrvpc", "webhook", "serve", "examples/sandbox.yaml", "--port", str(port)]
    if rate_limit:
        args += ["--rate-limit", rate_limit]
    log = server.home / log_name
    proc = server.spawn(*args, log=log, ACRVPC_WEBHOOK_SECRET=WEBHOOK_SECRET)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"acrvpc webhook serve exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return url, proc
        if time.monotonic() > deadline:
            raise RuntimeError(f"the receiver did not listen: {log.read_text()[-2000:]}")
        time.sleep(0.2)


def push_headers(delivery: str) -> dict[str, str]:
    """The headers GitLab sends with a push hook delivery (``delivery`` is its X-Gitlab-Event-UUID)."""
    return {
        "X-Gitlab-Event": "Push Hook",
        "X-Gitlab-Event-UUID": delivery,
        "X-Gitlab-Token": WEBHOOK_SECRET,
        "Content-Type": "application/json",
        "User-Agent": "GitLab/17.5.1",
    }


def state_times(api_url: str, run_id: str) -> dict[str, float]:
    """Epoch seconds of the first time a flow run entered each state type (``SCHEDULED``, ``RUNNING``...)."""
    from datetime import datetime

    import httpx

    states = httpx.get(f"{api_url}/flow_run_states/", params={"flow_run_id": run_id}, timeout=30)
    states.raise_for_status()
    times: dict[str, float] = {}
    for state in states.json():
        ts = datetime.fromisoformat(state["timestamp"].replace("Z", "+00:00")).timestamp()
        kind = state["type"]
        times[kind] = min(ts, times.get(kind, ts))
    return times


# -- CPU accounting ----------------------------------------------------------------------------------
def session_cpu_seconds(session_id: int) -> float:
    """User + system CPU seconds of the live processes in one session (a server started with a new session)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == session_id:  # field 6 of stat: session id (fields here start at field 3)
                total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def postgres_cpu_seconds(server: Any) -> float:
    """CPU seconds of a :func:`prefect_server`'s PostgreSQL: the postmaster, its live backends and the reaped ones."""
    cluster = getattr(server, "cluster", None)
    if cluster is None:
        return 0.0
    try:
        postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(stat.parent.name)
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if pid == postmaster:  # its own time and its reaped children's (cutime, cstime)
                total += sum(int(f) for f in fields[11:15])
            elif int(fields[1]) == postmaster:  # a live backend or auxiliary process
                total += int(fields[11]) + int(fields[12])
    return total / tick


def self_cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuSampler:
    """The machine's busy CPU share (``/proc/stat``: all but idle and iowait) every 0.5 s, stamped with ``clock()``."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.samples: list[tuple[float, int, int]] = []  # (time, busy jiffies, total jiffies)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _jiffies() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields) - idle, sum(fields)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError, IndexError):
                self.samples.append((self.clock(), *self._jiffies()))
            self._stop.wait(0.5)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def busy(self, lo: float, hi: float) -> str:
        """Busy share of all CPUs between ``lo`` and ``hi`` (percent), or "-" without two samples in it."""
        inside = [s for s in self.samples if lo <= s[0] <= hi]
        if len(inside) < 2 or inside[-1][2] == inside[0][2]:
            return "-"
        return f"{100 * (inside[-1][1] - inside[0][1]) / (inside[-1][2] - inside[0][2]):.0f}%"


ACCESS_LINE = re.compile(r'"(GET|POST|PUT|PATCH|DELETE) (/[^ ?"]*)[^"]* HTTP/[0-9.]+" (\d+)')
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def server_requests(log: Path, mark: int, runs: int) -> dict:
    """The server's requests since ``mark`` per endpoint (ids as ``{id}``), divided by ``runs``: uvicorn's access log."""
    counts: dict[str, int] = {}
    with log.open("rb") as f:
        f.seek(mark)
        for line in f.read().decode(errors="replace").splitlines():
            m = ACCESS_LINE.search(line)
            if m:
                key = f"{m.group(1)} {UUID.sub('{id}', m.group(2))}"
                counts[key] = counts.get(key, 0) + 1
    per_run: dict[str, float] = {"total": round(sum(counts.values()) / max(runs, 1), 1)}
    for key, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        per_run[key] = round(n / max(runs, 1), 2)
    return per_run
