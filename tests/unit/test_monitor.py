"""acrvpc.monitor and the build summary renderers: pure logic."""

from __future__ import annotations

import pytest

from acrvpc import monitor
from acrvpc.report import build_markdown, build_rows


def build(repository: str, status: str, **extra) -> dict:
    return {"repository": repository, "build_rule_id": "crbr-1", "ref": "main", "image": f"{repository}:latest",
            "digest": "sha256:" + "a" * 64 if status == "SUCCESS" else "", "status": status, "seconds": 12.34,
            "build_record_id": f"rec-{repository.split('/')[1]}", "log_lines": 3,
            "log_tail": [f"BUILD line {i}" for i in range(40)], "notes": [], **extra}


class TestSlug:
    @pytest.mark.parametrize("parts, expected", [
        (("build", "apps", "billing-api", "latest"), "build-apps-billing-api-latest"),
        (("build", "Apps", "x_y", "release-v1.2"), "build-apps-x-y-release-v1-2"),
        (("", "--", ""), "acrvpc"),
    ])
    def test_keys_are_lowercase_letters_digits_and_dashes(self, parts, expected):
        assert monitor.slug(*parts) == expected


class TestEstimateProgress:
    @pytest.mark.parametrize("status, stage, expected", [
        ("PENDING", None, 5.0), ("BUILDING", "GIT_CLONE", 10.0), ("building", "build", 30.0),
        ("BUILDING", "PUSH", 90.0), ("SUCCESS", "PUSH", 100.0), ("FAILED", "BUILD", 100.0),
        ("TIMEOUT", None, 100.0), ("BUILDING", "SCAN", 0.0),
    ])
    def test_from_status_and_stage(self, status, stage, expected):
        assert monitor.estimate_progress(status, stage) == expected


class TestListeners:
    def test_a_listener_gets_notices_only_while_listening_and_a_failing_one_is_contained(self):
        got = []

        def broken(notice):
            raise RuntimeError("display broke")

        with monitor.listening(got.append), monitor.listening(broken):
            monitor.publish("stage.started", stage="link")
        monitor.publish("stage.started", stage="eni")
        assert got == [monitor.Notice("stage.started", {"stage": "link"})]

    def test_emit_outside_a_run_sends_nothing(self):
        assert monitor.emit(monitor.BUILD_STARTED, {"prefect.resource.id": "acrvpc.repository.x"}) is False


class TestBuildMarkdown:
    def test_a_row_per_build_and_the_failed_builds_last_30_lines(self):
        md = build_markdown("demo", [build("apps/a", "SUCCESS"), build("apps/b", "FAILED", notes=["why"])], "run-1")
        assert "Flow run `run-1`: 1 of 2 build(s) succeeded." in md
        assert f"| apps/a | crbr-1 | main | `apps/a:latest` | sha256:{'a' * 64} | 12.3 | SUCCESS |" in md
        assert "| apps/b | crbr-1 | main | `apps/b:latest` | - | 12.3 | **FAILED** |" in md
        assert "## apps/b: FAILED (build record `rec-b`)" in md and "- why" in md
        tail = md.split("## apps/b")[1]
        assert "BUILD line 9\n" not in tail and "BUILD line 10\n" in tail and "BUILD line 39\n" in tail
        assert "## apps/a" not in md  # no log for a build that succeeded

    def test_pipes_in_values_do_not_break_the_table(self):
        md = build_markdown("demo", [build("apps/a", "SUCCESS", ref="feature|x")])
        assert "feature\\|x" in md

    def test_no_builds(self):
        assert "No build was started." in build_markdown("demo", [])

    def test_rows_share_the_json_keys(self):
        [row] = build_rows([build("apps/b", "FAILED")])
        assert row == {"repository": "apps/b", "rule": "crbr-1", "ref": "main", "image": "apps/b:latest",
                       "digest": "-", "status": "FAILED", "seconds": 12.3, "build_record": "rec-b", "log_lines": 3}
