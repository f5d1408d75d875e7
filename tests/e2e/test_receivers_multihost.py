"""Two webhook receiver replicas on hosts of their own, no load balancer of ours: GitLab may be pointed at
either. The same delivery sent to both starts one flow run (the receivers create runs with Prefect's
idempotency key ``gitlab:<delivery key>``), and a replica SIGKILLed mid-burst loses no delivery it
answered: what it had queued in its SQLite spool is created by its drainer once it is restarted on
the same spool file.

Topology: tests/e2e/multihost.py (Prefect server on PostgreSQL in its own namespace); replica A on the
``receiver`` host, replica B on ``receiver-b``, each ``acrvpc webhook serve examples/sandbox.yaml
--spool FILE`` with a spool of its own, starting runs of ``build-on-push/webhook`` (prefect.yaml,
deployed by the topology). No worker is started: the runs stay Scheduled; the test counts runs.
"""

from __future__ import annotations

import collections
import copy
import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.e2e import netns
from tests.e2e.multihost import Cluster, prefect_hosts
from tests.e2e.prefect_server import free_port
from tests.e2e.test_webhook import SECRET, deliver
from tests.webhook_payloads import PUSH

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.multihost,
    pytest.mark.timeout(300),
    pytest.mark.skipif(netns.unavailable_reason() is not None, reason=str(netns.unavailable_reason())),
]

ON_PUSH = "build-on-push/webhook"  # examples/sandbox.yaml's webhook.deployment, deployed from prefect.yaml


@dataclass
class Replica:
    """One ``acrvpc webhook serve`` on a host of its own, with its own PREFECT_HOME and spool file."""

    cluster: Cluster
    host_name: str
    port: int
    proc: subprocess.Popen | None = None

    @property
    def host(self) -> netns.Host:
        return self.cluster.topo[self.host_name]

    @property
    def url(self) -> str:
        return f"http://{self.host.address}:{self.port}"

    @property
    def spool(self) -> Path:
        return self.cluster.root / self.host_name / "spool.sqlite3"

    @property
    def log(self) -> Path:
        return self.cluster.root / f"{self.host_name}.log"

    def env(self) -> dict[str, str]:
        home = self.cluster.root / self.host_name / "home"
        home.mkdir(parents=True, exist_ok=True)
        return self.cluster.env(home, ACRVPC_WEBHOOK_SECRET=SECRET)

    def start(self, timeout: float = 60) -> Replica:
        self.proc = self.host.spawn(
            [
                sys.executable,
                "-m",
                "acrvpc",
                "webhook",
                "serve",
                "examples/sandbox.yaml",
                "--host",
                self.host.address,
                "--port",
                str(self.port),
                "--spool",
                str(self.spool),
            ],
            env=self.env(),
            log=self.log,
            cwd=ROOT,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.host_name}: acrvpc webhook serve exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.host_name}: the receiver did not listen: {self.log.read_text()[-2000:]}")
            time.sleep(0.3)

    def deliveries(self) -> dict[str, dict]:
        """``acrvpc webhook deliveries --json`` on this replica's spool (on its host), by key."""
        done = self.host.run(
            [sys.executable, "-m", "acrvpc", "webhook", "deliveries", "--json", "--spool", str(self.spool)],
            env=self.env(),
            cwd=ROOT,
        )
        return {d["key"]: d for d in json.loads(done.stdout)}

    def cut_off_prefect(self) -> None:
        """The replica's host can no longer reach the Prefect server (GitLab still reaches the replica)."""
        netns.ip("-n", self.host.ns, "route", "add", "prohibit", f"{self.cluster.server.host}/32")

    def reach_prefect(self) -> None:
        netns.ip("-n", self.host.ns, "route", "del", "prohibit", f"{self.cluster.server.host}/32")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    started = time.monotonic()
    with prefect_hosts(tmp_path_factory.mktemp("receivers")) as cluster:
        print(f"multihost topology up in {time.monotonic() - started:.1f} s")
        yield cluster


@pytest.fixture(scope="module")
def replicas(cluster):
    a, b = Replica(cluster, "receiver", free_port()), Replica(cluster, "receiver-b", free_port())
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(Replica.start, (a, b)))
    return a, b


def runs_by_key(cluster: Cluster) -> dict[str, list[str]]:
    """The flow runs of the on-push deployment: idempotency key -> run ids."""
    found: dict[str, list[str]] = collections.defaultdict(list)
    with cluster.api() as client:
        dep = client.get(f"/deployments/name/{ON_PUSH}").raise_for_status().json()
        offset = 0
        while True:
            page = (
                client.post(
                    "/flow_runs/filter",
                    json={"deployments": {"id": {"any_": [dep["id"]]}}, "limit": 200, "offset": offset},
                )
                .raise_for_status()
                .json()
            )
            for run in page:
                found[run["idempotency_key"]].append(run["id"])
            if len(page) < 200:
                return found
            offset += 200


