"""The cost of the shared API quota (acrvpc/cloud/ratelimit.py): one Prefect global concurrency limit per product.

    python bench/shared_quota.py            # ~2 minutes on 2 cores
    python bench/shared_quota.py --quick

Against a real ``prefect server`` on a throwaway PostgreSQL cluster (bench/common.py):

1. **Cost per call, uncontended** on a limit that never blocks, ``--samples`` times: wall
   milliseconds per acquisition (median, p95) and CPU milliseconds of the calling process per
   acquisition, for the first design (``prefect.concurrency.sync.rate_limit(name, occupy=...)``: a
   new client and an event per acquisition), the bare ``POST /v2/concurrency_limits/increment``,
   and the current one (:func:`acrvpc.cloud.shared_limit.reserve`: increment + GET through the
   process's one client). Also the CPU cost of opening a Prefect client and of reading the API
   URL afresh (``Settings()``) vs. reused.
2. **Delivered rate under contention**: processes take tokens as fast as they can for ``--seconds``
   from one limit of ``--qps`` calls/s (burst qps/2) through
   :class:`acrvpc.cloud.shared_limit.SharedLimiter`: ``--procs`` processes of ``--threads``
   threads (lease 1 and 5), and ``--many`` processes of one thread (a fleet's flow runs), for the
   old design (a burst-sized limit, 10 slots per call, 423s retried) and the new one (a
   queue-shaped limit, reservations). ``delivered`` = calls granted after the first burst /
   seconds; ``ratio`` = delivered / qps (1.0: the limit delivers its rate); ``max_calls_in_1s``
   must stay <= ``allowed_in_1s`` (qps + burst); CPU of the taking processes per call and of the
   server per second.
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
from bench import common

if __name__ == "__main__":
    common.setup()

HAMMER = r"""
import json, resource, sys, threading, time
from acrvpc.cloud import shared_limit
from acrvpc.prefect_api import api_url
name, design, lease, threads, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
start_at = float(sys.argv[6])  # every process starts at once, after all have imported Prefect
if design == "old":  # the first design: prefect's rate_limit() on a burst-sized limit, 10 slots per call
    from prefect.concurrency.sync import rate_limit
    lim = shared_limit.SharedLimiter(name, burst=10, lease=lease, slots_per_call=10,
                                     acquire=lambda n, s: rate_limit(n, occupy=s, strict=True))
else:  # reservations on a queue-shaped limit
    url = api_url()
    row = shared_limit.read_limit(shared_limit.prefect_client(url), name)
    shape = shared_limit.LimitShape(row["limit"], row["slot_decay_per_second"])
    lim = shared_limit.SharedLimiter(name, burst=shape.burst_calls, lease=lease, slots_per_call=shape.slots_per_call,
                                     url=url)
lim.acquire()  # warm up (client, service thread)
stamps = []
time.sleep(max(0.0, start_at - time.time()))
start = time.time()
stop = start + seconds
cpu0 = resource.getrusage(resource.RUSAGE_SELF)
def run():
    while time.time() < stop:
        lim.acquire()
        stamps.append(time.time())
