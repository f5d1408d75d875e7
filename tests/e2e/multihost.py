"""A Prefect deployment across hosts of their own (network namespaces, tests/e2e/netns.py).

:func:`prefect_hosts` builds this topology and tears all of it down on the way out::

    control (root namespace, 10.213.X.1): the test process, the sandbox (Alibaba Cloud + GitLab stand-in)
    server   (.2): PostgreSQL on the host's loopback, `prefect server start` on the host's address
    worker-a (.3), worker-b (.4): process workers, started by the test (:meth:`Cluster.start_worker`)
    receiver (.5): for the webhook receiver
    storage  (.6): moto's S3-compatible server, the bucket for shared results
    receiver-b (.7): a second webhook receiver replica (tests/e2e/test_receivers_multihost.py)

Crash failover (:meth:`Cluster.install_failover`, ``acrvpc automations --failover``): workers started
with ``heartbeat=`` emit flow-run heartbeats; :func:`resources` and :func:`duplicates` read what
the sandbox holds, for the "no duplicate, no orphan" checks of tests/e2e/test_failover.py,
tests/e2e/test_soak_multihost.py and bench/failover.py.

Every worker has its own PREFECT_HOME and working directory, and persists results in the bucket
through the ``S3Bucket`` block that ``python -m acrvpc.results`` saves (its secret on stdin), named by
``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK`` in the worker's environment, as docs/scaling.md says.
"""

from __future__ import annotations

import collections
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from acrvpc.sandbox import SandboxServer
from tests.conftest import ROOT
from tests.e2e import netns
from tests.e2e.prefect_server import PREFECT, PostgresCluster, PrefectServer, free_port, postgres_bindir

POOL = "acr-vpc-build"
HOSTS = ("server", "worker-a", "worker-b", "receiver", "storage", "receiver-b")
S3_PORT = 9000
BUCKET = "acrvpc-results"
FOLDER = "results"
S3_KEY_ID = "acrvpc-e2e"


@dataclass
class Cluster:
    topo: netns.Topology
    server: PrefectServer
    sandbox: SandboxServer
    s3_url: str
    s3_secret: str
    storage_block: str  # s3-bucket/<name>
    root: Path
    workers: dict[str, Path] = field(default_factory=dict)  # host name -> its PREFECT_HOME

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        """A process's environment on a host: the server's API and auth, its own PREFECT_HOME."""
        return self.topo.env(self.server.env(PREFECT_HOME=str(home), **extra))

    def start_worker(
        self,
        host_name: str,
        *,
        shared_results: bool = True,
        heartbeat: int | None = None,
        limit: int | None = None,
        **env: str,
    ) -> subprocess.Popen:
        """A process worker named after its host, with its own PREFECT_HOME and working directory.

        ``heartbeat``: its flow runs emit a heartbeat event every so many seconds
        (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``, Prefect's minimum is 30); ``limit``: at most that
        many flow runs at once (``prefect worker start --limit``).
        """
        home = self.root / host_name / "home"
        cwd = self.root / host_name / "cwd"
        home.mkdir(parents=True, exist_ok=True)
        cwd.mkdir(parents=True, exist_ok=True)
        self.workers[host_name] = home
        extra = {
            "ACRVPC_SANDBOX_URL": self.sandbox.url,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        }
        if shared_results:
            extra["PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"] = self.storage_block
        if heartbeat is not None:
            extra["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(heartbeat)
        extra.update(env)
        host = self.topo[host_name]
        return host.spawn(
            [
                *PREFECT,
                "worker",
                "start",
                "--pool",
                POOL,
                "--name",
                host_name,
                *(["--limit", str(limit)] if limit else []),
            ],
            env=self.env(home, **extra),
            log=self.worker_log(host_name),
            cwd=cwd,
        )

    def operator_env(self) -> dict[str, str]:
        return self.env(self.server.home)

    def install_failover(self, after_seconds: float) -> str:
        """``acrvpc automations examples/sandbox.yaml --failover --failover-after S`` against the server."""
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "acrvpc",
                "automations",
                "examples/sandbox.yaml",
                "--failover",
                "--failover-after",
                str(after_seconds),
            ],
            cwd=ROOT,
            env=self.operator_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"acrvpc automations --failover failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        return done.stdout

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.api_url, timeout=30, auth=self.server.auth)

    def states(self, run_id: str) -> list[dict[str, Any]]:
        """The flow run's state history, oldest first."""
        with self.api() as client:
            states = client.get("/flow_run_states/", params={"flow_run_id": run_id}).raise_for_status().json()
        return sorted(states, key=lambda s: s["timestamp"])

    def worker_hosts(self, run_id: str) -> list[str]:
        """Names of the workers that submitted the flow run (their prefect.worker.submitted-flow-run events)."""
        body = {
            "filter": {
                "any_resource": {"id": [f"prefect.flow-run.{run_id}"]},
                "event": {"name": ["prefect.worker.submitted-flow-run"]},
            },
            "limit": 50,
        }
        with self.api() as client:
            events = client.post("/events/filter", json=body).raise_for_status().json()["events"]
        return sorted(e["resource"].get("prefect.resource.name", "") for e in events)

    def worker_log(self, host_name: str) -> Path:
        return self.root / f"{host_name}.log"

    def s3_client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=self.s3_secret,
            region_name="us-east-1",
            config=Config(proxies={}, retries={"max_attempts": 2}),
        )

    def s3_keys(self) -> list[str]:
        answer = self.s3_client().list_objects_v2(Bucket=BUCKET, Prefix=FOLDER + "/")
        return [o["Key"] for o in answer.get("Contents", [])]


