"""The Prefect server of ``acrvpc demo``: started first thing, on a database that needs no migrations.

Without ``PREFECT_API_URL`` Prefect starts its embedded ("ephemeral") server only when the flow first
calls the API, after ``import prefect`` (1.5 s of CPU) and the flow's imports, and on a fresh
``PREFECT_HOME`` that server then runs all of Prefect's ~116 SQLite migrations (12 s at load 7; issue 18
measured a fresh-home demo at 31 s, 17.7 s warm). ``acrvpc demo`` instead:

1. creates ``$PREFECT_HOME/prefect.db``, when there is none, from :data:`TEMPLATE`: the SQL of the schema
   Prefect's migrations produce (``sqlite3`` ``iterdump``, 47 kB, 0.1 s to load). Its first line names the
   Prefect version and migration head it was made from; when the installed Prefect differs in either, the
   template is not used and Prefect's migrations create the database as before (never a stale schema).
   Rebuild it after a Prefect upgrade with ``python -m acrvpc.cli.demo_server --write`` (a unit test fails
   until then);
2. starts the same server Prefect's ephemeral mode starts (``uvicorn --factory
   prefect.server.api.server:create_app`` with ``PREFECT__SERVER_EPHEMERAL=1``: no UI, only the services an
   ephemeral server runs) as a subprocess at once, so it loads on the other core while this process starts
   the sandbox and imports the flow, and points ``PREFECT_API_URL`` of this process at it. It registers no block
   types (:data:`NO_BLOCK_REGISTRATION`);
3. stops it when the demo ends. The runs stay in ``$PREFECT_HOME/prefect.db``, as with the embedded server.

Only when no settings source names an API URL or another database (else Prefect's settings decide, as before).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

TEMPLATE = Path(__file__).with_name("prefect_sqlite_schema.sql")
HEADER = re.compile(r"^-- prefect (\S+) migration head (\S+)$")
# `uvicorn ARGS`, with Python's cyclic garbage collector paused while Prefect's server modules load: the
# collector's passes over the objects an import creates cost 0.6 of the 2.0 CPU s of that import (measured,
# Prefect 3.9.1); those objects live as long as the process, so they are then frozen (never scanned again:
# gc.freeze) and the collector resumes for what the server creates afterwards.
SERVE = (
    "import gc, sys; gc.disable(); sys.path.insert(0, sys.argv[sys.argv.index('--app-dir') + 1]); "
    "import prefect.server.api.server, uvicorn.main; gc.freeze(); gc.enable(); sys.argv[0] = 'uvicorn'; "
    "uvicorn.main.main()"
)
# The demo's server registers no block types: on a PREFECT_HOME it has not seen, Prefect's start-up imports every
# installed collection (prefect_aws: boto3) and writes each block type and schema, 1.4 CPU s of the server's ~4
# before it answers (measured, Prefect 3.9.1), and the demo's run loads no block (the sandbox's credentials come
# first). Without memoizing, no memo is written either: the next `prefect server start` on this home registers
# them all, as on any new home.
NO_BLOCK_REGISTRATION = {
    "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false",
    "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",
}


def _prefect_dir() -> Path | None:
    spec = importlib.util.find_spec("prefect")
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None


def installed_key() -> tuple[str, str] | None:
    """(Prefect's version, its SQLite migration head), read from the files without importing Prefect."""
    where = _prefect_dir()
    if where is None:
        return None
    revisions, downs = set(), set()
    for path in (where / "server" / "database" / "_migrations" / "versions" / "sqlite").glob("*.py"):
        text = path.read_text(errors="replace")
        rev = re.search(r"""^revision\s*=\s*["']([0-9a-f]+)["']""", text, re.M)
        down = re.search(r"^down_revision\s*=\s*(.+)$", text, re.M)
        if rev:
            revisions.add(rev.group(1))
        if down:
            downs.update(re.findall(r"[0-9a-f]{12}", down.group(1)))
    heads = sorted(revisions - downs)
    if len(heads) != 1:
        return None
    return importlib.metadata.version("prefect"), heads[0]


def template_key(path: Path | None = None) -> tuple[str, str] | None:
    path = path or TEMPLATE
    try:
        with path.open() as f:
            found = HEADER.match(f.readline().strip())
    except OSError:
        return None
    return (found.group(1), found.group(2)) if found else None


def default_database() -> Path | None:
    """``$PREFECT_HOME/prefect.db`` when Prefect surely uses it, None when a settings source might say otherwise."""
    if "prefect" in sys.modules:
        return None
    if any(k.startswith(("PREFECT_API_DATABASE", "PREFECT_SERVER_DATABASE")) for k in os.environ):
        return None
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    sources = (
        [Path(os.environ["PREFECT_PROFILES_PATH"]).expanduser()] if os.environ.get("PREFECT_PROFILES_PATH") else []
    )
    sources += [
        home / "profiles.toml",
        Path.home() / ".prefect" / "profiles.toml",
        Path(".env"),
        Path("prefect.toml"),
        Path("pyproject.toml"),
    ]
    for path in sources:
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            continue
        except OSError:
            return None
        if path.name == "pyproject.toml":  # Prefect reads only its [tool.prefect] table there
            try:
                table = tomllib.loads(text).get("tool", {}).get("prefect", {})
            except tomllib.TOMLDecodeError:
                return None
            if "DATABASE" in json.dumps(table).upper() or "home" in table:
                return None
        elif "DATABASE" in text.upper() or "PREFECT_HOME" in text.upper():
            return None
    return home / "prefect.db"


def seed_database(database: Path) -> str:
    """Create ``database`` from the template when it does not exist; says what happened."""
    if database.exists():
        return "existing database"
    installed, shipped = installed_key(), template_key()
    if installed is None or installed != shipped:
        return (
            f"new database (Prefect {installed and installed[0]} runs its migrations: the packaged schema is "
            f"for Prefect {shipped and shipped[0]}, migration head {shipped and shipped[1]})"
        )
    database.parent.mkdir(parents=True, exist_ok=True)
    partial = database.with_name(f".{database.name}.{os.getpid()}.tmp")
    try:
        with sqlite3.connect(partial) as db:
            db.executescript(TEMPLATE.read_text())
        db.close()
        os.replace(partial, database)
    finally:
        partial.unlink(missing_ok=True)
    return "new database from the packaged schema"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DemoServer:
    """Prefect's ephemeral server as a subprocess started now (see the module's docstring)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        where = _prefect_dir()
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            **NO_BLOCK_REGISTRATION,
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                SERVE,
                "--app-dir",
                str(where.parent if where else "."),
                "--factory",
                "prefect.server.api.server:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "error",
                "--lifespan",
                "on",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"Prefect's server exited with code {self.process.returncode} before it was "
                    "ready (its error is above)"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"Prefect's server on {self.url} was not ready within {timeout:.0f} s")

    def stop(self) -> None:
        """Send the run's last logs and events, then stop the server (Prefect's exit handlers would otherwise
        retry them against a server that is gone, for a minute)."""
        if "prefect" in sys.modules and self.process.poll() is None:
            from prefect.events.worker import EventsWorker
            from prefect.logging.handlers import APILogWorker

            for worker in (APILogWorker, EventsWorker):
                try:
                    worker.drain_all(timeout=10)
                except Exception:  # noqa: BLE001 - best effort: the run itself is recorded already
                    pass
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def migrate_database(home: Path) -> Path:
    """Run Prefect's migrations, as its server's start-up does, on a new database in ``home``; its path."""
    code = (
        "import asyncio; from prefect.server.database import provide_database_interface; "
        "asyncio.run(provide_database_interface().create_db())"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    subprocess.run([sys.executable, "-c", code], env={**env, "PREFECT_HOME": str(home)}, check=True, timeout=600)
    return home / "prefect.db"


def write_template(path: Path | None = None) -> tuple[str, str]:
    """Write the SQL of a freshly migrated database to ``path`` (run after a Prefect upgrade)."""
    import tempfile

    path = path or TEMPLATE
    key = installed_key()
    assert key is not None, "cannot read Prefect's migration head"
    with tempfile.TemporaryDirectory(prefix="acrvpc-schema-") as home:
        with sqlite3.connect(migrate_database(Path(home))) as db:
            lines = list(db.iterdump())
        db.close()
    path.write_text(
        f"-- prefect {key[0]} migration head {key[1]}\n"
        "-- Written by `python -m acrvpc.cli.demo_server --write`: the SQLite schema Prefect's migrations "
        "create. `acrvpc demo` loads it into a new PREFECT_HOME only for this Prefect version and head.\n"
        + "\n".join(lines)
        + "\n"
    )
    return key


if __name__ == "__main__":  # pragma: no cover - maintenance command
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m acrvpc.cli.demo_server --write")
    version, head = write_template()
    print(f"wrote {TEMPLATE} for Prefect {version}, migration head {head}")
