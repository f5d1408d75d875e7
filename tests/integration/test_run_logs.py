"""Our modules' log records reach the run's logs (acrvpc/runlog.py), read back through the server's logs API."""

from __future__ import annotations

import logging
import time
import warnings

import httpx
import pytest
from prefect import flow
from prefect.settings import PREFECT_API_URL

from acrvpc import runlog
from flows.teardown import teardown
from tests.conftest import EXAMPLE_SPEC


def run_logs(flow_run_id: str, expect: str, timeout: float = 20.0) -> list[dict]:
    """``POST /logs/filter`` for one flow run, until a message containing ``expect`` is there (logs are batched)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.post(
            f"{PREFECT_API_URL.value()}/logs/filter",
            timeout=10,
            json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200},
        )
        answer.raise_for_status()
        logs = answer.json()
        if any(expect in log["message"] for log in logs) or time.monotonic() > deadline:
            return logs
        time.sleep(0.3)


def test_an_in_place_retry_is_in_the_run_logs(prefect_harness, sandbox, monkeypatch):
    # given in-place retries on and the teardown's first read failing once
    monkeypatch.setenv("ACRVPC_CALL_RETRIES", "3")
    sandbox.world.faults.fail_next("DescribeNetworkInterfaces", 1, "ServiceUnavailable")
    # when the teardown flow runs
    state = teardown(spec_path=str(EXAMPLE_SPEC), return_state=True)
    assert state.is_completed()
    run_id = str(state.state_details.flow_run_id)
    # then the retry, logged on acrvpc.cloud.callretry inside a task, is in that run's logs, once
    logs = run_logs(run_id, "DescribeNetworkInterfaces: ServiceUnavailable, retry 1/3")
    ours = [log for log in logs if log["name"] == "acrvpc.cloud.callretry"]
    assert [log["message"].split(" in ")[0] for log in ours] == [
        "ecs DescribeNetworkInterfaces: ServiceUnavailable, retry 1/3"
    ]
    assert ours[0]["level"] == logging.INFO and ours[0]["task_run_id"] is not None


def test_records_outside_a_run_stay_out_quietly_and_caplog_still_sees_them(prefect_harness, caplog):
    @flow
    def attach() -> None:
        runlog.ship_our_logs()
        runlog.ship_our_logs()  # idempotent

    attach()
    handlers = [h for h in logging.getLogger("acrvpc").handlers if isinstance(h, runlog.RunOnlyHandler)]
    assert len(handlers) == 1
    caplog.set_level(logging.INFO, logger="acrvpc")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Prefect's handler would warn "without a flow run id"
        logging.getLogger("acrvpc.cloud.callretry").info("outside any run")
    assert "outside any run" in caplog.text


@pytest.mark.parametrize("name", ["tasks.example", "flows.example"])
def test_tasks_and_flows_loggers_ship_too(prefect_harness, name):
    @flow
    def speak() -> str:
        runlog.ship_our_logs()
        logging.getLogger(name).info("hello from %s", name)
        from prefect.runtime import flow_run

        return str(flow_run.get_id())

    run_id = speak()
    logs = run_logs(run_id, f"hello from {name}")
    assert [log["message"] for log in logs if log["name"] == name] == [f"hello from {name}"]