def _wait_http(url: str, what: str, log: Path, timeout: float = 60) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while True:
        try:
            opener.open(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{what} not answering at {url} after {timeout} s: "
                    f"{log.read_text()[-2000:] if log.exists() else ''}"
                ) from None
            time.sleep(0.2)


@contextmanager
def prefect_hosts(root: Path, time_scale: float = 20.0, server_env: dict[str, str] | None = None) -> Iterator[Cluster]:
    """The whole topology, running; everything it started is stopped and every namespace removed after.

    ``server_env``: more settings of the Prefect server process (e.g. the proactive triggers' period,
    ``PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY``).
    """
    bindir = postgres_bindir()
    if bindir is None:
        raise RuntimeError(
            "PostgreSQL binaries not found (/usr/lib/postgresql/*/bin/initdb): apt-get install -y "
            "postgresql (.ci/run does)"
        )
    with ExitStack() as stack:
        topo = stack.enter_context(netns.topology(*HOSTS))
        server_host, storage = topo["server"], topo["storage"]
        # S3-compatible storage on its host (moto accepts any key; the secret still only travels in the block)
        s3_url = f"http://{storage.address}:{S3_PORT}"
        s3_log = root / "s3.log"
        storage.spawn(
            [sys.executable, "-m", "moto.server", "-H", storage.address, "-p", str(S3_PORT)],
            env=topo.env({"PATH": "/usr/bin:/bin", "HOME": str(root)}),
            log=s3_log,
            cwd=root,
        )
        # PostgreSQL on the server host's loopback; the Prefect server on the host's address
        pg = PostgresCluster(bindir, launcher=server_host.launcher)
        pg.start()
        stack.callback(pg.stop)
        home = root / "server-home"
        home.mkdir()
        server = PrefectServer(
            home=home,
            port=free_port(),
            log=root / "server.log",
            database_url=pg.url,
            auth_string=f"acrvpc-e2e:{secrets.token_urlsafe(18)}",
            server_env={"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2", **(server_env or {})},
            host=server_host.address,
            launcher=server_host.launcher,
        )
        stack.callback(server.stop)
        server.start()
        sandbox = stack.enter_context(SandboxServer(host=topo.control_address))
        sandbox.world.clock.set_scale(time_scale)
        _wait_http(s3_url + "/", "moto S3 server", s3_log)
        cluster = Cluster(
            topo=topo,
            server=server,
            sandbox=sandbox,
            s3_url=s3_url,
            s3_secret=secrets.token_urlsafe(24),
            storage_block="",
            root=root,
        )
        cluster.s3_client().create_bucket(Bucket=BUCKET)
        operator_env = cluster.env(home)
        for args in (
            [*PREFECT, "work-pool", "create", POOL, "--type", "process"],
            [*PREFECT, "--no-prompt", "deploy", "--all"],
        ):
            done = subprocess.run(args, cwd=ROOT, env=operator_env, capture_output=True, text=True, timeout=180)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(args[2:])} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        saved = subprocess.run(
            [
                sys.executable,
                "-m",
                "acrvpc.results",
                "--endpoint-url",
                s3_url,
                "--bucket",
                BUCKET,
                "--access-key-id",
                S3_KEY_ID,
                "--folder",
                FOLDER,
                "--block-name",
                "acrvpc-e2e-results",
            ],
            cwd=ROOT,
            env=operator_env,
            input=cluster.s3_secret + "\n",
            capture_output=True,
            text=True,
            timeout=120,
        )
        if saved.returncode != 0:
            raise RuntimeError(f"python -m acrvpc.results failed: {saved.stdout}{saved.stderr}")
        setting = saved.stdout.strip().splitlines()[-1]
        assert setting.startswith("PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK="), saved.stdout
        cluster.storage_block = setting.split("=", 1)[1]
        yield cluster


