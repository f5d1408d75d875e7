"""acrvpc.monitor and the build summary renderers: pure logic."""

from __future__ import annotations

import pytest

from acrvpc import monitor
from acrvpc.domain.run_summary import (
    build_markdown,
    build_rows,
    done_lines,
    record_clock_label,
    run_markdown,
    short_digest,
)
from flows.run_names import push_label, run_name, spec_name_of, trigger_of


def build(repository: str, status: str, **extra) -> dict:
    return {
        "repository": repository,
        "build_rule_id": "crbr-1",
        "ref": "main",
        "image": f"{repository}:latest",
        "digest": "sha256:" + "a" * 64 if status == "SUCCESS" else "",
        "status": status,
        "seconds": 12.34,
        "build_record_id": f"rec-{repository.split('/')[1]}",
        "log_lines": 3,
        "log_tail": [f"BUILD line {i}" for i in range(40)],
        "notes": [],
        **extra,
    }


class TestSlug:
    @pytest.mark.parametrize(
        "parts, expected",
        [
            (("build", "apps", "billing-api", "latest"), "build-apps-billing-api-latest"),
            (("build", "Apps", "x_y", "release-v1.2"), "build-apps-x-y-release-v1-2"),
            (("", "--", ""), "acrvpc"),
        ],
    )
    def test_keys_are_lowercase_letters_digits_and_dashes(self, parts, expected):
        assert monitor.slug(*parts) == expected


class TestEstimateProgress:
    @pytest.mark.parametrize(
        "status, stage, expected",
        [
            ("PENDING", None, 5.0),
            ("BUILDING", "GIT_CLONE", 10.0),
            ("building", "build", 30.0),
            ("BUILDING", "PUSH", 90.0),
            ("SUCCESS", "PUSH", 100.0),
            ("FAILED", "BUILD", 100.0),
            ("TIMEOUT", None, 100.0),
            ("BUILDING", "SCAN", 0.0),
        ],
    )
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
        assert "| `apps/a:latest` | main | `sha256:aaaaaaaaaaaa…` | 12.3 | SUCCESS |" in md
        assert "| `apps/b:latest` | main | - | 12.3 | **FAILED** |" in md
        assert "a" * 13 not in md  # the full digest is in the table artifact, not in the markdown
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
        assert row == {
            "image": "apps/b:latest",
            "status": "FAILED",
            "wall_seconds": 12.3,
            "digest": "-",
            "ref": "main",
            "repository": "apps/b",
            "rule": "crbr-1",
            "build_record": "rec-b",
            "record_seconds": 12.3,
            "log_lines": 3,
        }

    def test_wall_seconds_first_and_the_records_own_clock_labelled_where_it_differs(self):
        md = build_markdown(
            "demo",
            [build("apps/a", "SUCCESS", seconds=19.0, wall_seconds=3.2)],
            record_clock=record_clock_label(sandbox=True),
        )
        assert "| wall s | record s¹ | status |" in md and "| 3.2 | 19.0 | SUCCESS |" in md
        assert "¹ the build record's own StartTime/EndTime, in sandbox time" in md
        same = build_markdown("demo", [build("apps/a", "SUCCESS", seconds=3.0, wall_seconds=3.4)])
        assert "record s" not in same and "| 3.4 | SUCCESS |" in same

    @pytest.mark.parametrize(
        "digest, shown",
        [
            ("sha256:" + "0123456789abcdef" * 4, "sha256:0123456789ab…"),
            ("sha256:abc", "sha256:abc"),
            ("", "-"),
        ],
    )
    def test_short_digest(self, digest, shown):
        assert short_digest(digest) == shown


SUMMARY = {
    "spec": "demo-build",
    "flow_run_id": "run-1",
    "builds": [],
    "stages": [
        {"stage": "preflight", "result": "completed", "resources": {}, "changes": [], "seconds": 0.41},
        {
            "stage": "link",
            "result": "completed",
            "resources": {"security_group": "sg-1"},
            "changes": ["CreateSecurityGroup sg-1", "AuthorizeSecurityGroupEgress sg-1"],
            "seconds": 1.2,
        },
    ],
}


