"""A flow for tests/e2e/test_warm_worker.py: says which process ran it, or crashes it on purpose."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run


@flow(name="warm-probe")
def probe(out_dir: str, mode: str = "ok", seconds: float = 0.0) -> int:
    """Write {pid, ppid, version_check, csrf} to OUT_DIR/<flow run id>.json; mode "exit": then end the process at once (os._exit)."""
    from prefect.settings import get_current_settings

    client = get_current_settings().client  # the worker checked the version and asked for a CSRF token
    seen = {"version_check": client.server_version_check_enabled, "csrf": client.csrf_support_enabled}
    Path(out_dir, f"{flow_run.id}.json").write_text(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), **seen}))
    if mode == "exit":
        os._exit(3)
    time.sleep(seconds)
    return os.getpid()
