"""Where a fresh-home ``acrvpc demo`` spends its time: each phase's wall time and CPU seconds, this process's
and its Prefect server's, so a slow run on a busy machine can be read (CPU changes little with load).

    python bench/demo_phases.py                 # a demo on a new PREFECT_HOME in a temporary directory
    python bench/demo_phases.py --time-scale 10 # any `acrvpc demo` options

Prints one ``PHASE <wall s> cpu=<this process> server_cpu=<its server> <phase>`` line per phase on stderr
(the demo's own output is kept, --quiet is added), then the run's task runs from the new database. It wraps
the demo's functions from outside (acrvpc.cli.demo_server.DemoServer, acrvpc.cli.app._run_flow); nothing in
the product reads a debug flag.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

T0 = time.monotonic()
_server: list = []


def _server_cpu() -> str:
    if not _server:
        return ""
    try:
        fields = Path(f"/proc/{_server[0].process.pid}/stat").read_text().split()
    except OSError:
        return " server_cpu=(exited)"
    return f" server_cpu={(int(fields[13]) + int(fields[14])) / os.sysconf('SC_CLK_TCK'):.2f}"


def mark(label: str) -> None:
    print(
        f"PHASE {time.monotonic() - T0:6.2f} s cpu={time.process_time():.2f}{_server_cpu()} {label}",
        file=sys.stderr,
        flush=True,
    )


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="acrvpc-demo-phases-")) / "home"
    for key in [k for k in os.environ if k.startswith("PREFECT_")]:
        del os.environ[key]
    os.environ["PREFECT_HOME"] = str(home)
    os.chdir(home.parent)  # no prefect.toml, .env or pyproject here
    mark("interpreter up")
    from acrvpc.cli import app, demo_server

    mark("CLI imported")

    class Traced(demo_server.DemoServer):
        def __init__(self) -> None:
            super().__init__()
            _server.append(self)
            mark("server spawned")

        def wait_ready(self, timeout: float = 120.0) -> None:
            mark("sandbox up, flow imported; waiting for the server")
            super().wait_ready(timeout)
            mark("server ready")

        def stop(self) -> None:
            mark("stopping the server")
            super().stop()
            mark("server stopped")

    run_flow = app._run_flow

    def traced_run_flow(*args, **kwargs):
        mark("flow run starts")
        try:
            return run_flow(*args, **kwargs)
        finally:
            mark("flow run returned")

    demo_server.DemoServer = Traced  # type: ignore[misc]
    app._run_flow = traced_run_flow
    sys.argv = ["acrvpc", "demo", "--quiet", *sys.argv[1:]]
    try:
        app.app()
    except SystemExit as exc:
        mark(f"demo exited {exc.code}")
    with sqlite3.connect(home / "prefect.db") as db:
        rows = db.execute("select name, start_time, end_time from task_run order by start_time").fetchall()
        flow = db.execute("select start_time, end_time from flow_run").fetchall()
    print(f"flow run (in {home / 'prefect.db'}):", *flow, file=sys.stderr)
    for row in rows:
        print(" ", *row, file=sys.stderr)


if __name__ == "__main__":
    main()