ts = [threading.Thread(target=run) for _ in range(threads)]
[t.start() for t in ts]; [t.join() for t in ts]
cpu1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
print(json.dumps({"stamps": stamps, "acquisitions": lim.acquisitions, "calls": lim.calls, "cpu_s": cpu}))
"""


def uncontended(name: str, occupy: int, samples: int, how: str = "rate_limit") -> dict:
    import resource

    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import rate_limit

    from acrvpc.cloud import shared_limit
    from acrvpc.prefect_api import api_url

    walls = []
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    with get_client(sync_client=True) as client:
        for _ in range(samples):
            t = time.perf_counter()
            if how == "bare":
                client.increment_concurrency_slots(names=[name], slots=occupy, mode="rate_limit")
            elif how == "reserve":
                shared_limit.reserve(shared_limit.prefect_client(api_url(max_age=60)), name, occupy)
            else:
                rate_limit(name, occupy=occupy, strict=True)
            walls.append((time.perf_counter() - t) * 1000)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) * 1000 / samples
    return {
        "median_ms": round(statistics.median(walls), 2),
        "p95_ms": round(common.percentile(walls, 95), 2),
        "client_cpu_ms": round(cpu, 2),
    }


def client_cost(samples: int = 20) -> dict:
    """CPU milliseconds to build and open a Prefect sync client, and to read the API URL afresh."""
    import resource

    from prefect.client.orchestration import SyncPrefectClient

    from acrvpc.prefect_api import api_url

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    url = api_url()
    c0 = cpu()
    for _ in range(samples):
        with SyncPrefectClient(url):
            pass
    c1 = cpu()
    for _ in range(samples):
        api_url()
    c2 = cpu()
    for _ in range(samples):
        api_url(max_age=60)
    c3 = cpu()
    return {
        "new_client_cpu_ms": round((c1 - c0) * 1000 / samples, 2),
        "api_url_fresh_cpu_ms": round((c2 - c1) * 1000 / samples, 2),
        "api_url_cached_cpu_ms": round((c3 - c2) * 1000 / samples, 3),
    }


def contended(server, name: str, qps: float, design: str, lease: int, procs: int, threads: int, seconds: float) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from acrvpc.cloud import shared_limit

    burst = int(qps / 2)
    limit, decay = (burst * 10, qps * 10) if design == "old" else shared_limit.limit_settings(qps, burst)
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=name, limit=limit, slot_decay_per_second=decay)
        )
    cpu0 = common.session_cpu_seconds(server.proc.pid)
    start_at = time.time() + 4.0 + 1.5 * procs  # after every process imported Prefect (1.5 s of CPU each)
    ps = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, name, design, str(lease), str(threads), str(seconds), str(start_at)],
            cwd=common.ROOT,
            env=server.env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(procs)
    ]
    outs = [json.loads(p.communicate(timeout=seconds + 240)[0].strip().splitlines()[-1]) for p in ps]
    server_cpu = common.session_cpu_seconds(server.proc.pid) - cpu0
    stamps = sorted(s for o in outs for s in o["stamps"])
    # the rate after the first burst, over the span between the first and the last grant
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
    return {
        "design": design,
        "lease": lease,
        "procs": procs,
        "threads": threads,
        "delivered_qps": round(delivered, 1),
        "ratio": round(delivered / qps, 2),
        "max_calls_in_1s": worst,
        "allowed_in_1s": int(qps + burst),
        "calls_per_acquisition": round(calls / max(acq, 1), 2),
        "client_cpu_ms_per_call": round(sum(o["cpu_s"] for o in outs) * 1000 / max(calls, 1), 2),
        "server_cpu_s_per_s": round(server_cpu / seconds, 2),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--qps", type=float, default=20.0)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--many", type=int, default=12, help="processes of one thread each (a fleet's flow runs)")
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
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name="bench-open", limit=10**6, slot_decay_per_second=10**6)
            )
        uncontended("bench-open", 1, 10)  # warm up
        rows = []
        for occupy in (1, 10):
            r = uncontended("bench-open", occupy, args.samples)
            rows.append({"acquisition": f"rate_limit(occupy={occupy}) (old)", **r})
        rows.append(
            {"acquisition": "bare POST increment (no event)", **uncontended("bench-open", 10, args.samples, how="bare")}
        )
        rows.append(
            {
                "acquisition": "reserve(): POST increment + GET (new)",
                **uncontended("bench-open", 100, args.samples, how="reserve"),
            }
        )
        figures["uncontended"] = rows
        figures["client"] = client_cost()
        common.say(f"uncontended acquisitions ({args.samples} each; load {os.getloadavg()[0]:.1f}):")
        common.say(common.table(rows))
        common.say(json.dumps(figures["client"]))
        crows = []
        shapes = [(args.procs, args.threads), (args.many, 1)]
        for i, (design, lease, (procs, threads)) in enumerate(
            (d, lease, shape) for shape in shapes for d in ("old", "new") for lease in (1, 5)
        ):
            if threads == 1 and lease == 5:
                continue  # one thread per process never waits alongside another
            crows.append(
                {
                    **contended(server, f"bench-c{i}", args.qps, design, lease, procs, threads, args.seconds),
                    "load_1m": round(os.getloadavg()[0], 1),
                }
            )
            common.say(json.dumps(crows[-1]))
        figures["contended"] = crows
        common.say(f"{args.seconds:g} s each, limit {args.qps:g}/s (load {os.getloadavg()[0]:.1f}):")
        common.say(common.table(crows))
    figures["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    common.emit(figures)
    return figures


if __name__ == "__main__":
    main()
