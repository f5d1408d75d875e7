"""A real ``prefect server start`` on PostgreSQL and a process worker on loopback, for end-to-end tests.

Started once per session by the ``postgres``, ``prefect_server`` and ``process_worker`` fixtures in
tests/e2e/conftest.py; the deployments come from the repository's prefect.yaml through
``prefect --no-prompt deploy --all``, exactly as the README says to deploy.

A server may require an auth string (``PrefectServer(auth_string="user:password")``: the server gets
``PREFECT_SERVER_API_AUTH_STRING``, every child process ``PREFECT_API_AUTH_STRING``; only
``GET /api/health`` stays open, which is what :meth:`PrefectServer.start` polls).

The database is a throwaway PostgreSQL cluster from Debian's packages (``.ci/run`` installs
them), as production runs the server (prefect-notes §7, §9): ``initdb`` into a temporary
directory (as the ``postgres`` user when the tests run as root: PostgreSQL refuses to run as
root), ``pg_ctl start`` on a free loopback port with its socket in that directory, then a
``prefect`` role owning a ``prefect`` database. Without the binaries, :func:`postgres_bindir`
returns None and the server falls back to SQLite (the fixtures say so loudly).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from tests.conftest import ROOT

T = TypeVar("T")

# Every Prefect or acrvpc command a test starts runs from this interpreter's environment (the project's
# venv), never from whatever ``prefect`` happens to be on the caller's PATH (tests/unit/test_no_bare_commands.py).
PREFECT = (sys.executable, "-m", "prefect")
VENV_BIN = str(Path(sys.executable).parent)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ACRVPC_"))}
    # The venv's bin first: a process worker or a flow run that starts a console script finds the project's own.
    env["PATH"] = os.pathsep.join(
        [VENV_BIN, *(p for p in env.get("PATH", "").split(os.pathsep) if p and p != VENV_BIN)]
    )
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return env


def postgres_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb, or None when PostgreSQL is not installed."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    found.sort(key=lambda bindir: int(bindir.parent.name) if bindir.parent.name.isdigit() else 0)
    return found[-1] if found else None


@dataclass
class PostgresCluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1 with a ``prefect`` database owned by role ``prefect``."""

    bindir: Path
    port: int = 0
    data: Path | None = None
    user: str | None = None  # the OS user running the cluster: postgres when we are root
    host: str = "127.0.0.1"  # listen address (loopback of the host it runs in)
    launcher: tuple[str, ...] = ()  # prefix of pg_ctl start, e.g. ("ip", "netns", "exec", NS): a host of its own

    @property
    def version(self) -> str:
        return self.bindir.parent.name

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://prefect:prefect@{self.host}:{self.port}/prefect"

    def _run(self, *args: str, timeout: float = 120, launch: bool = False) -> None:
        argv = [str(self.bindir / args[0]), *args[1:]]
        user = self.user
        if launch and self.launcher:  # the launcher (ip netns exec) needs root: drop to the user after it
            setpriv = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin") or "setpriv"  # util-linux
            argv = [
                *self.launcher,
                *([setpriv, f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user else []),
                *argv,
            ]
            user = None
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=tempfile.gettempdir(),
            user=user,
            group=user,
            extra_groups=[] if user else None,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stdout[-1500:]}{proc.stderr[-1500:]}")

    def start(self) -> PostgresCluster:
        self.port = self.port or free_port()
        self.data = Path(tempfile.mkdtemp(prefix="acrvpc-pg-"))
        if os.geteuid() == 0:
            self.user = "postgres"
            shutil.chown(self.data, "postgres", "postgres")
        os.chmod(self.data, 0o700)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.data / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -c listen_addresses={self.host} -k {self.data} -c fsync=off",
            "start",
            launch=True,
        )
        self._run(
            "psql",
            "-h",
            str(self.data),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "CREATE ROLE prefect LOGIN PASSWORD 'prefect'",
            "-c",
            "CREATE DATABASE prefect OWNER prefect",
        )
        return self

    def stop(self) -> None:
        if self.data is None:
            return
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", timeout=60)
        finally:
            shutil.rmtree(self.data, ignore_errors=True)
            self.data = None


