"""A Prefect deployment across hosts of their own (network namespaces, tests/e2e/netns.py).

:func:`prefect_hosts` builds this topology and tears all of it down on the way out::

    control (root namespace, 10.213.X.1): the test process, the sandbox (Alibaba Cloud + GitLab stand-in)
    server   (.2): PostgreSQL on the host's loopback, `prefect server start` on the host's address
    worker-a (.3), worker-b (.4): process workers, started by the test (:meth:`Cluster.start_worker`)
    receiver (.5): for the webhook receiver
    storage  (.6): moto's S3-compatible server, the bucket for shared results

Every worker has its own PREFECT_HOME and working directory, and persists results in the bucket
through the ``S3Bucket`` block that ``python -m acrvpc.results`` saves (its secret on stdin), named by
``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK`` in the worker's environment, as docs/scaling.md says.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from acrvpc.sandbox import SandboxServer
from tests.conftest import ROOT
from tests.e2e import netns
from tests.e2e.prefect_server import PREFECT, PostgresCluster, PrefectServer, free_port, postgres_bindir

POOL = "acr-vpc-build"
HOSTS = ("server", "worker-a", "worker-b", "receiver", "storage")
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

    def start_worker(self, host_name: str, *, shared_results: bool = True) -> subprocess.Popen:
        """A process worker named after its host, with its own PREFECT_HOME and working directory."""
        home = self.root / host_name / "home"
        cwd = self.root / host_name / "cwd"
        home.mkdir(parents=True, exist_ok=True)
        cwd.mkdir(parents=True, exist_ok=True)
        self.workers[host_name] = home
        extra = {"ACRVPC_SANDBOX_URL": self.sandbox.url, "PREFECT_WORKER_QUERY_SECONDS": "1",
                 "PREFECT_WORKER_PREFETCH_SECONDS": "1"}
        if shared_results:
            extra["PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"] = self.storage_block
        host = self.topo[host_name]
        return host.spawn([*PREFECT, "worker", "start", "--pool", POOL, "--name", host_name],
                          env=self.env(home, **extra), log=self.worker_log(host_name), cwd=cwd)

    def worker_log(self, host_name: str) -> Path:
        return self.root / f"{host_name}.log"

    def s3_client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.s3_url, aws_access_key_id=S3_KEY_ID,
                            aws_secret_access_key=self.s3_secret, region_name="us-east-1",
                            config=Config(proxies={}, retries={"max_attempts": 2}))

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
                raise RuntimeError(f"{what} not answering at {url} after {timeout} s: "
                                   f"{log.read_text()[-2000:] if log.exists() else ''}") from None
            time.sleep(0.2)


@contextmanager
def prefect_hosts(root: Path, time_scale: float = 20.0) -> Iterator[Cluster]:
    """The whole topology, running; everything it started is stopped and every namespace removed after."""
    bindir = postgres_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL binaries not found (/usr/lib/postgresql/*/bin/initdb): apt-get install -y "
                           "postgresql (.ci/run does)")
    with ExitStack() as stack:
        topo = stack.enter_context(netns.topology(*HOSTS))
        server_host, storage = topo["server"], topo["storage"]
        # S3-compatible storage on its host (moto accepts any key; the secret still only travels in the block)
        s3_url = f"http://{storage.address}:{S3_PORT}"
        s3_log = root / "s3.log"
        storage.spawn([sys.executable, "-m", "moto.server", "-H", storage.address, "-p", str(S3_PORT)],
                      env=topo.env({"PATH": "/usr/bin:/bin", "HOME": str(root)}), log=s3_log, cwd=root)
        # PostgreSQL on the server host's loopback; the Prefect server on the host's address
        pg = PostgresCluster(bindir, launcher=server_host.launcher)
        pg.start()
        stack.callback(pg.stop)
        home = root / "server-home"
        home.mkdir()
        server = PrefectServer(home=home, port=free_port(), log=root / "server.log", database_url=pg.url,
                               auth_string=f"acrvpc-e2e:{secrets.token_urlsafe(18)}",
                               server_env={"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2"},
                               host=server_host.address, launcher=server_host.launcher)
        stack.callback(server.stop)
        server.start()
        sandbox = stack.enter_context(SandboxServer(host=topo.control_address))
        sandbox.world.clock.set_scale(time_scale)
        _wait_http(s3_url + "/", "moto S3 server", s3_log)
        cluster = Cluster(topo=topo, server=server, sandbox=sandbox, s3_url=s3_url,
                          s3_secret=secrets.token_urlsafe(24), storage_block="", root=root)
        cluster.s3_client().create_bucket(Bucket=BUCKET)
        operator_env = cluster.env(home)
        for args in ([*PREFECT, "work-pool", "create", POOL, "--type", "process"],
                     [*PREFECT, "--no-prompt", "deploy", "--all"]):
            done = subprocess.run(args, cwd=ROOT, env=operator_env, capture_output=True, text=True, timeout=180)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(args[2:])} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        saved = subprocess.run(
            [sys.executable, "-m", "acrvpc.results", "--endpoint-url", s3_url, "--bucket", BUCKET,
             "--access-key-id", S3_KEY_ID, "--folder", FOLDER, "--block-name", "acrvpc-e2e-results"],
            cwd=ROOT, env=operator_env, input=cluster.s3_secret + "\n", capture_output=True, text=True, timeout=120)
        if saved.returncode != 0:
            raise RuntimeError(f"python -m acrvpc.results failed: {saved.stdout}{saved.stderr}")
        setting = saved.stdout.strip().splitlines()[-1]
        assert setting.startswith("PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK="), saved.stdout
        cluster.storage_block = setting.split("=", 1)[1]
        yield cluster