class TestRunSummary:
    def test_the_stage_table_with_links_to_each_stages_artifacts(self):
        md = run_markdown(SUMMARY, {"preflight": [("preflight", "../../artifacts/artifact/a1")]})
        assert md.startswith("# demo-build: completed")
        assert "| preflight | completed | - | 0 | 0.4 | [preflight](../../artifacts/artifact/a1) |" in md
        assert "| link | completed | security_group: `sg-1` | 2 | 1.2 | - |" in md

    def test_a_failure_leads_with_the_stage_the_code_and_the_fix(self):
        failure = {
            "stage": "binding apps/web-frontend",
            "code": "Forbidden.RAM",
            "message": "CreateRepository denied",
            "fix": "grant the RAM user the action",
        }
        md = run_markdown(SUMMARY, {}, failure)
        assert md.startswith(
            "# demo-build: failed\n\n**Failed at binding apps/web-frontend:** `Forbidden.RAM` CreateRepository denied"
        )
        assert "**Fix:** grant the RAM user the action" in md
        assert "| binding | **failed** |" in md
        last = done_lines(SUMMARY, failure)
        assert last[0] == "failed at binding apps/web-frontend: [Forbidden.RAM] CreateRepository denied"
        assert last[1] == "fix: grant the RAM user the action" and "demo-build-run" in last[-1]

    def test_the_last_lines_count_the_writes_by_action(self):
        assert done_lines(SUMMARY)[0] == (
            "done: 2 stage(s), 2 write(s): CreateSecurityGroup, AuthorizeSecurityGroupEgress; no build"
        )

    @pytest.mark.parametrize(
        "key, stage",
        [
            ("preflight-demo-build", ("preflight", "preflight")),
            ("demo-build-builds", ("build", "summary")),
            ("demo-build-build-table", ("build", "table")),
            ("drift-demo-build", ("link", "drift")),
            ("build-apps-billing-api-latest", ("build", "progress apps-billing-api-latest")),
            ("console-account-demo-build", ("gitlab", "console-account")),
        ],
    )
    def test_artifact_keys_map_to_their_stage(self, key, stage):
        assert monitor.stage_of_artifact(key, "demo-build") == stage


class TestRunNames:
    def test_the_spec_name_from_a_dict_parameter_or_the_spec_file(self, tmp_path):
        path = tmp_path / "s.yaml"
        path.write_text("name: from-file\nregion: cn-hangzhou\n")
        assert spec_name_of({"spec": {"name": "from-dict"}}) == "from-dict"
        assert spec_name_of({"spec_path": str(path)}) == "from-file"
        assert spec_name_of({"spec_path": str(tmp_path / "missing.yaml")}) == ""
        assert run_name("vpc-build", {"spec_path": str(tmp_path / "missing.yaml")}) == "vpc-build · manual"

    @pytest.mark.parametrize(
        "facts, trigger",
        [
            ({}, "manual"),
            ({"auto_scheduled": True, "deployment_name": "nightly"}, "nightly"),
            ({"auto_scheduled": True, "deployment_name": "demo-build"}, "scheduled"),  # acrvpc deploy's <flow>/<spec>
            ({"state_name": "AwaitingRetry", "run_count": 1}, "retry"),
            ({"state_name": "Resuming", "run_count": 1}, "manual"),  # a resumed pause keeps its name
        ],
    )
    def test_the_trigger(self, facts, trigger):
        assert trigger_of({"spec": {"name": "demo-build"}}, spec_name="demo-build", **facts) == trigger

    def test_a_push(self):
        params = {
            "spec": {"name": "demo-build"},
            "project": "platform/billing-api",
            "ref": "refs/heads/main",
            "sha": "a1b2c3d4e5f6",
        }
        assert (
            run_name("build-on-push", params, tags=["gitlab-webhook"])
            == "demo-build · push platform/billing-api@main a1b2c3d"
        )
        assert push_label("p/x", "refs/tags/v1.0") == "push p/x@v1.0"


class TestFailureOf:
    def test_an_sdk_error_gets_its_code_and_the_known_fix(self):
        class TeaLike(Exception):
            code, message, detail = "Forbidden.RAM", "User not authorized to operate on the specified resource.", None

        failure = monitor.failure_of(TeaLike("x"), stage="binding")
        assert failure == {
            "stage": "binding",
            "code": "Forbidden.RAM",
            "message": "User not authorized to operate on the specified resource.",
            "fix": "grant the RAM user the action named in the error (see `acrvpc policy`), then rerun",
        }

    def test_a_pipeline_error_keeps_its_fix_once(self):
        from acrvpc.cloud.errors import PipelineError

        failure = monitor.failure_of(PipelineError("nothing routed", code="WEBHOOK_NO_ROUTE", fix="add a route"))
        assert (failure["code"], failure["message"], failure["fix"]) == (
            "WEBHOOK_NO_ROUTE",
            "nothing routed",
            "add a route",
        )
