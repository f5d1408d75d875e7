"""A burst of GitLab deliveries: 200 distinct pushes sent within one second by 20 concurrent clients.

    python bench/webhook_burst.py            # 200 deliveries, 20 clients, then all 200 resent
    python bench/webhook_burst.py --quick    # the same burst and resend, without the capacity probe

Setup: a real ``prefect server`` on a throwaway PostgreSQL cluster with prefect.yaml deployed, and
``acrvpc webhook serve examples/sandbox.yaml --rate-limit 1000/second``. The receiver's default
per-source limit (``webhook.rate_limit``, 60/minute) would answer most of a burst from one address
429, as intended against a flood; GitLab sends every hook from its own address(es), so a busy
GitLab needs the limit raised like this. No worker runs: the runs are created and stay Scheduled,
so the figures are the receiver's and the Prefect API's, not the builds'.

Each delivery is GitLab's documented push payload (routed: ``platform/billing-api`` ``main``) with
its own ``X-Gitlab-Event-UUID``. Send times are spread evenly over one second; each of the 20
clients (one ``httpx.AsyncClient`` each) sends every 20th delivery at its time without waiting
for earlier answers, as GitLab's concurrent Sidekiq jobs do. The timeout is GitLab's, 10 s.
Then the same 200 deliveries are sent again (same delivery ids, as GitLab's "Resend request").

Figures: answers 202 within 10 s, max and p95 answer latency, flow runs created (must be 200),
duplicates after the resend (flow runs sharing a delivery's idempotency key, must be 0), resends
that returned another run id (must be 0).
Then a capacity probe (``--probe-runs``, default 100) creates runs directly on the server, 10 in
flight, once with one shared API client and the deployment id known (one request per run) and
once as the receiver does it (a client per run, reading the deployment by name first): how many
runs per second this Prefect server can create here, whatever the receiver does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a fresh clone
from bench import common  # first, before Prefect is imported

if __name__ == "__main__":  # only when run: setup() changes os.environ (a fresh PREFECT_HOME, no inherited API URL)
    common.setup()

GITLAB_TIMEOUT_S = 10.0
DEPLOYMENT = "build-on-push/webhook"


async def _burst(url: str, deliveries: list[str], clients: int, spread_s: float) -> list[dict]:
    import httpx

    from tests.webhook_payloads import PUSH

    body = json.dumps(PUSH)
    pool = [
        httpx.AsyncClient(timeout=GITLAB_TIMEOUT_S, limits=httpx.Limits(max_connections=len(deliveries)))
        for _ in range(clients)
    ]
    t0 = time.perf_counter() + 0.2
    results: list[dict] = [{} for _ in deliveries]

    async def send(i: int, delivery: str) -> None:
        await asyncio.sleep(max(0.0, t0 + spread_s * i / len(deliveries) - time.perf_counter()))
        sent = time.perf_counter()
        try:
            answer = await pool[i % clients].post(
                f"{url}/hooks/gitlab", content=body, headers=common.push_headers(delivery)
            )
            status, run_id = (
                answer.status_code,
                (answer.json().get("flow_run_id") if answer.status_code == 202 else None),
            )
        except httpx.HTTPError as exc:
            status, run_id = type(exc).__name__, None
        results[i] = {"sent": sent - t0, "latency": time.perf_counter() - sent, "status": status, "run": run_id}

    try:
        await asyncio.gather(*(send(i, d) for i, d in enumerate(deliveries)))
    finally:
        await asyncio.gather(*(c.aclose() for c in pool))
    return results


def _summary(results: list[dict]) -> dict:
    latencies = [r["latency"] for r in results]
    return {
        "sent_within_s": round(max(r["sent"] for r in results) - min(r["sent"] for r in results), 3),
        "accepted_within_10s": sum(1 for r in results if r["status"] == 202 and r["latency"] <= GITLAB_TIMEOUT_S),
        "max_latency_s": round(max(latencies), 3),
        "p95_latency_s": round(common.percentile(latencies, 95), 3),
        "p50_latency_s": round(common.percentile(latencies, 50), 3),
        "statuses": {str(k): sum(1 for r in results if r["status"] == k) for k in {r["status"] for r in results}},
    }


async def _probe(deployment_id: str, runs: int, in_flight: int, shared: bool) -> float:
    """Seconds for the Prefect server to create ``runs`` flow runs, ``in_flight`` at a time.

    ``shared``: one API client and the deployment id known (one request per run); else, as the
    receiver does today, a client per run that reads the deployment by name first.
    """
    from prefect import get_client

    gate = asyncio.Semaphore(in_flight)
    params = {"project": "platform/billing-api", "ref": "refs/heads/main", "sha": "0" * 40, "event_id": "probe"}

    async def create(client) -> None:
        dep = deployment_id if shared else (await client.read_deployment_by_name(DEPLOYMENT)).id
        await client.create_flow_run_from_deployment(dep, parameters=params, idempotency_key=str(uuid.uuid4()))

    async def one(client) -> None:
        async with gate:
            if client is not None:
                await create(client)
            else:
                async with get_client() as own:
                    await create(own)

    t0 = time.perf_counter()
    if shared:
        async with get_client() as client:
            await asyncio.gather(*(one(client) for _ in range(runs)))
    else:
        await asyncio.gather(*(one(None) for _ in range(runs)))
    return time.perf_counter() - t0


def _runs_by_key(api_url: str, deployment_id: str, keys: set[str]) -> Counter:
    """How many flow runs of the deployment carry each of ``keys`` as their idempotency key."""
    import httpx

    found: Counter = Counter()
    offset = 0
    while True:
        page = httpx.post(
            f"{api_url}/flow_runs/filter",
            timeout=60,
            json={"deployments": {"id": {"any_": [deployment_id]}}, "limit": 200, "offset": offset},
        )
        page.raise_for_status()
        runs = page.json()
        found.update(r["idempotency_key"] for r in runs if r.get("idempotency_key") in keys)
        if len(runs) < 200:
            return found
        offset += 200


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the same burst and resend, no capacity probe")
    parser.add_argument("--deliveries", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--spread-seconds", type=float, default=1.0, help="send times spread over this long")
    parser.add_argument(
        "--probe-runs",
        type=int,
        default=None,
        help="afterwards, flow runs created directly to measure the server's rate (default 100, 0 with --quick: skip)",
    )
    args = parser.parse_args(argv)
    if args.probe_runs is None:
        args.probe_runs = 0 if args.quick else 100

    import httpx

    figures: dict = {
        "benchmark": "webhook_burst",
        "deliveries": args.deliveries,
        "clients": args.clients,
        "machine": common.machine(),
    }
    t_setup = time.perf_counter()
    with common.prefect_server(deploy=True) as server:
        figures["prefect_database"] = server.database
        receiver, _ = common.start_receiver(server, rate_limit="1000/second")
        deployment_id = httpx.get(f"{server.api_url}/deployments/name/{DEPLOYMENT}", timeout=30).json()["id"]
        common.say(f"setup (PostgreSQL, server, deploy, receiver) {time.perf_counter() - t_setup:.1f} s")
        deliveries = [str(uuid.uuid4()) for _ in range(args.deliveries)]
        keys = {f"gitlab:{d}" for d in deliveries}
        t_first = time.perf_counter()
        first = asyncio.run(_burst(receiver, deliveries, args.clients, args.spread_seconds))
        answered_runs = len(_runs_by_key(server.api_url, deployment_id, keys))
        # deliveries answered "queued" get their run from the receiver's spool drainer: wait for all of them
        deadline = time.monotonic() + 180
        created = answered_runs
        while created < args.deliveries and time.monotonic() < deadline:
            time.sleep(0.5)
            created = len(_runs_by_key(server.api_url, deployment_id, keys))
        all_runs_s = time.perf_counter() - t_first
        again = asyncio.run(_burst(receiver, deliveries, args.clients, args.spread_seconds))
        time.sleep(2.0)  # anything a resend would (wrongly) create has time to land
        by_key = _runs_by_key(server.api_url, deployment_id, keys)
        duplicates = sum(n - 1 for n in by_key.values())
        after_resend = len(by_key)
        probe = {}
        if args.probe_runs:
            for shared in (True, False):
                seconds = asyncio.run(_probe(deployment_id, args.probe_runs, 10, shared))
                probe["shared_client" if shared else "client_per_run"] = {
                    "runs": args.probe_runs,
                    "in_flight": 10,
                    "seconds": round(seconds, 3),
                    "runs_per_s": round(args.probe_runs / seconds, 2),
                }
    other_run = sum(1 for a, b in zip(first, again, strict=False) if a["run"] and b["run"] and a["run"] != b["run"])
    distinct_runs = len({r["run"] for r in first if r["run"]})
    figures.update(
        server_create_rate=probe,
        first=_summary(first),
        resend=_summary(again),
        flow_runs_created=created,
        runs_when_the_answers_were_in=answered_runs,
        seconds_until_every_run=round(all_runs_s, 2),
        deliveries_with_a_run_after_resend=after_resend,
        distinct_run_ids=distinct_runs,
        duplicates_after_resend=duplicates,
        resends_with_another_run=other_run,
    )
    figures.update(
        answers_within_10s=figures["first"]["accepted_within_10s"],
        max_answer_latency_s=figures["first"]["max_latency_s"],
        target_met=(
            created == args.deliveries
            and duplicates == 0
            and other_run == 0
            and figures["first"]["accepted_within_10s"] == args.deliveries
            and figures["resend"]["accepted_within_10s"] == args.deliveries
        ),
    )
    rows = [
        {
            "pass": name,
            "sent within s": s["sent_within_s"],
            "202 within 10 s": s["accepted_within_10s"],
            "p50 s": s["p50_latency_s"],
            "p95 s": s["p95_latency_s"],
            "max s": s["max_latency_s"],
            "answers": ", ".join(f"{k}: {v}" for k, v in sorted(s["statuses"].items())),
        }
        for name, s in (("first", figures["first"]), ("resend", figures["resend"]))
    ]
    common.say("")
    common.say(
        f"webhook burst: {args.deliveries} deliveries, {args.clients} clients, receiver -> Prefect server "
        f"on {figures['prefect_database']}"
    )
    common.say(common.table(rows))
    common.say(
        f"flow runs: {answered_runs} when the last answer was in, {created} after "
        f"{figures['seconds_until_every_run']:.1f} s (the spool drained; must be {args.deliveries}); after the resend "
        f"{after_resend} deliveries have a run, duplicates (runs sharing a delivery id) {duplicates} "
        f"(must be 0), resends answered with another run {other_run}: "
        f"{'met' if figures['target_met'] else 'MISSED'}"
    )
    for name, p in probe.items():
        common.say(
            f"server capacity ({name.replace('_', ' ')}, {p['in_flight']} in flight): {p['runs']} runs "
            f"in {p['seconds']:.1f} s = {p['runs_per_s']:.1f} runs/s, so {args.deliveries} deliveries "
            f"need {args.deliveries / p['runs_per_s']:.1f} s"
        )
    common.emit(figures)
    return figures


if __name__ == "__main__":
    main()
