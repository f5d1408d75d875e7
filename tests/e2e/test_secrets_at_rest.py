"""No secret at rest on the real deployment: the PostgreSQL database of the e2e Prefect server (as a
``pg_dump``), the server's and worker's logs and PREFECT_HOME (persisted results) hold none.

Runs last in the session (``runs_last``), after every e2e flow run (deployments run by the process
worker, webhook deliveries, UI retries, console pauses, the soak) has been recorded.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_secrets_at_rest import secrets
from tests.secret_scan import scan, scanned_files

pytestmark = [pytest.mark.e2e, pytest.mark.runs_last]


def _dump(postgres, into: Path) -> Path:
    out = into / "prefect.sql"
    env = {**os.environ, "PGPASSWORD": "prefect"}
    with out.open("wb") as handle:
        proc = subprocess.run(
            [
                str(postgres.bindir / "pg_dump"),
                "-h",
                "127.0.0.1",
                "-p",
                str(postgres.port),
                "-U",
                "prefect",
                "-d",
                "prefect",
                "--data-only",
            ],
            stdout=handle,
            stderr=subprocess.PIPE,
            env=env,
            timeout=300,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return out


def test_server_database_logs_and_results_hold_no_secret(prefect_server, postgres, process_worker, tmp_path):
    # given everything the e2e session recorded
    places = [prefect_server.home]
    known = dict(secrets())
    auth = getattr(prefect_server, "auth_string", None)
    if auth:
        known["Prefect API auth string"] = auth
    if postgres is not None:
        dump = _dump(postgres, tmp_path)
        text = dump.read_bytes()
        assert b"flow_run" in text or b"COPY public." in text  # a real dump of the server's tables
        places.append(dump)
    assert scanned_files(places) > 3
    # then
    assert scan(places, known) == []
