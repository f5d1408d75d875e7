"""How fast a GitLab push becomes a running build: POST to the receiver -> the flow run's Running state.

    python bench/trigger.py            # 20 deliveries per worker type and setting (1 s and 0.25 s polling)
    python bench/trigger.py --quick    # 3 deliveries per worker type, 1 s polling only, no import timing
    python bench/trigger.py --workers warm   # only the acrvpc-process worker (acrvpc/warm_worker.py)

Setup, as production runs it: a real ``prefect server`` on a throwaway PostgreSQL cluster with
prefect.yaml deployed (``prefect --no-prompt deploy --all``), a ``prefect worker start --pool
acr-vpc-build`` process worker (``--workers process``) or the ``acrvpc-process`` worker whose runs are
forked from a pre-imported zygote (``--workers warm``: ``python -m acrvpc.warm_worker --pool acr-vpc-build``,
one process per run still), and ``acrvpc webhook serve examples/sandbox.yaml`` (the receiver).
The sandbox world (in this process) is converged first without Prefect (``bench.bare``), so each
delivery's run only verifies its binding and builds (builds finish in zero sandbox time).

Each delivery is GitLab's documented push payload for ``platform/billing-api`` ``main`` with a
fresh ``X-Gitlab-Event-UUID``. Deliveries go one at a time: the next is sent a random 0.3-1.3 s
after the previous run ended (random, so the gaps do not align with the worker's polling loop;
one at a time, so runs do not compete for the 2 cores). Per delivery the server's state history
gives: POST -> Scheduled (the receiver created the run), -> Pending (the worker picked it up),
-> Running (the worker's subprocess started the flow). Figures: p50 and p95 of POST -> Running
per worker type and setting (``PREFECT_WORKER_QUERY_SECONDS``), and the parts' medians; and the CPU
seconds a fresh Python spends importing prefect, acrvpc.cloud.clients and the on-push flow module (CPU
time, unlike wall time, does not depend on how busy the machine is).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a fresh clone
from bench import common  # first, before Prefect is imported

if __name__ == "__main__":  # only when run: setup() changes os.environ (a fresh PREFECT_HOME, no inherited API URL)
    common.setup()

TARGET_P50_S = 1.5
WARM_UP_S = 10.0
POOL = "acr-vpc-build"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _wait_worker(api_url: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = httpx.post(f"{api_url}/work_pools/{POOL}/workers/filter", json={}, timeout=10)
        if workers.status_code == 200 and any(w.get("status") == "ONLINE" for w in workers.json()):
            return
        time.sleep(0.3)
    raise RuntimeError(f"no worker of pool {POOL} came online in {timeout} s")


def _wait_final(api_url: str, run_id: str, timeout: float = 120) -> str:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = httpx.get(f"{api_url}/flow_runs/{run_id}", timeout=10).json().get("state") or {}
        if state.get("type") in FINAL:
            return state["type"]
        time.sleep(0.1)
    return "TIMEOUT"


def _deliveries(server, receiver: str, count: int) -> list[dict]:
    import httpx

    from tests.webhook_payloads import PUSH

    samples = []
    for i in range(count):
        t_post = time.time()
        answer = httpx.post(
            f"{receiver}/hooks/gitlab",
            content=json.dumps(PUSH),
            headers=common.push_headers(str(uuid.uuid4())),
            timeout=10,
        )
        answered = time.time() - t_post
        if answer.status_code != 202:
            raise RuntimeError(f"delivery {i}: {answer.status_code} {answer.text}")
        run_id = answer.json()["flow_run_id"]
        final = _wait_final(server.api_url, run_id)
        times = common.state_times(server.api_url, run_id)
        running = times.get("RUNNING")
        samples.append(
            {
                "final": final,
                "answer_s": answered,
                "to_scheduled_s": times.get("SCHEDULED", t_post) - t_post,
                "to_pending_s": times.get("PENDING", t_post) - t_post,
                "pending_to_running_s": (running - times["PENDING"]) if running and "PENDING" in times else None,
                "to_running_s": (running - t_post) if running else None,
            }
        )
        time.sleep(random.uniform(0.3, 1.3))
    return samples


def import_cpu_seconds(module: str, repeat: int = 3) -> float:
    """Median CPU seconds (user + system) of a fresh ``python -c "import <module>"``: what each run's process pays."""
    import resource
    import subprocess

    samples = []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", f"import {module}"], cwd=common.ROOT, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        samples.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return round(common.median(samples), 2)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 deliveries, 1 s worker polling only")
    parser.add_argument("--deliveries", type=int, default=None, help="deliveries per setting (default 20)")
    parser.add_argument(
        "--workers",
        default="process,warm",
        help="comma-separated worker types: process (Prefect's), warm (acrvpc-process)",
    )
    parser.add_argument(
        "--query-seconds",
        default=None,
        help="comma-separated PREFECT_WORKER_QUERY_SECONDS values to measure (default 1,0.25)",
    )
    args = parser.parse_args(argv)
    count = args.deliveries or (3 if args.quick else 20)
    kinds = [k.strip() for k in args.workers.split(",") if k.strip()]
    if not kinds or set(kinds) - {"process", "warm"}:
        parser.error(f"--workers {args.workers}: choose from process, warm (comma-separated)")
    settings = [float(v) for v in (args.query_seconds or ("1" if args.quick else "1,0.25")).split(",")]

    from acrvpc.domain.spec import load_spec
    from acrvpc.sandbox import SandboxServer
    from bench.bare import run_bare

    figures: dict = {"benchmark": "trigger", "deliveries": count, "machine": common.machine(), "settings": {}}
    rows = []
    t_setup = time.perf_counter()
    with SandboxServer(common.bench_scenario(0)) as sandbox, common.prefect_server(deploy=True) as server:
        os.environ["ACRVPC_SANDBOX_URL"] = sandbox.url
        figures["prefect_database"] = server.database
        run_bare(load_spec(common.ROOT / "examples" / "sandbox.yaml"), start_builds=False)
        receiver, _ = common.start_receiver(server, rate_limit="1000/second")
        common.say(f"setup (PostgreSQL, server, deploy, receiver, converge) {time.perf_counter() - t_setup:.1f} s")
        for kind, query in [(k, q) for k in kinds for q in settings]:
            command = (
                [sys.executable, "-m", "acrvpc.warm_worker", "--pool", POOL]
                if kind == "warm"
                else [*common.harness.PREFECT, "worker", "start", "--pool", POOL]
            )
            worker = server.spawn(
                *command,
                log=server.home / f"worker-{kind}-{query}.log",
                ACRVPC_SANDBOX_URL=sandbox.url,
                PREFECT_WORKER_QUERY_SECONDS=f"{query:g}",
                PREFECT_WORKER_PREFETCH_SECONDS="10",
            )
            try:
                _wait_worker(server.api_url)
                # the warm worker's zygote imports Prefect and the flows (4 CPU s) before it forks runs
                time.sleep(WARM_UP_S if kind == "warm" else 1.0)
                samples = _deliveries(server, receiver, count)
            finally:
                common.harness.stop_group(worker)
            log = (server.home / f"worker-{kind}-{query}.log").read_text(errors="replace")
            starts = {
                "warm": log.count(": started warm: "),
                "cold": log.count("starting it cold"),
                "cold_by_stub": log.count("acrvpc fork stub:"),
            }
            ok = [s for s in samples if s["to_running_s"] is not None]
            running = [s["to_running_s"] for s in ok]
            entry = {
                "worker": kind,
                "query_seconds": query,
                "deliveries": count,
                "starts": starts,
                "completed": sum(s["final"] == "COMPLETED" for s in samples),
                "p50_s": round(common.percentile(running, 50), 3),
                "p95_s": round(common.percentile(running, 95), 3),
                "answer_median_s": round(common.median(s["answer_s"] for s in samples), 3),
                "to_scheduled_median_s": round(common.median(s["to_scheduled_s"] for s in samples), 3),
                "to_pending_median_s": round(common.median(s["to_pending_s"] for s in ok), 3),
                "pending_to_running_median_s": round(common.median(s["pending_to_running_s"] for s in ok), 3),
                "to_running_s": [round(v, 3) for v in running],
            }
            figures["settings"][f"{kind}-{query:g}"] = entry
            rows.append(
                {
                    "worker": kind,
                    "query s": query,
                    "runs": f"{entry['completed']}/{count}",
                    "answer": entry["answer_median_s"],
                    "->Scheduled": entry["to_scheduled_median_s"],
                    "->Pending": entry["to_pending_median_s"],
                    "Pending->Running": entry["pending_to_running_median_s"],
                    "POST->Running p50": entry["p50_s"],
                    "p95": entry["p95_s"],
                }
            )
    imports = (
        {} if args.quick else {m: import_cpu_seconds(m) for m in ("prefect", "acrvpc.cloud.clients", "flows.on_push")}
    )
    figures["import_cpu_seconds"] = imports
    best = min(figures["settings"].values(), key=lambda e: e["p50_s"])
    figures["by_worker"] = {
        k: {"p50_s": e["p50_s"], "p95_s": e["p95_s"], "query_seconds": e["query_seconds"]}
        for k in kinds
        for e in [min((e for e in figures["settings"].values() if e["worker"] == k), key=lambda e: e["p50_s"])]
    }
    figures.update(
        p50_s=best["p50_s"],
        p95_s=best["p95_s"],
        best_query_seconds=best["query_seconds"],
        best_worker=best["worker"],
        load_average=os.getloadavg(),
        target_p50_s=TARGET_P50_S,
        target_met=best["p50_s"] <= TARGET_P50_S,
    )
    common.say("")
    common.say(
        f"trigger: POST -> Running, {count} deliveries per setting, process worker, "
        f"Prefect server on {figures['prefect_database']} (medians in seconds)"
    )
    common.say(common.table(rows))
    if imports:
        common.say(
            "CPU seconds of a fresh python importing: "
            + ", ".join(f"{m} {v}" for m, v in imports.items())
            + " (each run's process imports flows.on_push before it reports Running)"
        )
    common.say(
        f"p50 {best['p50_s']:.2f} s, p95 {best['p95_s']:.2f} s at PREFECT_WORKER_QUERY_SECONDS="
        f"{best['query_seconds']:g}, {best['worker']} worker (target p50 <= {TARGET_P50_S} s: "
        f"{'met' if figures['target_met'] else 'MISSED'})"
    )
    common.emit(figures)
    return figures


if __name__ == "__main__":
    main()
