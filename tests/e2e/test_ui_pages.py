"""The runs as ops staff see them in the Prefect UI: names, artifacts that fit the page, a failure explained.

Three runs of the session's ``vpc-build/nightly`` deployment on the real server (tests/e2e/conftest.py):
one paused at a console step (suspended), one failed at the binding stage (``Forbidden.RAM``), one
completed. Headless Debian Chromium driven by Playwright (never ``playwright install``) opens each
run's page at 1400x900 and checks, from the DOM: the flow-run and task-run names, that every artifact's
page renders without horizontal overflow of the main column, and that the failed run's page (its
Artifacts tab, not its logs) shows the failing stage, the error code and the fix.

Screenshots go to ``test-output/ui/`` (git-ignored). To refresh the ones docs/observability.md shows::

    ACRVPC_UI_SCREENSHOTS=docs/img .venv/bin/python -m pytest tests/e2e/test_ui_pages.py
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.test_console_mode import console_spec
from tests.e2e.test_ui_retry import api, wait_final
from tests.e2e.test_ui_retry_browser import browser  # noqa: F401 - the module's Chromium fixture

pytestmark = pytest.mark.e2e

SPEC = "demo-build"  # examples/sandbox.yaml
WIDTH, HEIGHT = 1400, 900
OUT = ROOT / "test-output" / "ui"
OFF_HOST = re.compile(r"^https?://(?!127\.0\.0\.1[:/]|localhost[:/])")  # any host but this machine


def shots_dir() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = Path(os.environ.get("ACRVPC_UI_SCREENSHOTS") or OUT)
    path = path if path.is_absolute() else ROOT / path
    path.mkdir(parents=True, exist_ok=True)
    return path


def start(server, **parameters) -> str:
    with api(server) as client:
        deployment = client.get("/deployments/name/vpc-build/nightly").raise_for_status().json()
        body = {"parameters": parameters} if parameters else {}
        return (
            client.post(f"/deployments/{deployment['id']}/create_flow_run", json=body).raise_for_status().json()["id"]
        )


def wait_paused(server, run_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    with api(server) as client:
        while time.monotonic() < deadline:
            run = client.get(f"/flow_runs/{run_id}").raise_for_status().json()
            if run["state"] and run["state"]["type"] == "PAUSED":
                return run
            assert run["state"] is None or run["state"]["type"] not in {"COMPLETED", "FAILED", "CRASHED"}, run["state"]
            time.sleep(0.3)
    raise AssertionError(f"flow run {run_id} did not pause in {timeout} s")


def run_of(server, run_id: str) -> dict:
    with api(server) as client:
        return client.get(f"/flow_runs/{run_id}").raise_for_status().json()


def task_names(server, run_id: str) -> set[str]:
    with api(server) as client:
        return {
            tr["name"]
            for tr in client.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [run_id]}}})
            .raise_for_status()
            .json()
        }


def artifacts(server, run_id: str) -> list[dict]:
    with api(server) as client:
        return (
            client.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run_id]}}})
            .raise_for_status()
            .json()
        )


# What sticks out of its box in the page's main element (element widths from the DOM): an element wider than an
# ancestor that does not clip it (a markdown table running under the side panel), or a page that scrolls sideways.
# A box that scrolls by design (the table artifact's data grid, overflow-x auto) is listed apart as a scroller.
OVERFLOW_JS = """() => {
  const main = document.querySelector('main') || document.body;
  const wide = [], scrollers = [];
  const clips = (el) => ['auto', 'scroll', 'hidden', 'clip'].includes(getComputedStyle(el).overflowX);
  for (const el of main.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0) continue;
    if (clips(el) && el.scrollWidth > el.clientWidth + 1) scrollers.push(el.tagName + '.' + el.className);
    for (let a = el.parentElement; a && a !== main.parentElement && !clips(a); a = a.parentElement) {
      const right = a.getBoundingClientRect().right;
      if (r.right > right + 1) {
        wide.push(`${el.tagName} right=${Math.round(r.right)} > ${a.tagName} right=${Math.round(right)}`);
        break;
      }
    }
  }
  return {wide: wide.slice(0, 10), scrollers, docScroll: document.documentElement.scrollWidth,
          viewport: window.innerWidth};
}"""


@pytest.fixture
def ui(prefect_server, browser):  # noqa: F811
    """A browser context signed in to the server's UI, one page per page the test opens."""
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    if prefect_server.auth_string:  # what the UI's login form stores: base64 of user:password, sent as Basic auth
        context.add_init_script(f"localStorage.setItem('prefect-password', btoa({prefect_server.auth_string!r}))")
    # The UI's analytics SDK (set up even when the server disables analytics) asks Amplitude for its config and,
    # finding no host, retries for a second after the page has loaded, which kept each artifact page's
    # networkidle wait waiting: it gets an empty config from here, and nothing leaves the machine.
    context.route(OFF_HOST, lambda route: route.fulfill(status=200, content_type="application/json", body="{}"))
    yield context
    context.close()


