"""A real ``prefect server start`` and a process worker on loopback, for end-to-end tests.

Started once per session by the ``prefect_server`` and ``process_worker`` fixtures in
tests/e2e/conftest.py; the deployments come from the repository's prefect.yaml through
``prefect --no-prompt deploy --all``, exactly as the README says to deploy.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ACRVPC_"))}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost")
    return env


@dataclass
class PrefectServer:
    home: Path
    port: int
    log: Path
    proc: subprocess.Popen | None = None
    children: list[subprocess.Popen] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def env(self, **extra: str) -> dict[str, str]:
        env = base_env(self.home)
        env.update(PREFECT_API_URL=self.api_url, **extra)
        return env

    def start(self, timeout: float = 120) -> "PrefectServer":
        env = base_env(self.home)
        env.update(PREFECT_SERVER_API_HOST="127.0.0.1", PREFECT_SERVER_API_PORT=str(self.port))
        self.proc = subprocess.Popen(["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                                     env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
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

    def run(self, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(args), cwd=ROOT, env=self.env(**env), capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        return proc

    def spawn(self, *args: str, log: Path, **env: str) -> subprocess.Popen:
        proc = subprocess.Popen(list(args), cwd=ROOT, env=self.env(**env), stdout=log.open("w"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.children.append(proc)
        return proc

    def stop(self) -> None:
        for proc in [*self.children, self.proc]:
            if proc is not None:
                stop_group(proc)


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
