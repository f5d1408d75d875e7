"""Every API client is built in acrvpc/cloud/clients.py, and honours the sandbox override there."""

from __future__ import annotations

import ast
import http.server
import os
import socket
import threading
import time

import pytest

from acrvpc.cloud import clients as cloud
from acrvpc.domain.spec import load_spec
from acrvpc.sandbox import defaults as sandbox_defaults
from tests.conftest import EXAMPLE_SPEC, ROOT

SCANNED = ["acrvpc", "flows", "tasks", "deployments", "tests", "bench"]
FACTORY = ROOT / "acrvpc" / "cloud" / "clients.py"
SDK_CLIENT_MODULES = {
    "alibabacloud_cr20181201.client",
    "alibabacloud_ecs20140526.client",
    "alibabacloud_vpc20160428.client",
    "alibabacloud_tea_openapi.client",
}


def client_constructions(source: str) -> list[int]:
    """Line numbers where ``source`` constructs an Alibaba Cloud SDK client or a python-gitlab client."""
    tree = ast.parse(source)
    ctor_names: set[str] = set()
    module_aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in SDK_CLIENT_MODULES:
            ctor_names |= {a.asname or a.name for a in node.names if a.name == "Client"}
        elif isinstance(node, ast.ImportFrom) and node.module == "gitlab":
            ctor_names |= {a.asname or a.name for a in node.names if a.name == "Gitlab"}
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in SDK_CLIENT_MODULES or a.name == "gitlab":
                    module_aliases[a.asname or a.name] = a.name
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in ctor_names:
            lines.append(node.lineno)
        elif isinstance(func, ast.Attribute) and func.attr in {"Client", "Gitlab"}:
            base = ast.unparse(func.value)
            if base in module_aliases or base in SDK_CLIENT_MODULES or base == "gitlab":
                lines.append(node.lineno)
    return lines