def push(n: int) -> dict:
    """GitLab's push payload for a commit of its own (routed: platform/billing-api main)."""
    body = copy.deepcopy(PUSH)
    sha = f"c0ffee{n:034x}"  # never 40 zeros (a deletion)
    body.update(after=sha, checkout_sha=sha)
    body["commits"][0]["id"] = sha
    return body


def wait_for(what: str, check, timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            assert found, f"{what}: not within {timeout} s"
            return found
        time.sleep(every)


def test_the_same_delivery_sent_to_both_replicas_starts_one_run(cluster, replicas):
    a, b = replicas
    key = str(uuid.uuid4())
    # When GitLab's delivery reaches both replicas at once (the same X-Gitlab-Event-UUID)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda r: deliver(r.url, push(1), delivery=key), (a, b)))
    assert [r.status_code for r in answers] == [202, 202], [r.text for r in answers]
    bodies = [r.json() for r in answers]
    assert {body["status"] for body in bodies} <= {"accepted", "queued"}, bodies
    # Then exactly one flow run exists for it, and both replicas name that run (a queued answer: its spool, later)
    runs = wait_for("the delivery's run", lambda: runs_by_key(cluster).get(f"gitlab:{key}"), timeout=30)
    assert len(runs) == 1, runs
    for replica, body in zip((a, b), bodies, strict=True):
        named = body.get("flow_run_id") or wait_for(
            f"{replica.host_name}'s drainer", lambda r=replica: r.deliveries().get(key, {}).get("run_id"), timeout=30
        )
        assert named == runs[0], (replica.host_name, body, runs)
    # and a resend to either replica names it again, starting nothing
    again = deliver(b.url, push(1), delivery=key)
    assert again.status_code == 202 and again.json()["flow_run_id"] == runs[0], again.text
    assert runs_by_key(cluster)[f"gitlab:{key}"] == runs


def test_a_replica_killed_mid_burst_loses_no_delivery_it_answered(cluster, replicas):
    a, b = replicas
    burst = 30
    keys = [str(uuid.uuid4()) for _ in range(burst)]
    answers: dict[str, tuple[str, dict]] = {}  # key -> (replica that answered 202, its answer)
    unanswered: list[int] = []
    try:
        # A burst of distinct deliveries, alternated between the replicas. Midway, B's host loses the Prefect
        # server (B answers "queued": the deliveries wait in its spool), then B is SIGKILLed.
        for n, key in enumerate(keys):
            if n == 6:
                b.cut_off_prefect()
            if n == 16:
                b.host.kill_all()
            replica = a if n % 2 == 0 else b
            try:
                answer = deliver(replica.url, push(n), delivery=key)
            except httpx.TransportError:  # never answered: GitLab retries it
                assert replica is b and n >= 16, (n, replica.host_name)
                unanswered.append(n)
                continue
            assert answer.status_code == 202, (n, replica.host_name, answer.text)
            answers[key] = (replica.host_name, answer.json())
        queued = [k for k, (host, body) in answers.items() if body["status"] == "queued"]
        assert queued and all(answers[k][0] == "receiver-b" for k in queued), answers
        assert all(answers[k][1]["status"] == "accepted" for k in keys[:6]), answers
        assert unanswered == list(range(17, burst, 2)), unanswered
        # What B answered "queued" is in its spool, pending, while B is down
        spooled = b.deliveries()
        assert {k: spooled[k]["state"] for k in queued} == {k: "pending" for k in queued}, spooled
    finally:
        b.reach_prefect()
    # GitLab resends what was never answered; pointed at either replica, it reaches the surviving one
    for n in unanswered:
        answer = deliver(a.url, push(n), delivery=keys[n])
        assert answer.status_code == 202 and answer.json()["status"] == "accepted", answer.text
        answers[keys[n]] = ("receiver", answer.json())
    assert set(answers) == set(keys)
    # When B is restarted on the same spool file, its drainer creates the runs of what it had queued
    b.start()
    b_keys = [k for k, (host, _) in answers.items() if host == "receiver-b"]
    spooled = wait_for(
        "B's queued deliveries created",
        lambda: (d := b.deliveries()) and all(d[k]["state"] == "done" for k in b_keys) and d,
        timeout=60,
    )
    # Then every delivery answered 202 has exactly one flow run, the one its answer or spool names
    runs = runs_by_key(cluster)
    for key, (host, body) in answers.items():
        assert len(runs.get(f"gitlab:{key}", [])) == 1, (key, host, body, runs.get(f"gitlab:{key}"))
        run_id = runs[f"gitlab:{key}"][0]
        assert body.get("flow_run_id", spooled.get(key, {}).get("run_id")) == run_id, (key, host, body)
        if host == "receiver-b":
            assert spooled[key]["run_id"] == run_id, spooled[key]
    assert sum(len(runs.get(f"gitlab:{k}", [])) for k in keys) == burst
    print(
        f"burst of {burst}: {len(queued)} queued by B before its SIGKILL, {len(unanswered)} unanswered and "
        f"resent to A; one run each"
    )
