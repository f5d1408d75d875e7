"""Build monitoring through a real flow run: logs, artifacts, events, cancellation.

The pipeline runs in-process on the session's Prefect test server against the sandbox (real SDK
clients over HTTP). The sandbox clock runs 100x, so a build's ~19 sandbox seconds take a fraction of
a real one; the spec polls every 0.2 s.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from acrvpc.sandbox.cr.builds import image_digest
from tests.conftest import EXAMPLE_SPEC

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def fast_spec(tmp_path: Path) -> Path:
    data = yaml.safe_load(Path(EXAMPLE_SPEC).read_text())
    data["build"] = {"timeout_minutes": 30, "poll_seconds": 0.2}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def world(sandbox):
    sandbox.world.clock.set_scale(100)
    return sandbox.world


def _flush_logs() -> None:
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)


def run_logs(flow_run_id: str) -> list[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    _flush_logs()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200)
        found = list(logs)
        offset = len(found)
        while len(logs) == 200:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200, offset=offset
            )
            found += logs
            offset += len(logs)
    return [log.message for log in sorted(found, key=lambda entry: entry.timestamp)]


def artifacts(flow_run_id: str) -> list:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def events(prefix: str, flow_run_id: str, want: int, timeout: float = 30.0) -> list[dict]:
    """Events named ``prefix*`` related to the flow run, once ``want`` of them are stored."""
    from prefect.settings import PREFECT_API_URL

    url = f"{PREFECT_API_URL.value()}/events/filter"
    body = {
        "filter": {
            "event": {"prefix": [prefix]},
            "related": {"id": [f"prefect.flow-run.{flow_run_id}"]},
            "occurred": {"since": "2020-01-01T00:00:00Z"},
        },
        "limit": 50,
    }
    deadline = time.monotonic() + timeout
    while True:
        found = requests.post(url, json=body, timeout=10).json().get("events", [])
        if len(found) >= want or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def run(spec_path: Path):
    from flows.vpc_build import vpc_build

    state = vpc_build(spec_path=str(spec_path), return_state=True)
    return state, str(state.state_details.flow_run_id)


class TestBuildsInAFlowRun:
    def test_one_failed_build_does_not_hide_the_other(self, sandbox, world, fast_spec):
        # given web-frontend's build fails in BUILD and log pages of 3 lines (logs longer than a page)
        world.cr.fail_repos.add("apps/web-frontend")
        world.cr.log_page_size = 3
        # when
        state, run_id = run(fast_spec)
        # then the run fails naming only the failed build
        assert state.is_failed()
        message = state.message or ""
        assert "1 of 2 build(s) did not succeed" in message and "apps/web-frontend" in message
        assert "apps/billing-api (" not in message
        records = {r.name: r for r in world.cr.records.values()}
        assert set(records) == {"billing-api", "web-frontend"}

        # every log line of each build is in the run's logs exactly once, in order
        logs = run_logs(run_id)
        for name, record in records.items():
            expected = [f"[apps/{name}] {line.stage} {line.message}" for line in record.lines]
            streamed = [m for m in logs if m.startswith(f"[apps/{name}] ") and any(m == e for e in expected)]
            assert streamed == expected, name

        # the artifacts: a progress artifact per build at 100, the markdown summary and the table
        found = {a.key: a for a in artifacts(run_id) if a.key}
        assert found["build-apps-billing-api-latest"].type == "progress"
        assert float(found["build-apps-billing-api-latest"].data) == 100.0
        assert "SUCCESS" in found["build-apps-billing-api-latest"].description
        assert "FAILED" in found["build-apps-web-frontend-latest"].description
        summary = found["demo-build-builds"].data
        ok = records["billing-api"]
        assert f"Flow run `{run_id}`: 1 of 2 build(s) succeeded." in summary
        assert "| `apps/billing-api:latest` | main |" in summary
        assert f"sha256:{image_digest(ok)[:12]}…" in summary and image_digest(ok) not in summary  # shortened
        failed = records["web-frontend"]
        tail = [f"{line.stage} {line.message}" for line in failed.lines][-30:]
        assert "## apps/web-frontend: FAILED" in summary
        assert "\n".join(tail) in summary
        table = found["demo-build-build-table"].data
        rows = yaml.safe_load(table) if isinstance(table, str) else table
        assert sorted((r["repository"], r["status"], r["ref"]) for r in rows) == [
            ("apps/billing-api", "SUCCESS", "main"),
            ("apps/web-frontend", "FAILED", "main"),
        ]
        assert f"sha256:{image_digest(ok)}" in [r["digest"] for r in rows]  # in full in the table artifact

        # the events, with the repository as resource and the image as related resource
        started = events("acrvpc.build.started", run_id, 2)
        succeeded = events("acrvpc.build.succeeded", run_id, 1)
        failed_events = events("acrvpc.build.failed", run_id, 1)
        assert sorted(e["resource"]["prefect.resource.name"] for e in started) == [
            "apps/billing-api",
            "apps/web-frontend",
        ]
        [good] = succeeded
        assert (
            good["resource"]["prefect.resource.id"]
            == f"acrvpc.repository.{world.cr.records[ok.build_record_id].instance_id}.apps/billing-api"
        )
        images = [r for r in good["related"] if r.get("prefect.resource.role") == "image"]
        assert images and images[0]["prefect.resource.id"] == "acrvpc.image.apps/billing-api:latest"
        assert good["payload"]["digest"] == f"sha256:{image_digest(ok)}"
        [bad] = failed_events
        assert bad["payload"]["status"] == "FAILED" and bad["resource"]["prefect.resource.name"] == "apps/web-frontend"


class _Interrupter(threading.Thread):
    """Ctrl-C (SIGINT to this process) once both builds are BUILDING, without ever hanging the test.

    A missed interrupt fails fast: when the builds are not both BUILDING within ``wait_building``
    seconds, or the run is still going ``grace`` seconds after the signal, the thread records
    why (and dumps every thread's stack), then cancels the hanging builds in the sandbox itself so
    the run returns and the test fails with that message, instead of waiting for pytest's 300 s.
    (The earlier version gave up silently after 60 s; a run that needed longer to reach its builds,
    e.g. behind the session test server's "database is locked" 503s, which Prefect's client retries
    for up to 2+4+8+16+32 s, then hung on its never-ending builds.)
    """

    def __init__(self, world, wait_building: float = 120.0, grace: float = 45.0) -> None:
        super().__init__(daemon=True, name="interrupter")
        self.world, self.wait_building, self.grace = world, wait_building, grace
        self.t0 = time.monotonic()
        self.sent_at: float | None = None
        self.missed = ""
        self.run_ended = threading.Event()

    def _statuses(self) -> list[str]:
        with self.world.lock:
            return sorted(self.world.cr.status(r) for r in self.world.cr.records.values())

    def run(self) -> None:
        deadline = self.t0 + self.wait_building
        while time.monotonic() < deadline and not self.run_ended.is_set():
            if self._statuses() == ["BUILDING", "BUILDING"]:
                time.sleep(0.5)
                self.sent_at = time.monotonic()
                os.kill(os.getpid(), signal.SIGINT)
                break
            time.sleep(0.1)
        else:
            if not self.run_ended.is_set():
                self.missed = (
                    f"no interrupt sent: the sandbox's builds were {self._statuses()} after "
                    f"{self.wait_building:.0f} s, not both BUILDING (the run was too slow to reach its "
                    f"builds, or started other builds)"
                )
            self._release()
            return
        if not self.run_ended.wait(self.grace):
            self.missed = (
                f"SIGINT sent {self.sent_at - self.t0:.1f} s into the run, but the run was still going "
                f"{self.grace:.0f} s later (builds {self._statuses()}): the interrupt was lost or "
                f"swallowed; every thread's stack is on stderr"
            )
            faulthandler.dump_traceback(all_threads=True)
            self._release()

    def _release(self) -> None:
        """Cancel the hanging builds in the sandbox (as if from the console) until the run returns."""
        while not self.run_ended.is_set():
            with self.world.lock:
                now = self.world.clock.now()
                for record in self.world.cr.records.values():
                    if self.world.cr.status(record) not in ("SUCCESS", "FAILED", "CANCELED"):
                        record.cancel(now)
            self.run_ended.wait(0.5)


class TestCancellation:
    def test_interrupting_the_run_cancels_its_running_builds(self, sandbox, world, fast_spec):
        # given builds that never end
        world.cr.hang_repos.update({"apps/billing-api", "apps/web-frontend"})
        interrupter = _Interrupter(world)

        # when the run is interrupted (Ctrl-C; a cancel from the UI arrives as SIGTERM, same path)
        interrupter.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                run(fast_spec)
        finally:
            interrupter.run_ended.set()
            if interrupter.missed:
                pytest.fail(interrupter.missed)
        # then both builds were canceled with the API before the run let go
        calls = requests.get(f"{sandbox.url}/_sandbox/calls", timeout=5).json()["calls"]
        cancels = [c for c in calls if c["action"] == "CancelRepoBuildRecord"]
        assert len(cancels) == 2
        with world.lock:
            assert {world.cr.status(r) for r in world.cr.records.values()} == {"CANCELED"}