def no_sandbox_and_empty_home(monkeypatch, home):
    """The real cloud, an empty HOME and no ALIBABA_CLOUD_* variable (the ECS metadata service stays disabled)."""
    monkeypatch.delenv("ACRVPC_SANDBOX_URL", raising=False)
    for name in list(os.environ):
        if name.startswith("ALIBABA_CLOUD_") and name != "ALIBABA_CLOUD_ECS_METADATA_DISABLED":
            monkeypatch.delenv(name)
    monkeypatch.setenv("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
    monkeypatch.setenv("HOME", str(home))


class TestOneClientFactory:
    def test_no_client_is_built_outside_cloud_py(self):
        offenders = []
        for top in SCANNED:
            for path in sorted((ROOT / top).rglob("*.py")) if (ROOT / top).exists() else []:
                if path == FACTORY:
                    continue
                for line in client_constructions(path.read_text()):
                    offenders.append(f"{path.relative_to(ROOT)}:{line}")
        assert offenders == [], f"build clients with acrvpc.cloud.clients, not here: {offenders}"

    def test_factory_itself_is_seen_by_the_scanner(self):
        assert len(client_constructions(FACTORY.read_text())) >= 4

    @pytest.mark.parametrize(
        "snippet",
        [
            "from alibabacloud_ecs20140526.client import Client as E\nE(cfg)\n",
            "import alibabacloud_cr20181201.client as c\nc.Client(cfg)\n",
            "import gitlab\ngitlab.Gitlab('http://x')\n",
            "from gitlab import Gitlab\nGitlab('http://x')\n",
        ],
    )
    def test_scanner_catches_each_way_of_building_a_client(self, snippet):
        assert client_constructions(snippet) == [2]

    def test_type_hints_alone_are_fine(self):
        assert (
            client_constructions("from alibabacloud_ecs20140526.client import Client as E\ndef f(c: E) -> None: ...\n")
            == []
        )


class TestEndpointOverride:
    def test_sandbox_url_points_every_client_at_the_sandbox(self, monkeypatch):
        monkeypatch.setenv("ACRVPC_SANDBOX_URL", "http://127.0.0.1:8470/")
        spec = load_spec(EXAMPLE_SPEC)
        clients = cloud.cloud_clients(spec)
        for client in (clients.cr, clients.ecs, clients.vpc):
            assert client._endpoint == "127.0.0.1:8470"
            assert client._protocol == "http"
            assert client._credential.get_credential().access_key_id == sandbox_defaults.ACCESS_KEY_ID
        gl = cloud.gitlab_client("http://192.168.1.20", "t")
        assert gl.url == "http://127.0.0.1:8470"

    def test_without_sandbox_clients_go_to_regional_endpoints(self, monkeypatch):
        monkeypatch.delenv("ACRVPC_SANDBOX_URL", raising=False)
        key = cloud.AccessKey("LTAIx", "y")
        assert cloud.cr_client("cn-hangzhou", key)._endpoint == "cr.cn-hangzhou.aliyuncs.com"
        assert cloud.ecs_client("cn-shanghai", key)._endpoint == "ecs.cn-shanghai.aliyuncs.com"
        assert cloud.vpc_client("cn-hangzhou", key)._endpoint == "vpc.aliyuncs.com"
        assert cloud.gitlab_client("http://192.168.1.20", "t").url == "http://192.168.1.20"

    def test_without_a_block_the_environment_variables_are_used(self, monkeypatch, tmp_path):
        no_sandbox_and_empty_home(monkeypatch, tmp_path)
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIfromenv")
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret")
        assert cloud.resolve_access_key(None) == cloud.AccessKey("LTAIfromenv", "env-secret")
        client = cloud.ecs_client("cn-hangzhou")
        assert client._credential.get_credential().access_key_id == "LTAIfromenv"

    def test_access_key_repr_hides_the_secret(self):
        assert "s3cr3t" not in repr(cloud.AccessKey("LTAIx", "s3cr3t"))

    def test_gitlab_token_from_environment_wins(self, monkeypatch):
        monkeypatch.setenv("ACRVPC_SANDBOX_URL", "http://127.0.0.1:1")
        monkeypatch.setenv("ACRVPC_GITLAB_TOKEN", "glpat-from-env")
        assert cloud.resolve_gitlab_token("gitlab-token") == "glpat-from-env"
        monkeypatch.delenv("ACRVPC_GITLAB_TOKEN")
        assert cloud.resolve_gitlab_token("gitlab-token") == sandbox_defaults.GITLAB_TOKEN


WAYS = [
    "credentials.alibaba_block",
    "ALIBABA_CLOUD_ACCESS_KEY_ID",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "~/.alibabacloud/credentials",
    "RAM role",
]


class TestDefaultChain:
    """Without the sandbox or a block, the standard chain is asked once, before any client exists."""

    def test_nothing_anywhere_is_one_error_naming_every_way_to_give_credentials(self, monkeypatch, tmp_path):
        no_sandbox_and_empty_home(monkeypatch, tmp_path)
        with pytest.raises(cloud.CredentialsError) as caught:
            cloud.cloud_clients(load_spec(EXAMPLE_SPEC))
        message = str(caught.value)
        assert message.startswith("no Alibaba Cloud credentials found")
        assert all(way in message for way in WAYS), message
        assert "ALIBABA_CLOUD_ECS_METADATA_DISABLED=true" in message  # why the RAM role was not asked

    def test_the_per_product_builders_resolve_them_too(self, monkeypatch, tmp_path):
        no_sandbox_and_empty_home(monkeypatch, tmp_path)
        with pytest.raises(cloud.CredentialsError):
            cloud.cr_client("cn-hangzhou")

    def test_half_an_access_key_pair_is_named(self, monkeypatch, tmp_path):
        no_sandbox_and_empty_home(monkeypatch, tmp_path)
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIhalf")
        with pytest.raises(cloud.CredentialsError) as caught:
            cloud.resolve_access_key(None)
        assert "ALIBABA_CLOUD_ACCESS_KEY_ID is set without ALIBABA_CLOUD_ACCESS_KEY_SECRET" in str(caught.value)

    def test_a_credentials_file_is_used(self, monkeypatch, tmp_path):
        no_sandbox_and_empty_home(monkeypatch, tmp_path)
        (tmp_path / ".alibabacloud").mkdir()
        (tmp_path / ".alibabacloud" / "credentials.ini").write_text(
            "[default]\ntype = access_key\naccess_key_id = LTAIfromfile\naccess_key_secret = file-secret\n"
        )
        credential = cloud.resolve_access_key(None)
        assert credential.get_credential().access_key_id == "LTAIfromfile"
        assert cloud.vpc_client("cn-hangzhou", credential)._credential.get_credential().access_key_id == "LTAIfromfile"

    def test_an_unusable_credentials_file_is_named_in_the_error(self, monkeypatch, tmp_path):
        no_sandbox_and_empty_home(monkeypatch, tmp_path)
        broken = tmp_path / "creds.ini"
        broken.write_text("[someone-else]\ntype = access_key\n")
        monkeypatch.setenv("ALIBABA_CLOUD_CREDENTIALS_FILE", str(broken))
        with pytest.raises(cloud.CredentialsError) as caught:
            cloud.resolve_access_key(None)
        assert f"could be used ({broken}: " in str(caught.value)


class _MetadataStub(http.server.BaseHTTPRequestHandler):
    def do_PUT(self):  # http.server's naming
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"token")

    def log_message(self, *args):
        pass


class TestMetadataProbe:
    """The ECS RAM role is legitimate on ECS: the metadata service is probed once, briefly (here on loopback)."""

    def test_a_service_that_answers_is_found(self):
        server = http.server.HTTPServer(("127.0.0.1", 0), _MetadataStub)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            assert cloud.metadata_service_answers("127.0.0.1", server.server_port, timeout_s=2)
        finally:
            server.shutdown()
            server.server_close()

    def test_no_service_is_not_found(self):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        assert not cloud.metadata_service_answers("127.0.0.1", port)

    def test_a_service_that_never_answers_costs_the_timeout_once(self):
        with socket.socket() as silent:  # accepts connections (backlog) and never answers
            silent.bind(("127.0.0.1", 0))
            silent.listen(1)
            started = time.monotonic()
            assert not cloud.metadata_service_answers("127.0.0.1", silent.getsockname()[1], timeout_s=0.3)
            assert time.monotonic() - started < 1.0
