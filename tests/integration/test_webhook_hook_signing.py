"""GitLab's webhook signing token (whsec_): resolving it, and registering hooks with it (sandbox GitLab)."""

from __future__ import annotations

import base64

import pytest

from acrvpc import cloud
from acrvpc.errors import PipelineError
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

    @pytest.mark.parametrize("token", ["plain-secret", "whsec_" + base64.b64encode(b"short").decode(),
                                       "whsec_not base64!!", base64.b64encode(bytes(32)).decode()])
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

    def test_block_is_read(self, prefect_harness, monkeypatch):
        from prefect.blocks.system import Secret

        monkeypatch.delenv(SIGNING_SECRET_ENV, raising=False)
        Secret(value=SIGNING).save("hook-signing-test", overwrite=True)
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