def open_page(ui, server, path: str):
    page = ui.new_page()
    page.goto(f"http://127.0.0.1:{server.port}/v2{path}", timeout=60_000)
    return page


def assert_fits(page, what: str, *, grid: bool = False) -> None:
    """Nothing sticks out of the main column; only a table artifact's data grid may scroll (``grid``)."""
    measured = page.evaluate(OVERFLOW_JS)
    fits = (
        not measured["wide"] and measured["docScroll"] <= measured["viewport"] and (grid or not measured["scrollers"])
    )
    if not fits:
        page.screenshot(path=str(OUT / f"overflow-{what}.png"), full_page=True)
    assert fits, (what, measured)


@pytest.fixture(scope="module")
def three_runs(prefect_server, process_worker, worker_sandbox, tmp_path_factory):
    """(paused, failed, completed) run ids, in that order on one sandbox world."""
    world = worker_sandbox.world
    world.reset()
    world.clock.set_scale(20.0)
    paused = start(prefect_server, spec_path=str(console_spec(tmp_path_factory.mktemp("ui"))))
    wait_paused(prefect_server, paused)
    world.faults.fail_next("CreateRepository", count=2, code="Forbidden.RAM")
    failed = start(prefect_server)
    assert wait_final(prefect_server, failed)["type"] == "FAILED"
    completed = start(prefect_server)
    assert wait_final(prefect_server, completed)["type"] == "COMPLETED"
    yield paused, failed, completed
    with api(prefect_server) as client:  # nobody answers the console step: end it
        client.post(f"/flow_runs/{paused}/set_state", json={"state": {"type": "CANCELLED"}, "force": True})


def test_runs_and_task_runs_are_named_from_the_spec_trigger_and_subject(prefect_server, three_runs):
    paused, failed, completed = three_runs
    for run_id in three_runs:
        assert run_of(prefect_server, run_id)["name"] == f"{SPEC} · manual"
    assert {
        f"preflight {SPEC}",
        f"link {SPEC}",
        f"eni {SPEC}",
        "gitlab release-bot",
        "binding apps/billing-api",
        "build apps/billing-api:latest",
    } <= task_names(prefect_server, completed)


def test_the_pages_in_chromium(prefect_server, three_runs, ui):
    paused, failed, completed = three_runs
    out = shots_dir()
    # The completed run: its page names it, its Task Runs tab names the stages and subjects
    page = open_page(ui, prefect_server, f"/runs/flow-run/{completed}")
    page.get_by_text(f"{SPEC} · manual").first.wait_for(timeout=60_000)
    page.get_by_role("tab", name="Task Runs").click()
    for name in (f"preflight {SPEC}", f"link {SPEC}", "gitlab release-bot", "build apps/web-frontend:latest"):
        page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text(f"{SPEC}-run").first.wait_for(timeout=30_000)
    page.screenshot(path=str(out / "run-page.png"))
    page.close()

    # Every artifact of the three runs renders on its own page without widening the main column
    shots = {
        f"{SPEC}-builds": "build-summary.png",
        f"preflight-{SPEC}": "preflight-table.png",
        f"{SPEC}-run": "run-summary.png",
    }
    for run_id in (completed, failed, paused):
        for artifact in artifacts(prefect_server, run_id):
            page = open_page(ui, prefect_server, f"/artifacts/artifact/{artifact['id']}")
            page.locator("main").get_by_text(artifact["key"] or "Artifact").first.wait_for(timeout=30_000)
            page.wait_for_load_state("networkidle")
            assert_fits(page, artifact["key"], grid=artifact["type"] == "table")
            if run_id == completed and artifact["key"] in shots:
                page.screenshot(path=str(out / shots.pop(artifact["key"])), full_page=True)
            page.close()
    assert not shots, f"artifacts not found: {shots}"

    # The failed run: the stage, the code and the fix on its page (Artifacts tab), without opening the logs
    page = open_page(ui, prefect_server, f"/runs/flow-run/{failed}")
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text(f"Run of {SPEC}: failed at binding apps/").first.wait_for(timeout=30_000)  # the summary's card
    page.get_by_role("tab", name="Details").click()  # the run's state message
    page.get_by_text("State Message").first.wait_for(timeout=30_000)
    text = page.locator("main").inner_text()
    assert "[Forbidden.RAM] binding apps/" in text and "Fix: grant the RAM user" in text, text[:3000]
    assert ": None Fix" not in text, text[:3000]  # the provider's message, not an empty attribute
    page.screenshot(path=str(out / "failed-run.png"), full_page=True)
    page.close()

    # The paused run: named, shown as paused at the console step with its runbook
    page = open_page(ui, prefect_server, f"/runs/flow-run/{paused}")
    page.get_by_text(f"{SPEC} · manual").first.wait_for(timeout=60_000)
    page.get_by_text("Suspended").first.wait_for(timeout=30_000)
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text(f"console-link-{SPEC}").first.wait_for(timeout=30_000)
    page.screenshot(path=str(out / "paused-run.png"))
    page.close()
