"""No secret at rest: the Prefect database, persisted task results and PREFECT_HOME hold none.

Runs last in the session (marker ``runs_last``): by then every pipeline run of the suite on the
session's Prefect test server is in its database. It first runs the paths that handle every secret
itself (credentials for the clients, the GitLab token, the webhook secret and signing token for hook
registration, a failed build's log tail, the on-push flow), so it means something when run alone.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from acrvpc.sandbox import defaults
from tests.conftest import EXAMPLE_SPEC
from tests.secret_scan import find_in_bytes, scan, scanned_files

WEBHOOK_SECRET = "scan-webhook-secret-0001"
SIGNING_SECRET = "whsec_" + base64.b64encode(b"scan-signing-key-0123456789abcde").decode()


def secrets() -> dict[str, str]:
    """Every secret the test suite hands the pipeline, by label."""
    from tests.e2e import test_webhook as e2e_webhook
    from tests.integration import test_webhook_hook

    return {
        "AccessKey secret (sandbox)": defaults.ACCESS_KEY_SECRET,
        "GitLab token (sandbox)": defaults.GITLAB_TOKEN,
        "webhook secret (this test)": WEBHOOK_SECRET,
        "webhook signing token (this test)": SIGNING_SECRET,
        "webhook secret (integration)": test_webhook_hook.SECRET,
        "webhook secret (e2e)": e2e_webhook.SECRET,
    }


class TestSecretScanner:
    def test_finds_a_secret_plain_and_inside_a_base64_result(self):
        found = find_in_bytes(
            b'{"result": "'
            + base64.b64encode(b"\x80\x04" + defaults.GITLAB_TOKEN.encode())
            + b'"} and '
            + defaults.ACCESS_KEY_SECRET.encode(),
            secrets(),
        )
        assert found == {"GitLab token (sandbox)", "AccessKey secret (sandbox)"}

    def test_finds_nothing_in_clean_bytes(self):
        assert find_in_bytes(b"nothing to see " + base64.b64encode(b"x" * 40), secrets()) == set()


@pytest.mark.runs_last
@pytest.mark.usefixtures("prefect_harness")
class TestNoSecretAtRest:
    def test_database_results_and_home_hold_no_secret(self, sandbox, tmp_path: Path, monkeypatch):
        from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_HOME, PREFECT_LOCAL_STORAGE_PATH

        from flows.on_push import build_on_push
        from flows.vpc_build import vpc_build

        # given a run that registers webhooks with a secret and a signing token, and a failing build
        monkeypatch.setenv("ACRVPC_WEBHOOK_SECRET", WEBHOOK_SECRET)
        monkeypatch.setenv("ACRVPC_WEBHOOK_SIGNING_SECRET", SIGNING_SECRET)
        sandbox.world.clock.set_scale(200)
        sandbox.world.cr.fail_repos.add("apps/web-frontend")
        for project in sandbox.world.gitlab.projects.values():  # webhooks need Maintainer
            project["members"]["release-bot"] = 40
        data = yaml.safe_load(Path(EXAMPLE_SPEC).read_text())
        data["gitlab"]["register_webhook"] = True
        data["build"] = {"timeout_minutes": 30, "poll_seconds": 0.2}
        spec_path = tmp_path / "spec.yaml"
        spec_path.write_text(yaml.safe_dump(data, sort_keys=False))
        # when
        state = vpc_build(spec_path=str(spec_path), return_state=True)
        push = build_on_push(
            spec_path=str(spec_path),
            project="platform/billing-api",
            ref="refs/heads/main",
            sha="a" * 40,
            event_id="scan-0001",
            return_state=True,
        )
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)
        # then the runs did what they should (so the scan covers real work) ...
        assert state.is_failed() and "apps/web-frontend" in (state.message or "")
        assert push.is_completed()
        db_url = PREFECT_API_DATABASE_CONNECTION_URL.value() or ""
        assert db_url.startswith("sqlite")
        db_dir = Path(db_url.split("///", 1)[1]).parent
        run_id = str(state.state_details.flow_run_id).encode()
        db_bytes = b"".join(p.read_bytes() for p in db_dir.iterdir() if p.is_file())
        assert run_id in db_bytes  # this is the database the runs were recorded in
        places = [db_dir, Path(PREFECT_LOCAL_STORAGE_PATH.value()), Path(PREFECT_HOME.value())]
        assert scanned_files(places) > 3
        # ... and no secret is in the database (runs, parameters, logs, artifacts, events), the
        # persisted task results or anywhere in PREFECT_HOME
        assert scan(places, secrets()) == []
