"""GitLab's webhook signing token (whsec_): resolving it, and registering hooks with it (sandbox GitLab)."""

from __future__ import annotations

import base64

import pytest

from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import PipelineError
from tasks.webhook_hook import (
    SECRET_ENV,
    SIGNING_SECRET_ENV,
    check_signing_secret,
    ensure_project_hooks,
    resolve_signing_secret,
    resolve_webhook_secret,
)
from tests.integration.test_webhook_hook import BILLING, URL, gitlab_writes, hook_spec, hooks_of

SIGNING = "whsec_" + base64.b64encode(bytes(range(32))).decode()


class TestCheckSigningSecret:
    def test_whsec_and_32_bytes_is_accepted(self):
        assert check_signing_secret(f"  {SIGNING}\n") == SIGNING

    @pytest.mark.parametrize(
        "token",
        [
            "plain-secret",
            "whsec_" + base64.b64encode(b"short").decode(),
            "whsec_not base64!!",
            base64.b64encode(bytes(32)).decode(),
        ],
    )
    def test_other_forms_are_refused_without_echoing_them(self, token):
        with pytest.raises(PipelineError) as caught:
            check_signing_secret(token)
        assert caught.value.code == "WEBHOOK_SIGNING_SECRET_INVALID"
        assert token not in str(caught.value) and "whsec_" in str(caught.value)


class TestResolveSigningSecret:
    def test_not_configured_is_none(self, monkeypatch):
        monkeypatch.delenv(SIGNING_SECRET_ENV, raising=False)
        assert resolve_signing_secret(hook_spec()) is None

    def test_environment_wins(self, monkeypatch):
        monkeypatch.setenv(SIGNING_SECRET_ENV, SIGNING)
        assert resolve_signing_secret(hook_spec(signing_secret_block="no-such-block")) == SIGNING

    def test_block_is_read(self, prefect_harness, monkeypatch, request):
        from prefect.blocks.system import Secret

        monkeypatch.delenv(SIGNING_SECRET_ENV, raising=False)
        Secret(value=SIGNING).save("hook-signing-test", overwrite=True)
        request.addfinalizer(lambda: Secret.delete("hook-signing-test"))  # the session's server is shared
        assert resolve_signing_secret(hook_spec(signing_secret_block="hook-signing-test")) == SIGNING

    def test_a_named_block_that_is_missing_fails_closed(self, prefect_harness, monkeypatch):
        monkeypatch.delenv(SIGNING_SECRET_ENV, raising=False)
        with pytest.raises(PipelineError) as caught:
            resolve_signing_secret(hook_spec(signing_secret_block="no-such-signing-block"))
        assert caught.value.code == "WEBHOOK_SIGNING_SECRET_MISSING"
        assert "no-such-signing-block" in str(caught.value) and SIGNING_SECRET_ENV in str(caught.value)

    def test_the_token_secret_is_optional_when_deliveries_are_signed(self, prefect_harness, monkeypatch):
        monkeypatch.delenv(SECRET_ENV, raising=False)
        assert resolve_webhook_secret(hook_spec(secret_block="no-such-block"), required=False) is None


class TestRegisterWithSigningToken:
    def test_creates_the_hook_with_both_tokens_and_converges(self, sandbox):
        # Given a spec registering hooks, a secret and a signing token
        spec = hook_spec()
        # When the stage runs twice
        outcome = ensure_project_hooks(cloud.gitlab_for(spec), spec, "hook-secret-0001", SIGNING)
        seq = len(sandbox.world.calls.list())
        again = ensure_project_hooks(cloud.gitlab_for(spec), spec, "hook-secret-0001", SIGNING)
        # Then one hook was created (with the secret), the second run wrote nothing, and no token leaked
        [hook] = hooks_of(sandbox, BILLING)
        assert hook.url == URL and hook.token == "hook-secret-0001"
        assert outcome.changes == [f"CreateProjectHook platform/billing-api {hook.id} -> {URL}"]
        assert again.changes == [] and gitlab_writes(sandbox, seq) == []
        assert SIGNING not in repr(outcome) and SIGNING not in repr(again)

    def test_signing_only_sends_no_secret_token(self, sandbox):
        spec = hook_spec()
        ensure_project_hooks(cloud.gitlab_for(spec), spec, None, SIGNING)
        [hook] = hooks_of(sandbox, BILLING)
        assert hook.token == ""


class TestSigningTokenOnGitLab19:
    """A GitLab that knows signing tokens reports ``signing_token_present`` (never the token)."""

    def test_the_hook_is_created_with_the_signing_token(self, sandbox):
        # given GitLab 19
        sandbox.world.gitlab.version = "19.0.0"
        spec = hook_spec()
        # when
        ensure_project_hooks(cloud.gitlab_for(spec), spec, None, SIGNING)
        # then the sandbox kept the token, and the API only says it is there
        [hook] = hooks_of(sandbox, BILLING)
        assert hook.attrs["_signing_token"] == SIGNING
        listed = cloud.gitlab_for(spec).projects.get(BILLING, lazy=True).hooks.list(get_all=True)
        assert [h.signing_token_present for h in listed] == [True]
        assert SIGNING not in repr([h.attributes for h in listed])

    def test_a_hook_that_lost_its_signing_token_is_repaired(self, sandbox):
        # given GitLab 19 and a converged hook whose signing token someone removed
        sandbox.world.gitlab.version = "19.0.0"
        spec = hook_spec()
        ensure_project_hooks(cloud.gitlab_for(spec), spec, "hook-secret-0001", SIGNING)
        [hook] = hooks_of(sandbox, BILLING)
        hook.attrs.pop("_signing_token")
        seq = len(sandbox.world.calls.list())
        # when
        outcome = ensure_project_hooks(cloud.gitlab_for(spec), spec, "hook-secret-0001", SIGNING)
        # then one update put it back
        assert gitlab_writes(sandbox, seq) == ["PUT /projects/:id/hooks/:hook_id"]
        assert any("signing_token_present false" in change for change in outcome.changes)
        assert hook.attrs["_signing_token"] == SIGNING

    def test_before_gitlab_19_the_field_is_absent_and_nothing_is_repaired(self, sandbox):
        spec = hook_spec()
        ensure_project_hooks(cloud.gitlab_for(spec), spec, "hook-secret-0001", SIGNING)
        seq = len(sandbox.world.calls.list())
        again = ensure_project_hooks(cloud.gitlab_for(spec), spec, "hook-secret-0001", SIGNING)
        assert again.changes == [] and gitlab_writes(sandbox, seq) == []
