"""The credentials blocks (acrvpc/blocks.py) on a real Prefect server and against the sandbox.

Alibaba Cloud Credentials: each option builds the credential it says, get_client() builds signed clients
through the project's factory, an empty block is the default chain, a half-filled block is an error naming
the field and the fix, secrets never show, and blocks saved with the old class (AccessKey fields only)
still load. GitLab: the GitLab Credentials block's client, and the spec's gitlab.token_block naming either
it or the old Secret block. Both types reach the server's catalogue (entry point, `prefect block register`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path
from typing import ClassVar

import pytest
from alibabacloud_ecs20140526 import models as ecs_models
from pydantic import ValidationError
from Tea.exceptions import TeaException

from acrvpc.blocks import AlibabaCloudCredentials, GitLabCredentials
from acrvpc.cloud import clients as cloud
from acrvpc.sandbox import defaults as sandbox_defaults
from tests.conftest import ROOT
from tests.e2e.prefect_server import PREFECT

REGION = "cn-hangzhou"
OLD_BLOCK = textwrap.dedent("""
    # acrvpc/blocks.py as it was before the CredentialsBlock (commit 5393ca8), saved from its own process
    import sys
    from prefect.blocks.core import Block
    from pydantic import Field, SecretStr

    class AlibabaCloudCredentials(Block):
        _block_type_name = "Alibaba Cloud Credentials"
        _block_type_slug = "alibaba-cloud-credentials"
        _description = "AccessKey pair used by acr-vpc-build to call Container Registry, ECS and VPC."
        access_key_id: str = Field(title="AccessKey ID", description="The RAM user's AccessKey id (LTAI...).")
        access_key_secret: SecretStr = Field(title="AccessKey secret", description="The AccessKey secret.")
        security_token: SecretStr | None = Field(default=None, title="STS security token",
                                                 description="Only for temporary (STS) credentials.")

    AlibabaCloudCredentials(access_key_id=sys.argv[2], access_key_secret=sys.argv[3]).save(sys.argv[1], overwrite=True)