def resources(world) -> dict[str, Any]:
    """What the sandbox holds now: security groups and ENIs by id -> link tag, repositories' rules and builds."""
    with world.lock:
        repos = {
            r.full_name: {
                "rules": collections.Counter((rule.push_name, rule.image_tag) for rule in r.rules.values()),
                "source": r.source is not None,
            }
            for r in world.cr.repos.values()
        }
        builds = collections.Counter(f"{rec.namespace}/{rec.name}" for rec in world.cr.records.values())
        return {
            "security_groups": {k: g.tags.get(TAG_KEY) for k, g in world.ecs.groups.items()},
            "network_interfaces": {k: e.tags.get(TAG_KEY) for k, e in world.ecs.enis.items()},
            "repositories": repos,
            "builds": dict(builds),
        }


TAG_KEY = "acr-vpc-build:link"


def duplicates(
    before: dict[str, Any], after: dict[str, Any], links: set[str], repos: dict[str, int]
) -> tuple[list[str], list[str]]:
    """(duplicates, orphans) between two :func:`resources` snapshots.

    Args:
        links: the links the runs converged: each must have exactly one new security group and ENI.
        repos: repository full name -> how many builds the runs should have started of it.

    Duplicates: a link with more than one new group or ENI, a repository with a build rule twice, or
    more builds started than wanted. Orphans: a new group or ENI of no wanted link, a wanted link
    without its group or ENI, a repository without its source binding.
    """
    dup: list[str] = []
    orphans: list[str] = []
    for kind in ("security_groups", "network_interfaces"):
        new = {k: v for k, v in after[kind].items() if k not in before[kind]}
        count = collections.Counter(new.values())
        dup += [f"{kind} of {link}: {n}" for link, n in count.items() if link in links and n > 1]
        orphans += [f"{kind} {k} (link {v})" for k, v in new.items() if v not in links]
        orphans += [f"no {kind} for {link}" for link in links if count.get(link, 0) == 0]
    for name, wanted in repos.items():
        repo = after["repositories"].get(name)
        if repo is None or not repo["source"]:
            orphans.append(f"repository {name} missing or without its source binding")
            continue
        dup += [f"build rule {rule} of {name}: {n}" for rule, n in repo["rules"].items() if n > 1]
        started = after["builds"].get(name, 0) - before["builds"].get(name, 0)
        if started > wanted:
            dup.append(f"builds of {name}: {started} started, {wanted} wanted")
        elif started < wanted:
            orphans.append(f"builds of {name}: {started} started, {wanted} wanted")
    return dup, orphans


def soak_spec_parameters(count: int, folder: Path) -> list[dict[str, Any]]:
    """``count`` specs of their own (tests/e2e/soak.py's soak-NN, one repository and build each) as ``spec`` parameters."""
    from acrvpc.domain.spec import load_spec
    from tests.e2e.soak import specs

    return [load_spec(path).model_dump(mode="json") for path in specs(count, folder)]


def start_spec_run(cluster: Cluster, spec: dict[str, Any], deployment: str = "vpc-build/nightly") -> str:
    """A run of ``deployment`` converging ``spec`` (given as the flow's ``spec`` parameter)."""
    with cluster.api() as client:
        dep = client.get(f"/deployments/name/{deployment}").raise_for_status().json()
        run = (
            client.post(
                f"/deployments/{dep['id']}/create_flow_run", json={"parameters": {"spec": spec, "spec_path": None}}
            )
            .raise_for_status()
            .json()
        )
    return run["id"]


