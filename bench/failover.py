"""Crash failover across hosts: deployed runs on two worker hosts, one host killed mid-run.

Builds the namespace topology of the multi-host e2e tests (tests/e2e/multihost.py: Prefect server on
PostgreSQL, worker-a and worker-b, S3-compatible result storage, each in a network namespace of its
own; needs root, iproute2 and PostgreSQL), installs the crash failover automations
(``acrvpc automations --failover``), starts the runs with transient sandbox faults, SIGKILLs every
process on worker-a's host while runs are in flight, and waits for every run to end. The runs host
A held are marked Crashed (heartbeats stopped, or never started), rescheduled, and resumed on B.

    python bench/failover.py            # 20 runs, 20% faults, kill after 20 s
    python bench/failover.py --quick    # 4 runs, no faults, kill after 12 s

Last line (JSON): hosts, runs, completed, duplicates, orphans (counts), failed_over, kill_to_running_s
(max over the runs A held, and each), heartbeat_s, failover_after_s, seconds, machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 runs, no faults")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--fault-rate", type=float)
    parser.add_argument("--kill-after", type=float, help="seconds after the runs are created")
    parser.add_argument("--heartbeat", type=int, default=30, help="PREFECT_FLOWS_HEARTBEAT_FREQUENCY (>= 30)")
    parser.add_argument("--failover-after", type=float, default=60, help="acrvpc automations --failover-after")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    runs = args.runs or (4 if args.quick else 20)
    fault_rate = args.fault_rate if args.fault_rate is not None else (0.0 if args.quick else 0.2)
    kill_after = args.kill_after if args.kill_after is not None else (12.0 if args.quick else 20.0)
    common.setup()
    from tests.e2e import netns
    from tests.e2e.multihost import HOSTS, failover_soak, prefect_hosts

    reason = netns.unavailable_reason()
    if reason:
        raise SystemExit(f"bench/failover.py needs network namespaces: {reason}")
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="acrvpc-bench-failover-") as tmp,
        prefect_hosts(Path(tmp), server_env={"PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY": "PT1S"}) as cluster,
    ):
        common.say(f"topology up in {time.monotonic() - started:.0f} s: {', '.join(HOSTS)}")
        report = failover_soak(
            cluster,
            runs=runs,
            kill_after=kill_after,
            fault_rate=fault_rate,
            seed=args.seed,
            heartbeat=args.heartbeat,
            failover_after=args.failover_after,
            say=common.say,
        )
    k2r = sorted(report["kill_to_running_s"].values())
    common.say(
        common.table(
            [
                {
                    "runs": report["runs"],
                    "completed": report["completed"],
                    "failed_over": len(report["failed_over"]),
                    "kill_to_running_max_s": max(k2r) if k2r else "",
                    "duplicates": len(report["duplicates"]),
                    "orphans": len(report["orphans"]),
                    "seconds": report["seconds"],
                }
            ]
        )
    )
    for line in report["duplicates"] + report["orphans"]:
        common.say(f"  {line}")
    for run_id, (state, message) in report["not_completed"].items():
        common.say(f"  {run_id}: {state} {message}")
    figures = {
        "hosts": len(HOSTS),
        "workers": 2,
        "runs": report["runs"],
        "completed": report["completed"],
        "duplicates": len(report["duplicates"]),
        "orphans": len(report["orphans"]),
        "failed_over": len(report["failed_over"]),
        "kill_to_running_s": max(k2r) if k2r else None,
        "kill_to_running_each_s": k2r,
        "killed_after_s": report["killed_after_s"],
        "heartbeat_s": args.heartbeat,
        "failover_after_s": args.failover_after,
        "fault_rate": fault_rate,
        "faults_injected": report["faults_injected"],
        "seconds": round(time.monotonic() - started, 1),
        "run_seconds": report["seconds"],
        "machine": common.machine(),
    }
    common.emit(figures)
    return figures


if __name__ == "__main__":
    main()
