"""Prefect's overhead against a bare script: ``ratio = flow_seconds / bare_seconds`` at 100 ms and 0 ms latency.

    python bench/overhead.py            # 5 runs of each side per latency
    python bench/overhead.py --quick    # 1 run of each side per latency (under a minute)

Setup: an in-process sandbox whose world is the default one plus the bench projects, with ENIs
that attach and builds that finish in zero sandbox time (so both sides measure API calls, not
build durations, and make exactly the same polls); a spec with 3 repositories (one build each);
a real ``prefect server`` on a throwaway PostgreSQL cluster (started once, not timed). The
client-side rate limit is off (``ACRVPC_QPS_*=0``): no quota is under test here.

Each repetition resets the world to fresh state, adds ``latency_ms`` to every sandbox call, and
times, alternately, the ``vpc-build`` flow called in this process (``flow_seconds``: from the call
to its return, Prefect's flow-run creation, task runs, result persistence and shutdown included)
and :func:`bench.bare.run_bare` (``bare_seconds``: the same SDK calls in sequence, no Prefect).
Both sides' call logs must have the same count of every product/action, or the script fails.
The figure per latency is the ratio of the medians.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a fresh clone
from bench import common  # first, before Prefect is imported

if __name__ == "__main__":  # only when run: setup() changes os.environ (a fresh PREFECT_HOME, no inherited API URL)
    common.setup()

TARGET_RATIO_100MS = 1.0


def _run(world, latency_ms: float, fn) -> tuple[float, list[dict]]:
    world.reset()
    world.faults.latency_ms = latency_ms
    start = len(world.calls.list())
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    return seconds, world.calls.list(start)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repetition per side and latency")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per side and latency (default 5)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="latency added to every call (and 0 ms)")
    parser.add_argument("--repos", type=int, default=3, help="repositories in the spec (one build each)")
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.quick else 5)

    for product in common.ALIBABA_PRODUCTS:
        os.environ[f"ACRVPC_QPS_{product.upper()}"] = "0"
    from acrvpc.domain.spec import load_spec
    from acrvpc.sandbox import SandboxServer
    from bench.bare import run_bare

    work = Path(tempfile.mkdtemp(prefix="acrvpc-bench-overhead-"))
    spec_path = common.write_spec(work, "bench-overhead", range(args.repos), namespace_per_repo=True)
    spec = load_spec(spec_path)
    rows, figures = [], {"benchmark": "overhead", "repos": args.repos, "reps": reps, "machine": common.machine()}
    t_setup = time.perf_counter()
    with SandboxServer(common.bench_scenario(args.repos)) as sandbox, common.prefect_server() as server:
        os.environ["ACRVPC_SANDBOX_URL"] = sandbox.url
        figures["prefect_database"] = server.database
        from flows.vpc_build import vpc_build

        world = sandbox.world
        common.say(
            f"setup (sandbox, PostgreSQL, prefect server) {time.perf_counter() - t_setup:.1f} s; "
            f"warming up (one flow run and one bare run, not counted)"
        )
        _run(world, 0, lambda: vpc_build(spec_path=str(spec_path)))
        _run(world, 0, lambda: run_bare(spec))
        for latency in (args.latency_ms, 0.0):
            flow_s, bare_s = [], []
            flow_calls = bare_calls = None
            for _ in range(reps):
                seconds, calls = _run(world, latency, lambda: vpc_build(str(spec_path)))
                flow_s.append(seconds)
                flow_calls = common.action_counts(calls)
                seconds, calls = _run(world, latency, lambda: run_bare(spec))
                bare_s.append(seconds)
                bare_calls = common.action_counts(calls)
                if flow_calls != bare_calls:
                    diff = (flow_calls - bare_calls) + (bare_calls - flow_calls)
                    raise SystemExit(f"the flow and the bare script made different calls: {dict(diff)}")
            n_calls = sum(flow_calls.values())
            ratio = common.median(flow_s) / common.median(bare_s)
            key = f"{latency:g}ms"
            figures[key] = {
                "latency_ms": latency,
                "calls": n_calls,
                "flow_seconds": flow_s,
                "bare_seconds": bare_s,
                "flow_median": common.median(flow_s),
                "bare_median": common.median(bare_s),
                "ratio": round(ratio, 3),
            }
            rows.append(
                {
                    "latency_ms": latency,
                    "calls": n_calls,
                    "calls x latency s": n_calls * latency / 1000,
                    "bare s (median)": common.median(bare_s),
                    "flow s (median)": common.median(flow_s),
                    "ratio": ratio,
                }
            )
    common.say("")
    common.say(
        f"overhead: {args.repos} repositories, fresh state, {reps} run(s) per side, "
        f"Prefect server on {figures['prefect_database']}"
    )
    common.say(common.table(rows))
    hi = figures[f"{args.latency_ms:g}ms"]["ratio"]
    figures["ratio"] = hi
    figures["ratio_0ms"] = figures["0ms"]["ratio"]
    figures["target_ratio"] = TARGET_RATIO_100MS
    figures["target_met"] = hi <= TARGET_RATIO_100MS
    common.say(
        f"ratio at {args.latency_ms:g} ms: {hi:.3f} (target <= {TARGET_RATIO_100MS}: "
        f"{'met' if figures['target_met'] else 'MISSED'}); at 0 ms: {figures['ratio_0ms']:.3f}"
    )
    common.emit(figures)
    return figures


if __name__ == "__main__":
    main()