""")


def api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


def api(method: str, path: str, body: dict | None = None):
    request = urllib.request.Request(
        f"{api_url()}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        text = answer.read()
    return json.loads(text) if text else None


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACRVPC_")}
    env["PREFECT_API_URL"] = api_url()
    return env


def sandbox_block(**fields) -> AlibabaCloudCredentials:
    return AlibabaCloudCredentials(
        access_key_id=sandbox_defaults.ACCESS_KEY_ID, access_key_secret=sandbox_defaults.ACCESS_KEY_SECRET, **fields
    )


def describe_groups(ecs) -> list:
    answer = ecs.describe_security_groups(ecs_models.DescribeSecurityGroupsRequest(region_id=REGION))
    return answer.body.security_groups.security_group


@pytest.fixture
def no_chain(monkeypatch, tmp_path):
    """No ALIBABA_CLOUD_* credentials anywhere (an empty HOME; the metadata service stays off)."""
    for name in list(os.environ):
        if name.startswith("ALIBABA_CLOUD_") and name != "ALIBABA_CLOUD_ECS_METADATA_DISABLED":
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))


class TestAlibabaGetClient:
    def test_an_accesskey_block_signs_calls_the_sandbox_checks(self, sandbox):
        # given a block holding the sandbox's AccessKey
        ecs = sandbox_block().get_client("ecs", region=REGION)
        # then the sandbox verifies the signature and answers
        assert describe_groups(ecs)

    def test_a_wrong_secret_is_refused_by_the_signature_check(self, sandbox):
        ecs = AlibabaCloudCredentials(
            access_key_id=sandbox_defaults.ACCESS_KEY_ID, access_key_secret="not-the-secret"
        ).get_client("ecs", region=REGION)
        with pytest.raises(TeaException) as caught:
            describe_groups(ecs)
        assert caught.value.code == "SignatureDoesNotMatch"

    def test_each_product_and_the_blocks_region(self, sandbox):
        block = sandbox_block(region_id=REGION)
        assert [type(block.get_client(p)).__module__ for p in ("cr", "vpc")] == [
            "alibabacloud_cr20181201.client",
            "alibabacloud_vpc20160428.client",
        ]
        with pytest.raises(ValueError, match="use one of cr, ecs, vpc"):
            block.get_client("oss")
        with pytest.raises(ValueError, match="region_id"):
            sandbox_block().get_client("ecs")

    def test_an_empty_block_is_the_default_chain_reading_the_environment(self, sandbox, no_chain, monkeypatch):
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", sandbox_defaults.ACCESS_KEY_ID)
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", sandbox_defaults.ACCESS_KEY_SECRET)
        block = AlibabaCloudCredentials()
        assert block.option == "default_chain"
        assert block.credential() == cloud.AccessKey(sandbox_defaults.ACCESS_KEY_ID, sandbox_defaults.ACCESS_KEY_SECRET)
        assert describe_groups(block.get_client("ecs", region=REGION))
        # and the chain's credentials are the ones that sign: a wrong one in the environment is refused
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "wrong")
        with pytest.raises(TeaException, match="SignatureDoesNotMatch"):
            describe_groups(block.get_client("ecs", region=REGION))

    def test_an_empty_block_without_any_credentials_names_the_ways(self, no_chain):
        with pytest.raises(cloud.CredentialsError, match="ALIBABA_CLOUD_ACCESS_KEY_ID"):
            AlibabaCloudCredentials().credential()


class TestAlibabaOptions:
    def test_sts_token(self):
        block = sandbox_block(security_token="CAIS-token")
        assert block.option == "sts" and block.credential().security_token == "CAIS-token"

    def test_ram_role_is_assumed_with_the_pair(self):
        from alibabacloud_credentials.provider import RamRoleArnCredentialsProvider

        block = sandbox_block(
            role_arn="acs:ram::1234567890:role/acr-builder",
            role_session_name="nightly",
            role_session_duration_seconds=1800,
            sts_endpoint="sts-vpc.cn-hangzhou.aliyuncs.com",
        )
        provider = block.credential().cloud_credential.provider  # built, not asked: STS is called at the first use
        assert block.option == "ram_role" and isinstance(provider, RamRoleArnCredentialsProvider)
        assert (
            provider._role_arn,
            provider._role_session_name,
            provider._duration_seconds,
            provider._sts_endpoint,
        ) == ("acs:ram::1234567890:role/acr-builder", "nightly", 1800, "sts-vpc.cn-hangzhou.aliyuncs.com")
        assert provider._credentials_provider.get_credentials().get_access_key_id() == sandbox_defaults.ACCESS_KEY_ID

    def test_oidc_rrsa(self, tmp_path):
        from alibabacloud_credentials.provider import OIDCRoleArnCredentialsProvider

        token = tmp_path / "token"
        fields = {
            "role_arn": "acs:ram::1234567890:role/acr-builder",
            "oidc_provider_arn": "acs:ram::1234567890:oidc-provider/ack-rrsa",
            "oidc_token_file_path": str(token),
        }
        with pytest.raises(cloud.CredentialsError, match="oidc_token_file_path: no file"):
            AlibabaCloudCredentials(**fields).credential()
        token.write_text("eyJ...")
        provider = AlibabaCloudCredentials(**fields).credential().cloud_credential.provider
        assert isinstance(provider, OIDCRoleArnCredentialsProvider)
        assert (provider._role_arn, provider._oidc_token_file_path) == (fields["role_arn"], str(token))

    @pytest.mark.parametrize(
        ("fields", "named"),
        [
            ({"access_key_id": "LTAIx"}, "access_key_id is set without access_key_secret: fill access_key_secret"),
            (
                {"access_key_secret": "s3cr3t-value"},
                "access_key_secret is set without access_key_id: fill access_key_id",
            ),
            ({"security_token": "s3cr3t-value"}, "security_token is set without access_key_id and access_key_secret"),
            ({"role_arn": "acs:ram::1:role/r"}, "role_arn is set but nothing can assume it"),
            (
                {"oidc_provider_arn": "acs:ram::1:oidc-provider/p", "role_arn": "acs:ram::1:role/r"},
                "fill oidc_token_file_path",
            ),
            ({"oidc_provider_arn": "acs:ram::1:oidc-provider/p", "oidc_token_file_path": "/t"}, "without role_arn"),
            ({"role_session_name": "nightly"}, "role_session_name only applies when a role is assumed"),
            (
                {"access_key_id": "a", "access_key_secret": "s3cr3t-value", "role_arn": "arn:aws:iam::1:role/r"},
                "role_arn: 'arn:aws:iam::1:role/r' is not a RAM ARN",
            ),
            (
                {
                    "access_key_id": "a",
                    "access_key_secret": "s3cr3t-value",
                    "role_arn": "acs:ram::1:role/r",
                    "role_session_duration_seconds": 60,
                },
                "role_session_duration_seconds: 60 is out of range",
            ),
        ],
    )
    def test_a_half_filled_option_names_the_field_and_the_fix(self, fields, named):
        with pytest.raises(ValidationError) as caught:
            AlibabaCloudCredentials(**fields)
        assert named in str(caught.value)
        assert "s3cr3t-value" not in str(caught.value)  # pydantic would print the input, secrets included

    def test_blank_fields_from_the_ui_count_as_empty(self):
        assert AlibabaCloudCredentials(access_key_id=" ", access_key_secret="", role_arn="").option == "default_chain"

    def test_secrets_never_in_repr(self):
        block = sandbox_block(security_token="CAIS-token")
        shown = repr(block) + str(block) + repr(block.credential())
        assert sandbox_defaults.ACCESS_KEY_SECRET not in shown and "CAIS-token" not in shown


@pytest.mark.usefixtures("prefect_harness")
class TestOnThePrefectServer:
    def test_saved_and_loaded_and_used_by_the_spec(self, sandbox, request):
        sandbox_block(region_id=REGION).save("blocks-test-acr", overwrite=True)
        request.addfinalizer(lambda: AlibabaCloudCredentials.delete("blocks-test-acr"))
        loaded = AlibabaCloudCredentials.load("blocks-test-acr")
        assert describe_groups(loaded.get_client("ecs"))
        monkey = pytest.MonkeyPatch()
        request.addfinalizer(monkey.undo)
        monkey.delenv("ACRVPC_SANDBOX_URL")  # the pipeline's resolution reads the block (the sandbox would win)
        assert cloud.resolve_access_key("blocks-test-acr") == cloud.AccessKey(
            sandbox_defaults.ACCESS_KEY_ID, sandbox_defaults.ACCESS_KEY_SECRET
        )

    def test_a_process_that_never_imported_the_blocks_loads_them_by_slug(self, request):
        # a flow run's process: acrvpc.cloud.clients finds the class through the prefect.collections entry point
        sandbox_block().save("blocks-test-fresh", overwrite=True)
        request.addfinalizer(lambda: AlibabaCloudCredentials.delete("blocks-test-fresh"))
        script = textwrap.dedent("""
            import sys
            from acrvpc.cloud import clients
            assert "acrvpc.blocks" not in sys.modules
            key = clients.resolve_access_key("blocks-test-fresh")
            print(type(key).__name__, key.access_key_id, "acrvpc.blocks" in sys.modules)
        """)
        done = subprocess.run(
            [sys.executable, "-c", script],
            check=False,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.split() == ["AccessKey", sandbox_defaults.ACCESS_KEY_ID, "True"]
        assert sandbox_defaults.ACCESS_KEY_SECRET not in done.stdout + done.stderr

    def test_a_block_saved_by_the_old_class_still_loads(self, sandbox, request):
        # given a block saved by the old class (a Block with AccessKey fields only), from a process of its own
        subprocess.run(
            [
                sys.executable,
                "-c",
                OLD_BLOCK,
                "blocks-test-legacy",
                sandbox_defaults.ACCESS_KEY_ID,
                sandbox_defaults.ACCESS_KEY_SECRET,
            ],
            env=child_env(),
            check=True,
            timeout=120,
            capture_output=True,
        )
        request.addfinalizer(lambda: AlibabaCloudCredentials.delete("blocks-test-legacy"))
        document = api(
            "POST", "/block_documents/filter", {"block_documents": {"name": {"any_": ["blocks-test-legacy"]}}}
        )
        assert set(document[0]["block_schema"]["fields"]["properties"]) == {
            "access_key_id",
            "access_key_secret",
            "security_token",
        }  # the old schema
        # then the new class loads it, by class and by slug, and its client signs
        loaded = AlibabaCloudCredentials.load("blocks-test-legacy")
        assert loaded.option == "access_key"
        assert describe_groups(loaded.get_client("ecs", region=REGION))
        from prefect.blocks.core import Block

        by_slug = Block.load("alibaba-cloud-credentials/blocks-test-legacy")
        assert isinstance(by_slug, AlibabaCloudCredentials) and by_slug.access_key_id == sandbox_defaults.ACCESS_KEY_ID

    def test_a_misfilled_saved_block_names_the_field(self, request, monkeypatch):
        # a block half-filled in the UI (no validation there): saved here without validation
        AlibabaCloudCredentials.model_construct(access_key_id="LTAIhalf").save("blocks-test-half", overwrite=True)
        request.addfinalizer(lambda: AlibabaCloudCredentials.delete("blocks-test-half"))
        with pytest.raises(cloud.CredentialsError) as caught:
            cloud.resolve_access_key("blocks-test-half")
        assert "credentials.alibaba_block" in str(caught.value)
        assert "access_key_id is set without access_key_secret: fill access_key_secret" in str(caught.value)


@pytest.mark.usefixtures("prefect_harness")
class TestGitLab:
    def test_get_client_calls_the_sandboxs_gitlab_with_the_token(self, sandbox):
        gl = GitLabCredentials(token=sandbox_defaults.GITLAB_TOKEN, url="http://gitlab.invalid").get_client()
        gl.auth()
        assert gl.user.username == "release-bot"
        assert gl.retry_transient_errors is not None and gl.url == sandbox.url  # the factory's client

    def test_a_wrong_token_is_refused(self, sandbox):
        import gitlab

        gl = GitLabCredentials(token="glpat-not-a-token", url="http://gitlab.invalid").get_client()
        with pytest.raises(gitlab.GitlabAuthenticationError):
            gl.auth()

    def test_ca_bundle_pem_or_path(self, tmp_path):
        pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
        gl = GitLabCredentials(token="glpat-x", url="https://gitlab.internal", ca_bundle=pem).get_client()
        assert Path(gl.ssl_verify).read_text().strip() == pem
        (tmp_path / "ca.pem").write_text(pem)
        assert GitLabCredentials(token="glpat-x", ca_bundle=str(tmp_path / "ca.pem")).get_client(
            "https://gitlab.internal"
        ).ssl_verify == str(tmp_path / "ca.pem")
        with pytest.raises(cloud.CredentialsError, match="ca_bundle: no file"):
            GitLabCredentials(
                token="glpat-x", url="https://g.internal", ca_bundle=str(tmp_path / "no.pem")
            ).get_client()
        with pytest.raises(ValidationError, match="ca_bundle: the PEM text is cut short"):
            GitLabCredentials(token="glpat-x", ca_bundle="-----BEGIN CERTIFICATE-----\nMII")

    def test_misfilled(self):
        with pytest.raises(ValidationError) as caught:
            GitLabCredentials(token="glpat-s3cr3t", url="gitlab.internal")
        assert "url: 'gitlab.internal' is not a URL" in str(caught.value) and "s3cr3t" not in str(caught.value)
        with pytest.raises(ValidationError, match="token is empty"):
            GitLabCredentials(token="  ")
        assert "glpat-s3cr3t" not in repr(GitLabCredentials(token="glpat-s3cr3t"))

    def test_token_block_names_a_secret_or_a_gitlab_block_and_the_gitlab_block_wins(self, request):
        from prefect.blocks.system import Secret

        assert "ACRVPC_GITLAB_TOKEN" not in os.environ and "ACRVPC_SANDBOX_URL" not in os.environ
        # the old way: a Secret block
        Secret(value="glpat-from-secret").save("blocks-test-gitlab", overwrite=True)
        request.addfinalizer(lambda: Secret.delete("blocks-test-gitlab"))
        assert cloud.resolve_gitlab("blocks-test-gitlab") == cloud.GitLabAuth("glpat-from-secret")
        # a GitLab Credentials block of the same name wins, with its CA bundle
        GitLabCredentials(token="glpat-from-block", ca_bundle="/etc/ssl/corp.pem").save(
            "blocks-test-gitlab", overwrite=True
        )
        request.addfinalizer(lambda: GitLabCredentials.delete("blocks-test-gitlab"))
        assert cloud.resolve_gitlab("blocks-test-gitlab") == cloud.GitLabAuth("glpat-from-block", "/etc/ssl/corp.pem")
        assert cloud.resolve_gitlab_token("blocks-test-gitlab") == "glpat-from-block"
        # neither: the message names both kinds and the environment variable
        with pytest.raises(cloud.CredentialsError) as caught:
            cloud.resolve_gitlab("blocks-test-none")
        assert all(s in str(caught.value) for s in (cloud.GITLAB_BLOCK_TYPE, "Secret", "ACRVPC_GITLAB_TOKEN"))

    def test_a_misfilled_gitlab_block_names_the_field(self, request):
        GitLabCredentials.model_construct(token=None, url="https://gitlab.internal").save(
            "blocks-test-gl-half", overwrite=True
        )
        request.addfinalizer(lambda: GitLabCredentials.delete("blocks-test-gl-half"))
        with pytest.raises(
            cloud.CredentialsError,
            match="gitlab.token_block: the saved acr-vpc-build-gitlab-credentials block .*misfilled: token",
        ):
            cloud.resolve_gitlab("blocks-test-gl-half")


@pytest.mark.usefixtures("prefect_harness")
class TestCatalogue:
    SLUGS: ClassVar[dict[str, str]] = {
        "alibaba-cloud-credentials": "Alibaba Cloud Credentials",
        "acr-vpc-build-gitlab-credentials": "ACR VPC Build GitLab Credentials",
    }

    def test_the_factory_loads_the_blocks_by_these_slugs(self):
        assert AlibabaCloudCredentials.get_block_type_slug() == cloud.ALIBABA_BLOCK_TYPE
        assert GitLabCredentials.get_block_type_slug() == cloud.GITLAB_BLOCK_TYPE

    def test_the_entry_point_names_the_blocks_module(self):
        from importlib.metadata import entry_points

        assert "acrvpc.blocks" in {ep.value for ep in entry_points(group="prefect.collections")}

    def test_a_new_server_lists_both_types_without_any_step(self, tmp_path):
        # a server started in this venv imports the prefect.collections entry points and registers their blocks
        script = textwrap.dedent(f"""
            import json, urllib.request
            from prefect.testing.utilities import prefect_test_harness
            from prefect.settings import PREFECT_API_URL
            with prefect_test_harness(server_startup_timeout=90):
                for slug in {list(self.SLUGS)!r}:
                    with urllib.request.urlopen(f"{{PREFECT_API_URL.value()}}/block_types/slug/{{slug}}") as answer:
                        print(json.loads(answer.read())["name"])
        """)
        env = {k: v for k, v in child_env().items() if k != "PREFECT_API_URL"}
        env["PREFECT_HOME"] = str(tmp_path)
        done = subprocess.run(
            [sys.executable, "-c", script],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
        assert done.stdout.split() and set(self.SLUGS.values()) == set(done.stdout.strip().splitlines())

    def test_prefect_block_register_registers_both_types(self):
        # given the types gone from the server (a server started before the entry point was installed)
        for slug in self.SLUGS:
            block_type = api("GET", f"/block_types/slug/{slug}")
            api("DELETE", f"/block_types/{block_type['id']}")
        # when the README's command runs
        done = subprocess.run(
            [*PREFECT, "block", "register", "-m", "acrvpc.blocks"],
            check=False,
            env=child_env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        # then the server's catalogue has both, with their fields
        for slug, name in self.SLUGS.items():
            block_type = api("GET", f"/block_types/slug/{slug}")
            assert block_type["name"] == name and name in done.stdout
            assert api(
                "POST", "/block_schemas/filter", {"block_schemas": {"block_type_id": {"any_": [block_type["id"]]}}}
            )
        fields = api(
            "POST",
            "/block_schemas/filter",
            {
                "block_schemas": {
                    "block_type_id": {"any_": [api("GET", "/block_types/slug/alibaba-cloud-credentials")["id"]]}
                }
            },
        )[0]["fields"]["properties"]
        assert {"role_arn", "oidc_provider_arn", "oidc_token_file_path", "security_token"} <= set(fields)
