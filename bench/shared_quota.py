"""The cost of the shared API quota (acrvpc/cloud/ratelimit.py): one Prefect global concurrency limit per product.

    python bench/shared_quota.py            # ~2 minutes on 2 cores
    python bench/shared_quota.py --quick

Against a real ``prefect server`` on a throwaway PostgreSQL cluster (bench/common.py):

1. **Cost per call, uncontended**: ``rate_limit(name, occupy=...)`` on a limit that never blocks,
   ``--samples`` times: wall milliseconds per acquisition (median, p95) and CPU milliseconds of
   the calling process per acquisition; per call = per acquisition / calls per acquisition.
   Also the bare ``POST /v2/concurrency_limits/increment`` (no event) to show what the event costs.
2. **Delivered rate under contention**: ``--procs`` processes with ``--threads`` threads each take
   tokens as fast as they can for ``--seconds`` from one limit of ``--qps`` calls/s (burst qps/2),
   through :class:`acrvpc.cloud.ratelimit.SharedLimiter`, for 1 and 10 slots per call and lease 1 and 5.
   ``delivered`` = calls granted after the first burst / seconds; ``ratio`` = delivered / qps
   (1.0: the limit delivers its rate; above 1 would break the quota).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common  # noqa: E402

if __name__ == "__main__":
    common.setup()

HAMMER = r"""
import json, sys, threading, time
from acrvpc.cloud import ratelimit
name, slots, lease, threads, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
ratelimit.SLOTS_PER_CALL = slots
lim = ratelimit.SharedLimiter(name, burst=10, lease=lease)
lim.acquire()  # warm up (client, service thread)
stamps = []
start = time.time()
stop = start + seconds
def run():
    while time.time() < stop:
        lim.acquire()
        stamps.append(time.time())
ts = [threading.Thread(target=run) for _ in range(threads)]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps({"stamps": stamps, "acquisitions": lim.acquisitions, "calls": lim.calls}))
"""


def uncontended(name: str, occupy: int, samples: int, bare: bool = False) -> dict:
    import resource

    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import rate_limit

    walls = []
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    with get_client(sync_client=True) as client:
        for _ in range(samples):
            t = time.perf_counter()
            if bare:
                client.increment_concurrency_slots(names=[name], slots=occupy, mode="rate_limit")
            else:
                rate_limit(name, occupy=occupy, strict=True)
            walls.append((time.perf_counter() - t) * 1000)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) * 1000 / samples
    return {"median_ms": round(statistics.median(walls), 2), "p95_ms": round(common.percentile(walls, 95), 2),
            "client_cpu_ms": round(cpu, 2)}


def contended(server, name: str, qps: float, slots: int, lease: int, procs: int, threads: int, seconds: float) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(
            name=name, limit=int(qps / 2) * slots, slot_decay_per_second=qps * slots))
    cpu0 = common.session_cpu_seconds(server.proc.pid)
    ps = [subprocess.Popen([sys.executable, "-c", HAMMER, name, str(slots), str(lease), str(threads), str(seconds)],
                           cwd=common.ROOT, env=server.env(), stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    outs = [json.loads(p.communicate(timeout=seconds + 120)[0].strip().splitlines()[-1]) for p in ps]
    server_cpu = common.session_cpu_seconds(server.proc.pid) - cpu0
    stamps = sorted(s for o in outs for s in o["stamps"])
    burst = int(qps / 2)
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 1.0
    delivered = (len(stamps) - burst) / span if span > 0 else 0.0
    # the worst 1-second window: calls in any second must stay <= qps + burst
    worst, j = 0, 0
    for i, t in enumerate(stamps):
        while stamps[j] < t - 1.0:
            j += 1
        worst = max(worst, i - j + 1)
    calls = sum(o["calls"] for o in outs)
    acq = sum(o["acquisitions"] for o in outs)
    return {"slots_per_call": slots, "lease": lease, "procs": procs, "threads": threads,
            "delivered_qps": round(delivered, 1), "ratio": round(delivered / qps, 2), "max_calls_in_1s": worst,
            "allowed_in_1s": int(qps + burst), "calls_per_acquisition": round(calls / max(acq, 1), 2),
            "server_cpu_s_per_s": round(server_cpu / seconds, 2)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--qps", type=float, default=20.0)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.seconds = 100, 8.0
    figures: dict = {"benchmark": "shared_quota", "machine": common.machine(), "qps": args.qps}
    with common.prefect_server() as server:
        figures["prefect_database"] = server.database
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

        with get_client(sync_client=True) as client:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(
                name="bench-open", limit=10**6, slot_decay_per_second=10**6))
        uncontended("bench-open", 1, 10)  # warm up
        rows = []
        for occupy in (1, 10, 50):
            r = uncontended("bench-open", occupy, args.samples)
            rows.append({"acquisition": f"rate_limit(occupy={occupy})", **r})
        rows.append({"acquisition": "bare POST increment (no event)", **uncontended("bench-open", 10, args.samples, bare=True)})
        figures["uncontended"] = rows
        common.say(f"uncontended acquisitions ({args.samples} each; load {os.getloadavg()[0]:.1f}):")
        common.say(common.table(rows))
        crows = []
        for i, (slots, lease) in enumerate(((1, 1), (10, 1), (10, 5))):
            crows.append(contended(server, f"bench-c{i}", args.qps, slots, lease, args.procs, args.threads,
                                   args.seconds))
            common.say(json.dumps(crows[-1]))
        figures["contended"] = crows
        common.say(f"{args.procs} processes x {args.threads} threads, {args.seconds:g} s, limit {args.qps:g}/s "
                   f"(load {os.getloadavg()[0]:.1f}):")
        common.say(common.table(crows))
    figures["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    common.emit(figures)
    return figures


if __name__ == "__main__":
    main()
