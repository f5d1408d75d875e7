"""Soak: 20 runs of different specs with 20% transient faults all complete, no duplicate, no orphan."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.soak]

RUNS = 20


def test_twenty_runs_with_transient_faults_converge(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_", "ACRVPC_"))}
    env.update(
        PREFECT_HOME=str(tmp_path),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        ACRVPC_RETRY_DELAYS="0.2,0.4,0.8,1.6,3.2,3.2,3.2",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "e2e" / "soak.py"),
            "--runs",
            str(RUNS),
            "--fault-rate",
            "0.2",
            "--seed",
            "7",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]  # e.g. Prefect's embedded server did not start
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    # every run completed, although about a fifth of all calls failed transiently
    failed = [r for r in report["runs"] if r["state"] != "COMPLETED"]
    assert failed == [], failed
    assert report["faults_injected"] >= 0.15 * report["calls"]
    # each link has exactly one security group and one ENI, and nothing else was created
    seeded = report["seeded"]  # what the world held before the first run (ids are minted per process)
    groups = {k: v for k, v in report["security_groups"].items() if k not in seeded["security_groups"]}
    enis = {k: v for k, v in report["network_interfaces"].items() if k not in seeded["network_interfaces"]}
    links = {f"soak-{i:02d}" for i in range(RUNS)}
    assert collections.Counter(groups.values()) == collections.Counter({name: 1 for name in links})
    assert collections.Counter(enis.values()) == collections.Counter({name: 1 for name in links})
