"""A person opens the failed run in the Prefect UI, clicks Retry, and the run completes.

Headless Debian Chromium (``apt-get install chromium``; .ci/run installs it) driven by Playwright
with ``executable_path`` (never ``playwright install``), against the real server of
tests/e2e/conftest.py. The roles are the ones measured in prefect-notes §9.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.e2e.test_ui_retry import ECS_WRITES, start_run, wait_final

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    # Only loopback: the UI's analytics SDK (Amplitude, set up even when the server disables analytics) finds no
    # host at once instead of retrying, and a page's network goes idle when the UI's own requests are done.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        message = "Debian's chromium is not installed (apt-get install -y chromium); .ci/run installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    playwright_api = (
        pytest.importorskip("playwright.sync_api")
        if not os.environ.get("CI")
        else __import__("playwright.sync_api", fromlist=["sync_playwright"])
    )
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


def test_clicking_retry_in_the_ui_completes_the_failed_run(
    prefect_server, process_worker, worker_sandbox, browser, tmp_path
):
    world = worker_sandbox.world
    world.reset()
    world.clock.set_scale(20.0)
    world.faults.fail_next("CreateRepository", count=2, code="Forbidden.RAM")
    run_id = start_run(prefect_server)
    assert wait_final(prefect_server, run_id)["type"] == "FAILED"
    seq = len(world.calls.list())

    page = browser.new_page()
    if prefect_server.auth_string:  # what the UI's login form stores: base64 of user:password, sent as Basic auth
        page.add_init_script(f"localStorage.setItem('prefect-password', btoa({prefect_server.auth_string!r}))")
    page.goto(f"http://127.0.0.1:{prefect_server.port}/v2/runs/flow-run/{run_id}", timeout=60_000)
    page.get_by_role("button", name="Open menu").first.click(timeout=60_000)
    page.get_by_role("menuitem", name="Retry").click(timeout=30_000)
    dialog = page.get_by_role("alertdialog", name="Retry Flow Run")
    dialog.get_by_role("button", name="Retry").click(timeout=30_000)
    page.get_by_text("Flow run scheduled for retry").first.wait_for(timeout=30_000)
    page.screenshot(path=str(tmp_path / "retry.png"))

    done = wait_final(prefect_server, run_id)
    assert done["type"] == "COMPLETED", done
    retry_writes = {c["action"] for c in world.calls.list(seq) if c["writes"]}
    assert not ECS_WRITES & retry_writes and "CreateBuildRecordByRule" in retry_writes
