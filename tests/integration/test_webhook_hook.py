"""Registering the GitLab project webhook against the sandbox GitLab (python-gitlab over HTTP)."""

from __future__ import annotations

import pytest
import yaml

from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import PipelineError
from acrvpc.domain.spec import parse_spec
from tasks.webhook_hook import SECRET_ENV, ensure_project_hooks, resolve_webhook_secret
from tests.conftest import EXAMPLE_SPEC

SECRET = "hook-secret-0001"
URL = "https://hooks.example.com/hooks/gitlab"
BILLING, FRONTEND = 42, 43  # project ids of the default sandbox world


def hook_spec(routes=None, **webhook):
    data = yaml.safe_load(EXAMPLE_SPEC.read_text())
    data["gitlab"]["register_webhook"] = True
    data["webhook"] = {
        "url": URL,
        **webhook,
        "routes": routes
        if routes is not None
        else [{"project": "platform/billing-api", "ref": "main", "repository": "apps/billing-api", "rule": "latest"}],
    }
    return parse_spec(data)


def gitlab_writes(sandbox, since: int = 0) -> list[str]:
    return [c["action"] for c in sandbox.world.calls.list(since) if c["product"] == "gitlab" and c["writes"]]


def hooks_of(sandbox, project_id: int):
    return [h for h in sandbox.world.gitlab.hooks.values() if h.project_id == project_id]


class TestEnsureProjectHooks:
    def test_creates_the_hook_with_push_and_tag_events_and_the_secret(self, sandbox):
        spec = hook_spec()
        outcome = ensure_project_hooks(cloud.gitlab_for(spec), spec, SECRET)
        [hook] = hooks_of(sandbox, BILLING)
        assert hook.url == URL and hook.token == SECRET
        assert hook.attrs["push_events"] is True and hook.attrs["tag_push_events"] is True
        assert hook.attrs["enable_ssl_verification"] is True
        assert outcome.changes == [f"CreateProjectHook platform/billing-api {hook.id} -> {URL}"]
        assert outcome.resources == {"platform/billing-api": f"hook {hook.id}"}
        assert SECRET not in repr(outcome)

    def test_second_run_makes_no_write(self, sandbox):
        spec = hook_spec()
        ensure_project_hooks(cloud.gitlab_for(spec), spec, SECRET)
        seq = len(sandbox.world.calls.list())
        outcome = ensure_project_hooks(cloud.gitlab_for(spec), spec, SECRET)
        assert outcome.changes == [] and gitlab_writes(sandbox, seq) == []
        assert len(hooks_of(sandbox, BILLING)) == 1

    def test_repairs_a_hook_whose_events_differ(self, sandbox):
        spec = hook_spec(enable_ssl_verification=False)
        project = sandbox.world.gitlab.projects[BILLING]
        existing = sandbox.world.gitlab.add_hook(project, URL, "old", {"push_events": True, "tag_push_events": False})
        outcome = ensure_project_hooks(cloud.gitlab_for(spec), spec, SECRET)
        [hook] = hooks_of(sandbox, BILLING)
        assert hook.id == existing.id and hook.attrs["tag_push_events"] is True
        assert hook.attrs["enable_ssl_verification"] is False and hook.token == SECRET
        assert outcome.changes == [
            f"UpdateProjectHook platform/billing-api {hook.id} (tag_push_events false, enable_ssl_verification true)"
        ]
        assert gitlab_writes(sandbox) == ["PUT /projects/:id/hooks/:hook_id"]

    def test_hooks_to_other_urls_are_left_alone(self, sandbox):
        spec = hook_spec()
        project = sandbox.world.gitlab.projects[BILLING]
        other = sandbox.world.gitlab.add_hook(project, "https://ci.example.com/hook", "x", {"push_events": True})
        ensure_project_hooks(cloud.gitlab_for(spec), spec, SECRET)
        hooks = hooks_of(sandbox, BILLING)
        assert sorted(h.url for h in hooks) == ["https://ci.example.com/hook", URL]
        assert other.token == "x" and gitlab_writes(sandbox) == ["POST /projects/:id/hooks"]

    def test_each_routed_project_gets_one_hook(self, sandbox):
        spec = hook_spec(
            routes=[
                {"project": "platform/billing-api", "ref": "main", "repository": "apps/billing-api", "rule": "latest"},
                {
                    "project": "platform/web-frontend",
                    "ref": "main",
                    "repository": "apps/web-frontend",
                    "rule": "latest",
                },
                {
                    "project": "platform/web-frontend",
                    "ref": "refs/tags/release-v*",
                    "repository": "apps/web-frontend",
                    "rule": "release",
                },
            ]
        )
        sandbox.world.gitlab.projects[FRONTEND]["members"]["release-bot"] = 40
        ensure_project_hooks(cloud.gitlab_for(spec), spec, SECRET)
        assert len(hooks_of(sandbox, BILLING)) == 1 and len(hooks_of(sandbox, FRONTEND)) == 1

    def test_developer_role_fails_with_the_fix(self, sandbox):
        spec = hook_spec(
            routes=[
                {"project": "platform/web-frontend", "ref": "main", "repository": "apps/web-frontend", "rule": "latest"}
            ]
        )
        with pytest.raises(PipelineError) as caught:
            ensure_project_hooks(cloud.gitlab_for(spec), spec, SECRET)
        assert caught.value.code == "WEBHOOK_HOOK_FORBIDDEN"
        assert "Maintainer" in caught.value.fix and hooks_of(sandbox, FRONTEND) == []

    def test_unknown_project_fails(self, sandbox):
        spec = hook_spec(
            routes=[{"project": "platform/missing", "ref": "main", "repository": "apps/billing-api", "rule": "latest"}]
        )
        with pytest.raises(PipelineError) as caught:
            ensure_project_hooks(cloud.gitlab_for(spec), spec, SECRET)
        assert caught.value.code == "GITLAB_PROJECT_NOT_FOUND"

    def test_a_url_gitlab_rejects_fails_with_the_fix(self, sandbox):
        # Given a URL GitLab refuses (422; the spec's own check is bypassed with model_copy)
        spec = hook_spec()
        spec = spec.model_copy(update={"webhook": spec.webhook.model_copy(update={"url": "ftp://hooks.example.com/x"})})
        with pytest.raises(PipelineError) as caught:
            ensure_project_hooks(cloud.gitlab_for(spec), spec, SECRET)
        assert caught.value.code == "WEBHOOK_URL_REJECTED" and "Outbound requests" in caught.value.fix
        assert hooks_of(sandbox, BILLING) == []