def _timestamp(state: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(state["timestamp"].replace("Z", "+00:00")).timestamp()


FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def failover_soak(
    cluster: Cluster,
    *,
    runs: int,
    kill_after: float,
    fault_rate: float = 0.2,
    seed: int = 7,
    heartbeat: int = 30,
    failover_after: float = 60,
    limit: int = 4,
    timeout: float = 600,
    say=print,
) -> dict[str, Any]:
    """``runs`` deployed runs (specs soak-NN) on worker-a and worker-b, transient sandbox faults at
    ``fault_rate``, worker-a's host killed ``kill_after`` s after the runs were created; waits for every
    run to end. Returns the figures: runs, completed, duplicates, orphans, the runs host A held when it
    died (``failed_over``) and, for each, the seconds from the kill to its next Running."""
    world = cluster.sandbox.world
    world.reset()
    world.clock.set_scale(50.0)
    before = resources(world)
    cluster.install_failover(failover_after)
    env = {"ACRVPC_RETRY_DELAYS": "0.2,0.4,0.8,1.6,3.2,3.2,3.2", "PREFECT_LOGGING_LEVEL": "INFO"}
    for host in ("worker-a", "worker-b"):
        cluster.start_worker(host, heartbeat=heartbeat, limit=limit, **env)
    specs = soak_spec_parameters(runs, cluster.root)
    world.faults.update({"error_rate": fault_rate * 0.75, "drop_rate": fault_rate * 0.25, "seed": seed})
    started = time.monotonic()
    ids = [start_spec_run(cluster, spec) for spec in specs]
    time.sleep(max(0.0, kill_after - (time.monotonic() - started)))
    killed_at, kill_s = time.time(), time.monotonic() - started
    cluster.topo["worker-a"].kill_all()
    a_log = cluster.worker_log("worker-a").read_text(errors="replace")
    with cluster.api() as client:
        held = [
            i
            for i in ids
            if f"submitting flow run '{i}'" in a_log
            and client.get(f"/flow_runs/{i}").raise_for_status().json()["state"]["type"] not in FINAL
        ]
    say(f"worker-a killed {kill_s:.1f} s after the runs were created, holding {len(held)} unfinished run(s)")
    deadline = time.monotonic() + timeout
    with cluster.api() as client:
        while True:
            answer = client.post("/flow_runs/filter", json={"flow_runs": {"id": {"any_": ids}}}).raise_for_status()
            final = {r["id"]: r["state"] for r in answer.json() if r["state"]["type"] in FINAL}
            if len(final) == len(ids) or time.monotonic() > deadline:
                break
            time.sleep(2)
    seconds = round(time.monotonic() - started, 1)
    world.faults.update({"error_rate": 0.0, "drop_rate": 0.0})
    kill_to_running = {}
    for run_id in held:
        again = [s for s in cluster.states(run_id) if s["type"] == "RUNNING" and _timestamp(s) > killed_at]
        if again:
            kill_to_running[run_id] = round(_timestamp(again[0]) - killed_at, 1)
    links = {s["name"] for s in specs}
    repos = {f"{s['repositories'][0]['namespace']}/{s['repositories'][0]['name']}": 1 for s in specs}
    dup, orphans = duplicates(before, resources(world), links, repos)
    faults = [c for c in world.calls.list() if c["code"] in ("ServiceUnavailable", "InternalError", "Dropped")]
    return {
        "runs": len(ids),
        "completed": sum(1 for s in final.values() if s["type"] == "COMPLETED"),
        "not_completed": {
            i: (s["type"], (s.get("message") or "")[:200]) for i, s in final.items() if s["type"] != "COMPLETED"
        },
        "unfinished": [i for i in ids if i not in final],
        "duplicates": dup,
        "orphans": orphans,
        "killed_after_s": round(kill_s, 1),
        "failed_over": held,
        "kill_to_running_s": kill_to_running,
        "seconds": seconds,
        "faults_injected": len(faults),
        "calls": len(world.calls.list()),
    }
