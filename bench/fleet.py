"""A fleet of specs converging at once under per-product API quotas: ``efficiency = bound / wall``.

    python bench/fleet.py            # 50 specs
    python bench/fleet.py --quick    # 10 specs (under a minute)
    python bench/fleet.py --workers 2   # as deployment runs on 2 acrvpc-process workers (the production topology)
    python bench/fleet.py --workers 2 --worker-type process   # ... on Prefect's own process workers

Setup: an in-process sandbox (the default world plus one GitLab project per spec; ENIs attach
and builds finish in zero sandbox time) with a quota of ``--qps`` calls per second on each
Alibaba Cloud product (cr, ecs, vpc; the sandbox answers ``Throttling.User`` over it) and
``--latency-ms`` added to every call; a real ``prefect server`` on a throwaway PostgreSQL
cluster (SQLite stalls under many concurrent task runs, prefect-notes §2).

The fleet: ``--specs`` specs, each its own link (name ``fleet-NNN``: its own security group and
ENI) and its own repository ``fleet/svc-NNN`` (all in one namespace, as a release manager's
repositories usually are), each built once. All runs of the ``vpc-build`` flow start together,
one thread per run in this one process (2 cores cannot start 50 worker subprocesses at once
without measuring Python start-up instead of the pipeline). The runs share the process's
client-side rate limiter (``ACRVPC_QPS_<PRODUCT>``, set to the quota), as runs of one worker do.

With ``--workers N``: the production topology instead. Each spec gets the deployments ``acrvpc deploy
SPEC`` makes (``vpc-build/<spec>``: the spec as its parameter, a module entrypoint, no pull step;
``--deployments prefect-yaml``: prefect.yaml's ``vpc-build/nightly`` with each spec's path instead), the
shared rate limits are created (``acrvpc.cloud.ratelimit.ensure_limits``: ``--client-qps`` per product),
N workers start on the ``acr-vpc-build`` pool, and one run per spec is created; each run is its own
process and takes every token from the shared limits (through its worker's quota broker).
``--worker-type acrvpc-process`` (the default): ``python -m acrvpc.warm_worker``, whose runs are forked
from a pre-imported zygote (acrvpc/zygote.py); ``--worker-type process``: ``prefect worker start``,
Prefect's process worker, each run a fresh interpreter. ``--start now`` (the default): each run is due
when it is created, one POST after another (``--create-at-once 8``: eight in flight, as the webhook
receiver creates a burst's runs, ``deployments.webhook.START_CONCURRENCY``), and the wall time runs from
the first creation to the last run's terminal state (the server's state timestamps). ``--start scheduled``: the runs are created first, all due at one instant a
few seconds later (as the nightly deployment's schedule makes them), and the wall time runs from that
instant; the workers start each run's process when it is due (1 s of prefetch): before the workers'
start gate that herd reached Running 5-22 s late on 2 cores and moved through the stages in lockstep
(ECS saturated while CR idled, then the reverse): 0.60; with it 0.81 (docs/benchmarks.md).

Figures: wall time from the first start to the last end; calls per product; the lower bound
``max(calls_p / qps_p)`` over the quota'd products (calls answered, throttled ones excluded);
``efficiency = bound / wall``; failed runs; throttling answers the clients received. To say where
time goes: ``api_phase_efficiency = bound / (last API call - first API call)``, the seconds before
the first and after the last API call, calls per product and the machine's busy CPU in each 5 s, and
CPU seconds (the Prefect server, its PostgreSQL, the workers, the runs). ``--server-requests``: the
server's requests per run by endpoint (its access log, which costs it some CPU: a diagnosis).
GitLab has no quota here: self-managed GitLab's API rate limits are off by default.
"""

from __future__ import annotations

import argparse
import contextvars
import datetime
import os
import re
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a fresh clone
from bench import common
from bench.common import harness