class TestResolveWebhookSecret:
    def test_environment_wins(self, monkeypatch):
        monkeypatch.setenv(SECRET_ENV, "from-env")
        assert resolve_webhook_secret(hook_spec()) == "from-env"

    def test_secret_block_is_read_when_the_environment_is_empty(self, prefect_harness, monkeypatch, request):
        from prefect.blocks.system import Secret

        monkeypatch.delenv(SECRET_ENV, raising=False)
        Secret(value="from-block").save("hook-secret-test", overwrite=True)
        request.addfinalizer(lambda: Secret.delete("hook-secret-test"))  # the session's server is shared
        assert resolve_webhook_secret(hook_spec(secret_block="hook-secret-test")) == "from-block"

    def test_missing_secret_names_both_places(self, prefect_harness, monkeypatch):
        monkeypatch.delenv(SECRET_ENV, raising=False)
        with pytest.raises(PipelineError) as caught:
            resolve_webhook_secret(hook_spec(secret_block="no-such-block"))
        assert caught.value.code == "WEBHOOK_SECRET_MISSING"
        assert SECRET_ENV in str(caught.value) and "no-such-block" in str(caught.value)


@pytest.mark.e2e
class TestFullPipeline:
    def test_register_webhook_adds_the_webhook_stage(self, prefect_harness, sandbox, tmp_path, monkeypatch):
        from flows.vpc_build import vpc_build

        # Given a spec that asks for the hooks, and Maintainer on both routed projects
        sandbox.world.clock.set_scale(50.0)
        sandbox.world.gitlab.projects[FRONTEND]["members"]["release-bot"] = 40
        data = yaml.safe_load(EXAMPLE_SPEC.read_text())
        data["gitlab"]["register_webhook"] = True
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(data))
        monkeypatch.setenv(SECRET_ENV, SECRET)
        # When the full pipeline runs
        summary = vpc_build(spec_path=str(path), start_builds=False)
        # Then its webhook stage registered one hook per routed project, after the gitlab stage
        stages = [s["stage"] for s in summary["stages"]]
        assert stages.index("webhook") > stages.index("gitlab")
        row = summary["stages"][stages.index("webhook")]
        assert [c.split()[0] for c in row["changes"]] == ["CreateProjectHook", "CreateProjectHook"]
        assert [h.token for h in hooks_of(sandbox, BILLING) + hooks_of(sandbox, FRONTEND)] == [SECRET, SECRET]