@dataclass
class PrefectServer:
    home: Path
    port: int
    log: Path
    database_url: str | None = None  # postgresql+asyncpg://...; SQLite in PREFECT_HOME when None
    proc: subprocess.Popen | None = None
    children: list[subprocess.Popen] = field(default_factory=list)
    server_env: dict[str, str] = field(default_factory=dict)  # extra settings of the server process
    auth_string: str | None = None  # user:password; the server then refuses clients without it (401)
    host: str = "127.0.0.1"  # listen address
    launcher: tuple[str, ...] = ()  # prefix of the server command, e.g. ("ip", "netns", "exec", NS)

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def auth(self) -> tuple[str, str] | None:
        """``(user, password)`` for httpx's ``auth=`` (Basic, as Prefect's client sends it), or None."""
        if self.auth_string is None:
            return None
        user, _, password = self.auth_string.partition(":")
        return user, password

    def env(self, **extra: str) -> dict[str, str]:
        """A child process's environment: this server's API URL and, when it has one, its auth string."""
        env = base_env(self.home)
        env.update(PREFECT_API_URL=self.api_url, **extra)
        if self.auth_string is not None and "PREFECT_API_AUTH_STRING" not in extra:
            env["PREFECT_API_AUTH_STRING"] = self.auth_string
        return env

    def start(self, timeout: float = 120) -> PrefectServer:
        env = base_env(self.home)
        env.update(PREFECT_SERVER_API_HOST=self.host, PREFECT_SERVER_API_PORT=str(self.port), **self.server_env)
        if self.auth_string is not None:
            env["PREFECT_SERVER_API_AUTH_STRING"] = self.auth_string
        if self.database_url:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = self.database_url
        self.proc = subprocess.Popen(
            [*self.launcher, *PREFECT, "server", "start", "--host", self.host, "--port", str(self.port)],
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prefect server exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2):
                    return self
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"prefect server not healthy after {timeout} s: {self.log.read_text()[-2000:]}")

    def run_unchecked(self, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
        """Run a command against this server from the repository root; the caller checks its exit code."""
        return subprocess.run(
            list(args), cwd=ROOT, env=self.env(**env), capture_output=True, text=True, timeout=timeout
        )

    def run(self, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
        proc = self.run_unchecked(*args, timeout=timeout, **env)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        return proc

    def spawn(self, *args: str, log: Path, cwd: Path = ROOT, **env: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            list(args),
            cwd=cwd,
            env=self.env(**env),
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.children.append(proc)
        return proc

    def stop(self) -> None:
        for proc in [*self.children, self.proc]:
            if proc is not None:
                stop_group(proc)


def wait_until(check: Callable[[], T], timeout: float, what: str | Callable[[], str], every: float = 0.1) -> T:
    """``check()``'s first truthy answer, polled every ``every`` s (a check may assert, e.g. that a process lives);
    an AssertionError naming ``what`` (a callable: evaluated then, e.g. a log's tail) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what() if callable(what) else what}: not within {timeout} s")
        time.sleep(every)


def wait_worker_online(
    server: PrefectServer, pool: str, proc: subprocess.Popen, log: Path, timeout: float = 120
) -> None:
    """Wait until a worker of ``pool`` has polled the server (the server lists it ONLINE); fail at once if ``proc``
    (the worker) exits, with its log."""

    def online() -> bool:
        assert proc.poll() is None, f"the worker exited: {log.read_text(errors='replace')[-3000:]}"
        with httpx.Client(base_url=server.api_url, timeout=30, auth=server.auth) as client:
            workers = client.post(f"/work_pools/{pool}/workers/filter", json={})
        return workers.status_code == 200 and any(w.get("status") == "ONLINE" for w in workers.json())

    wait_until(online, timeout, lambda: f"a worker of pool {pool} ONLINE: {log.read_text(errors='replace')[-3000:]}")


def stop_group(proc: subprocess.Popen, grace: float = 10) -> None:
    """Stop a process and its children (a backgrounded worker may ignore SIGTERM; prefect-notes §4)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=grace)