if __name__ == "__main__":  # only when run: setup() changes os.environ (a fresh PREFECT_HOME, no inherited API URL)
    common.setup()

TARGET_EFFICIENCY = 0.8
SCHEDULE_LEAD_S, SCHEDULE_LEAD_PER_RUN_S = (
    5.0,
    0.2,
)  # --start scheduled: the runs are due this long after creation starts
REGION = "cn-hangzhou"  # examples/sandbox.yaml's, which every fleet spec copies
POOL = "acr-vpc-build"
DEPLOYMENT = "vpc-build/nightly"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
THROTTLING = {"Throttling.User", "Throttling", "Throttling.Api", "429"}


def _timeline(
    answered: list[dict], throttled: list[dict], step: float = 5.0, cpu: common.CpuSampler | None = None
) -> list[dict]:
    """Calls per product in each ``step`` seconds of sandbox time (real time: the bench world runs at scale 1).

    With ``cpu``: the machine's busy CPU share in each step too (was it saturated?).
    """
    if not answered:
        return []
    start = min(c["time"] for c in answered + throttled)
    end = max(c["time"] for c in answered + throttled)
    rows = []
    for k in range(int((end - start) // step) + 1):
        lo, hi = start + k * step, start + (k + 1) * step
        row: dict = {"from s": round(k * step)}
        for product in (*common.ALIBABA_PRODUCTS, "gitlab"):
            n = sum(1 for c in answered if c["product"] == product and lo <= c["time"] < hi)
            t = sum(1 for c in throttled if c["product"] == product and lo <= c["time"] < hi)
            row[product] = f"{n} ({t})" if t else str(n)
        if cpu is not None:
            row["cpu busy"] = cpu.busy(lo, hi)
        rows.append(row)
    return rows


def _run_in_threads(server, world, specs: list[Path], errors: dict[str, str], ends: list[float]):
    """Every run as a thread of this process (the runs share this process's rate limiter)."""
    from flows.vpc_build import vpc_build

    n = len(specs)
    gate = threading.Barrier(n + 1)

    def one(path: Path) -> None:
        gate.wait()
        try:
            vpc_build(spec_path=str(path))
        except BaseException as exc:  # noqa: BLE001 - counted and shown
            errors[path.stem] = f"{type(exc).__name__}: {exc}"[:300]
            traceback.print_exc(limit=2)
        finally:
            ends.append(time.perf_counter())

    # Each thread runs in a copy of this context: it carries the Prefect settings (the server's API URL).
    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(one, p), name=p.stem, daemon=True) for p in specs
    ]
    for t in threads:
        t.start()
    server_cpu0, self_cpu0 = common.session_cpu_seconds(server.proc.pid), common.self_cpu_seconds()
    postgres_cpu0 = common.postgres_cpu_seconds(server)
    gate.wait()
    t0, world_t0 = time.perf_counter(), world.clock.now()
    for t in threads:
        t.join()
    wall = max(ends) - t0
    cpu = {
        "fleet_process": round(common.self_cpu_seconds() - self_cpu0, 1),
        "prefect_server": round(common.session_cpu_seconds(server.proc.pid) - server_cpu0, 1),
        "postgres": round(common.postgres_cpu_seconds(server) - postgres_cpu0, 1),
    }
    return t0, world_t0, wall, cpu


def _children_cpu_seconds(pid: int) -> float:
    """CPU seconds of the children a process has waited for (cutime + cstime): a worker's flow-run processes."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def _zygotes(workers) -> list[int]:
    """The acrvpc-process workers' zygotes (children of a worker, in sessions of their own)."""
    pids = {w.pid for w in workers}
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) in pids and b"zygote" in (stat.parent / "cmdline").read_bytes():
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and of the children it has waited for (a zygote and the runs it forked)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")


def _run_on_workers(server, sandbox_url: str, specs: list[Path], args, errors: dict[str, str], ends: list[float]):
    """Every run as a deployment run (``vpc-build/nightly``) on ``args.workers`` process workers.

    The production topology: each flow run is a new Python process started by a worker, and the
    runs share the API quota through the Prefect rate limits (created first, as a deployer would).
    """
    import httpx

    from acrvpc.cloud import ratelimit

    env = {f"ACRVPC_QPS_{p.upper()}": os.environ[f"ACRVPC_QPS_{p.upper()}"] for p in common.ALIBABA_PRODUCTS}
    made = ratelimit.ensure_limits(common.ALIBABA_PRODUCTS, REGION)
    shapes = {k: ratelimit.LimitShape(int(v["limit"]), v["slot_decay_per_second"]) for k, v in made.items()}
    common.say(
        "shared limits: "
        + ", ".join(
            f"{k} ({s.qps:g}/s, {s.burst_calls:g} at once, queue of {ratelimit.HORIZON_SECONDS:g} s)"
            for k, s in shapes.items()
        )
    )
    command = (
        [sys.executable, "-m", "acrvpc.warm_worker", "--pool", POOL]
        if args.worker_type == "acrvpc-process"
        else [*harness.PREFECT, "worker", "start", "--pool", POOL]
    )
    workers = [
        server.spawn(
            *command,
            "--name",
            f"fleet-{i}",
            log=server.home / f"worker-{i}.log",
            ACRVPC_SANDBOX_URL=sandbox_url,
            PREFECT_WORKER_QUERY_SECONDS="1",
            PREFECT_WORKER_PREFETCH_SECONDS="1",
            PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="INFO",
            **env,
        )
        for i in range(args.workers)
    ]
    api = server.api_url
    if args.deployments == "spec":  # what `acrvpc deploy SPEC` makes: the spec as a parameter, module entrypoint
        from acrvpc.deploy import VPC_BUILD, deploy_spec
        from acrvpc.domain.spec import load_spec

        t_deploy = time.perf_counter()
        targets = {}
        for path in specs:
            spec = load_spec(path)
            targets[path] = deploy_spec(spec, pool=POOL)[VPC_BUILD.name(spec)]
        common.say(f"{len(specs)} specs deployed (acrvpc deploy) in {time.perf_counter() - t_deploy:.1f} s")
        parameters: dict[Path, dict] = {path: {} for path in specs}  # each deployment's own spec
    else:  # prefect.yaml's vpc-build/nightly (file entrypoint, a pull step), the spec as a path on the worker
        dep = httpx.get(f"{api}/deployments/name/{DEPLOYMENT}", timeout=30).json()["id"]
        targets = {path: dep for path in specs}
        parameters = {path: {"spec_path": str(path), "start_builds": True} for path in specs}
    # the workers are up when they have polled the pool
    deadline = time.monotonic() + 180
    while len(httpx.post(f"{api}/work_pools/{POOL}/workers/filter", json={}, timeout=30).json()) < args.workers:
        if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
            raise RuntimeError(f"the workers did not start: {(server.home / 'worker-0.log').read_text()[-2000:]}")
        time.sleep(0.5)
    if args.worker_type == "acrvpc-process":  # up means forking: each worker's zygote has imported the flows
        logs = [server.home / f"worker-{i}.log" for i in range(args.workers)]
        while not all("ready:" in log.read_text(errors="replace") for log in logs):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the zygotes did not start: {logs[0].read_text()[-2000:]}")
            time.sleep(0.2)
    zygotes = _zygotes(workers)
    cpu0 = {
        "zygotes": sum(_tree_cpu_seconds(z) for z in zygotes),
        "server": common.session_cpu_seconds(server.proc.pid),
        "postgres": common.postgres_cpu_seconds(server),
        "workers": sum(common.session_cpu_seconds(w.pid) for w in workers),
        "self": common.self_cpu_seconds(),
    }
    server_log_mark = server.log.stat().st_size
    t0, t0_epoch = time.perf_counter(), time.time()
    body: dict = {}
    if args.start == "scheduled":  # all runs due at one instant, as a nightly schedule makes them; created before it
        t0_epoch += SCHEDULE_LEAD_S + SCHEDULE_LEAD_PER_RUN_S * len(specs)
        t0 += t0_epoch - time.time()
        due = datetime.datetime.fromtimestamp(t0_epoch, datetime.UTC).isoformat()
        body["state"] = {"type": "SCHEDULED", "name": "Scheduled", "state_details": {"scheduled_time": due}}
    run_ids = {}
    with httpx.Client(base_url=api, timeout=60) as client:

        def create(path: Path) -> str:
            r = client.post(
                f"/deployments/{targets[path]}/create_flow_run",
                json={"parameters": parameters[path], "name": path.stem, **body},
            )
            r.raise_for_status()
            return r.json()["id"]

        # --create-at-once requests at a time (the webhook receiver's START_CONCURRENCY: 8), in spec order
        with ThreadPoolExecutor(max_workers=args.create_at_once) as pool:
            for path, run_id in zip(specs, pool.map(create, specs), strict=True):
                run_ids[run_id] = path.stem
        # when the last run was created (seconds after the start; negative: before it)
        created_s = time.perf_counter() - t0
        if args.start == "scheduled" and created_s > 0:
            common.say(f"!!! creating the runs ended {created_s:.1f} s after they were due: the wall time includes it")
        deadline = time.monotonic() + args.timeout
        while True:
            runs = client.post(
                "/flow_runs/filter", json={"flow_runs": {"id": {"any_": list(run_ids)}}, "limit": len(run_ids)}
            ).json()
            if all(r["state"]["type"] in TERMINAL for r in runs):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(1.0)
    starts, pickups = [], []
    for run in runs:
        times = common.state_times(api, run["id"])
        name = run_ids[run["id"]]
        if run["state"]["type"] != "COMPLETED":
            errors[name] = f"{run['state']['type']} {run['state']['name']}: {run['state'].get('message') or ''}"[:300]
        end = max(v for k, v in times.items() if k in TERMINAL) if run["state"]["type"] in TERMINAL else time.time()
        ends.append(t0 + end - t0_epoch)
        if "RUNNING" in times:
            starts.append(times["RUNNING"] - t0_epoch)
        if "PENDING" in times:
            pickups.append(times["PENDING"] - t0_epoch)
    wall = max(ends) - t0
    cpu = {
        "fleet_process": round(common.self_cpu_seconds() - cpu0["self"], 1),
        "prefect_server": round(common.session_cpu_seconds(server.proc.pid) - cpu0["server"], 1),
        "postgres": round(common.postgres_cpu_seconds(server) - cpu0["postgres"], 1),
        "workers_and_runs": round(sum(common.session_cpu_seconds(w.pid) for w in workers) - cpu0["workers"], 1),
        "flow_run_processes": round(sum(_children_cpu_seconds(w.pid) for w in workers), 1),
    }
    if zygotes:  # acrvpc-process: the stubs are the workers' children, the forked runs the zygotes'
        cpu["zygotes_and_forked_runs"] = round(sum(_tree_cpu_seconds(z) for z in zygotes) - cpu0["zygotes"], 1)
        cpu["flow_run_processes"] = round(cpu["flow_run_processes"] + cpu["zygotes_and_forked_runs"], 1)
    cpu["per_flow_run_process"] = round(cpu["flow_run_processes"] / max(len(specs), 1), 2)
    start_s = {
        kind: {"first": round(min(v), 1), "median": round(common.median(v), 1), "last": round(max(v), 1)}
        for kind, v in (("pending (a worker took it)", pickups), ("running (its process started)", starts))
        if v
    }
    broker = _broker_counters([server.home / f"worker-{i}.log" for i in range(args.workers)])
    for w in workers:
        harness.stop_group(w)
    deadline = time.monotonic() + 30  # the zygotes exit once the runs they forked have ended and been reaped
    while any(_alive(z) for z in zygotes) and time.monotonic() < deadline:
        time.sleep(0.2)
    text = "".join((server.home / f"worker-{i}.log").read_text(errors="replace") for i in range(args.workers))
    # each zygote logs what every run it forked cost, the interpreter's exit included (the runs' last
    # seconds may end after the terminal state this function waited for, and so after cpu was read)
    run_cpu = [float(m) for m in re.findall(r"acrvpc zygote \d+: run pid \d+ exited with -?\d+: ([0-9.]+) CPU s", text)]
    if run_cpu:
        cpu["per_forked_run_as_reaped"] = round(sum(run_cpu) / len(run_cpu), 3)
    start_s["all created"] = round(created_s, 1)
    start_s["starts"] = {
        "forked": text.count(": started warm: "),
        "cold": text.count("starting it cold"),
        "cold_by_stub": text.count("acrvpc fork stub:"),
    }
    if broker:
        start_s["quota_broker"] = broker
    if args.server_requests:
        start_s["server_requests_per_run"] = common.server_requests(server.log, server_log_mark, len(specs))
    return t0, wall, cpu, start_s


BROKER_LINE = re.compile(
    r"quota broker (?:idle|stopped): (\d+) batches, (\d+) calls \(mean batch [0-9.]+\), (\d+) server requests"
)


def _broker_counters(logs: list[Path], wait: float = 12.0) -> dict:
    """The acrvpc-process workers' quota brokers' counters (acrvpc/cloud/quota_broker.py), summed.

    Each broker logs them once it has been idle for a few seconds: wait (up to ``wait`` s) for a line
    written after now, then take each log's last one. ``{}`` when the workers have no broker.
    """
    marks = [log.stat().st_size if log.exists() else 0 for log in logs]
    deadline = time.monotonic() + wait
    lines: list[str] = []
    while True:
        fresh = [log.read_bytes()[mark:].decode(errors="replace") for log, mark in zip(logs, marks, strict=True)]
        found = [BROKER_LINE.findall(text) for text in fresh]
        if all(found) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for log, since in zip(logs, found, strict=True):
        if not since:  # no line after the runs: the last one before (or none: no broker)
            since = BROKER_LINE.findall(log.read_text(errors="replace"))
        if since:
            lines.append(since[-1])
    if not lines:
        return {}
    batches, calls, requests = (sum(int(line[i]) for line in lines) for i in range(3))
    return {
        "batches": batches,
        "calls": calls,
        "server_requests": requests,
        "mean_batch": round(calls / batches, 2) if batches else 0.0,
        "server_requests_per_call": round(requests / calls, 3) if calls else 0.0,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 specs instead of 50")
    parser.add_argument("--specs", type=int, default=None, help="specs converging at once (default 50)")
    parser.add_argument("--qps", type=float, default=20.0, help="quota per Alibaba Cloud product (calls/s)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="latency added to every call")
    parser.add_argument(
        "--client-qps",
        type=float,
        default=None,
        help="client-side rate limit per product (ACRVPC_QPS_*; default: the quota)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="run the fleet as deployment runs on N process workers sharing the quota through "
        "Prefect rate limits (0, the default: one thread per run in this process)",
    )
    parser.add_argument(
        "--worker-type",
        choices=("acrvpc-process", "process"),
        default="acrvpc-process",
        help="with --workers: acrvpc-process (runs forked from a pre-imported zygote; the default) "
        "or process (Prefect's process worker: a fresh interpreter per run)",
    )
    parser.add_argument(
        "--deployments",
        choices=("spec", "prefect-yaml"),
        default="spec",
        help="with --workers: spec (the default: one `acrvpc deploy`-made vpc-build deployment per spec, the spec "
        "as its parameter, a module entrypoint, no pull step: the production path) or prefect-yaml "
        "(prefect.yaml's vpc-build/nightly with each spec's path: a file entrypoint and Prefect's pull step)",
    )
    parser.add_argument(
        "--start",
        choices=("now", "scheduled"),
        default="now",
        help="with --workers: now (the default: each run is due when created, one POST after another, and the "
        "wall time runs from the first creation) or scheduled (the runs are created first, all due at one "
        "instant, as a nightly schedule makes them; the wall time runs from that instant)",
    )
    parser.add_argument(
        "--create-at-once",
        type=int,
        default=1,
        help="with --workers --start now: run creations in flight at once (default 1: one POST after another; "
        "8: as the webhook receiver creates a burst's runs, deployments.webhook.START_CONCURRENCY)",
    )
    parser.add_argument("--timeout", type=float, default=1200, help="seconds to wait for the runs (--workers)")
    parser.add_argument(
        "--server-requests",
        action="store_true",
        help="with --workers: count the Prefect server's requests per endpoint (uvicorn's access log, which "
        "costs the server some CPU: a diagnosis, not the figure)",
    )
    args = parser.parse_args(argv)
    if args.create_at_once < 1:
        parser.error("--create-at-once must be at least 1")
    n = args.specs or (10 if args.quick else 50)
    client_qps = args.qps if args.client_qps is None else args.client_qps
    for product in common.ALIBABA_PRODUCTS:
        os.environ[f"ACRVPC_QPS_{product.upper()}"] = f"{client_qps:g}"

    from acrvpc.sandbox import SandboxServer

    work = Path(tempfile.mkdtemp(prefix="acrvpc-bench-fleet-"))
    specs = [common.write_spec(work, f"fleet-{i:03d}", [i], namespace="fleet") for i in range(n)]
    figures: dict = {
        "benchmark": "fleet",
        "specs": n,
        "qps_per_product": args.qps,
        "client_qps": client_qps,
        "latency_ms": args.latency_ms,
        "machine": common.machine(),
    }
    t_setup = time.perf_counter()
    figures["workers"] = args.workers
    if args.workers:
        figures["start"] = args.start
        figures["create_at_once"] = args.create_at_once
        figures["deployments"] = args.deployments
    figures["worker_type"] = args.worker_type if args.workers else "threads"
    with (
        SandboxServer(common.bench_scenario(n)) as sandbox,
        common.prefect_server(
            deploy=bool(args.workers),
            server_env={"PREFECT_SERVER_LOGGING_LEVEL": "INFO"} if args.server_requests else None,
        ) as server,
    ):
        os.environ["ACRVPC_SANDBOX_URL"] = sandbox.url
        figures["prefect_database"] = server.database
        world = sandbox.world
        world.faults.latency_ms = args.latency_ms
        for product in common.ALIBABA_PRODUCTS:
            world.faults.set_quota(args.qps, product=product)
        common.say(
            f"setup {time.perf_counter() - t_setup:.1f} s; {n} runs of vpc-build start now "
            f"(quota {args.qps:g}/s per product, {args.latency_ms:g} ms per call)"
        )
        errors: dict[str, str] = {}
        ends: list[float] = []
        sampler = common.CpuSampler(world.clock.now)
        with sampler:
            if args.workers:
                t0, wall, cpu, figures["run_start_s"] = _run_on_workers(server, sandbox.url, specs, args, errors, ends)
            else:
                t0, world_t0, wall, cpu = _run_in_threads(server, world, specs, errors, ends)
        if args.workers:
            figures["quota_broker"] = figures["run_start_s"].pop("quota_broker", {})
            if args.server_requests:
                figures["server_requests_per_run"] = figures["run_start_s"].pop("server_requests_per_run")
            world_t0 = world.clock.now() - (time.perf_counter() - t0)
        calls = world.calls.list()
    throttled = [c for c in calls if c["code"] in THROTTLING]
    answered = [c for c in calls if c["code"] not in THROTTLING]
    per_product = common.product_counts(answered)
    qps = {p: args.qps for p in common.ALIBABA_PRODUCTS}
    bound, binding = common.lower_bound(per_product, qps)
    eff = common.efficiency(bound, wall)
    rows = [
        {
            "product": p,
            "calls": per_product.get(p, 0),
            "quota qps": qps.get(p, 0.0) or "-",
            "bound s": per_product.get(p, 0) / qps[p] if p in qps else "-",
            "throttled": sum(1 for c in throttled if c["product"] == p),
            "writes": sum(1 for c in answered if c["product"] == p and c["writes"]),
        }
        for p in sorted(per_product)
    ]
    timeline = _timeline(answered, throttled, cpu=sampler)
    first_call = min(c["time"] for c in answered) - world_t0
    last_call = max(c["time"] for c in answered) - world_t0
    run_ends = sorted(e - t0 for e in ends)
    figures.update(
        cpu_seconds=cpu,
        first_api_call_s=round(first_call, 1),
        last_api_call_s=round(last_call, 1),
        api_phase_efficiency=round(bound / max(last_call - first_call, 1e-9), 3),
        run_end_s={
            "first": round(run_ends[0], 1),
            "median": round(common.median(run_ends), 1),
            "last": round(run_ends[-1], 1),
        },
        timeline_5s=timeline,
        wall_seconds=round(wall, 3),
        calls_per_product=per_product,
        bound_seconds=round(bound, 3),
        bound_product=binding,
        efficiency=round(eff, 3),
        failed_runs=len(errors),
        throttling_errors=len(throttled),
        calls_per_run=round(len(answered) / n, 1),
        target_efficiency=TARGET_EFFICIENCY,
        target_met=eff >= TARGET_EFFICIENCY and not errors,
        errors=errors,
    )
    common.say("")
    topology = (
        f"deployment runs on {args.workers} {args.worker_type} workers (a process per run), quota shared through "
        f"Prefect rate limits"
        if args.workers
        else "one process, a thread per flow run"
    )
    common.say(f"fleet: {n} specs at once, Prefect server on {figures['prefect_database']}, {topology}")
    if args.workers:
        common.say(f"seconds after the runs were created: {figures['run_start_s']}")
        common.say(f"the workers' quota brokers (summed): {figures.get('quota_broker') or 'none'}")
    if "server_requests_per_run" in figures:
        common.say(f"Prefect server requests per run, by endpoint: {figures['server_requests_per_run']}")
    common.say(common.table(rows))
    common.say("calls answered per 5 s of the run (throttled in brackets):")
    common.say(common.table(timeline))
    common.say(
        f"API calls from {first_call:.1f} s to {last_call:.1f} s after the start; runs ended at {run_ends[0]:.1f} s (first), "
        f"{common.median(run_ends):.1f} s (median), {run_ends[-1]:.1f} s (last); CPU seconds during the run: "
        f"this process {cpu['fleet_process']}, Prefect server {cpu['prefect_server']}, "
        f"its PostgreSQL {cpu.get('postgres', '-')}, "
        f"workers {cpu.get('workers_and_runs', '-')}, flow-run processes {cpu.get('flow_run_processes', '-')} "
        f"(per forked run as its zygote reaped it: {cpu.get('per_forked_run_as_reaped', '-')}) "
        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    common.say(
        f"API phase: bound / (last call - first call) = {bound / max(last_call - first_call, 1e-9):.3f}; "
        f"before the first call {first_call:.1f} s, after the last {wall - last_call:.1f} s"
    )
    common.say(
        f"wall {wall:.1f} s, bound {bound:.1f} s ({binding}), efficiency {eff:.3f} "
        f"(target >= {TARGET_EFFICIENCY}: {'met' if figures['target_met'] else 'MISSED'}), "
        f"failed runs {len(errors)}, throttling answers {len(throttled)}"
    )
    common.emit(figures)
    return figures


if __name__ == "__main__":
    main()
