"""Every API client is built in acrvpc/cloud.py, and honours the sandbox override there."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from acrvpc import cloud
from acrvpc.spec import load_spec
from tests.conftest import EXAMPLE_SPEC, ROOT

SCANNED = ["acrvpc", "flows", "tasks", "deployments", "tests", "bench"]
FACTORY = ROOT / "acrvpc" / "cloud.py"
SDK_CLIENT_MODULES = {"alibabacloud_cr20181201.client", "alibabacloud_ecs20140526.client",
                      "alibabacloud_vpc20160428.client", "alibabacloud_tea_openapi.client"}


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


class TestOneClientFactory:
    def test_no_client_is_built_outside_cloud_py(self):
        offenders = []
        for top in SCANNED:
            for path in sorted((ROOT / top).rglob("*.py")) if (ROOT / top).exists() else []:
                if path == FACTORY:
                    continue
                for line in client_constructions(path.read_text()):
                    offenders.append(f"{path.relative_to(ROOT)}:{line}")
        assert offenders == [], f"build clients with acrvpc.cloud, not here: {offenders}"

    def test_factory_itself_is_seen_by_the_scanner(self):
        assert len(client_constructions(FACTORY.read_text())) >= 4

    @pytest.mark.parametrize("snippet", [
        "from alibabacloud_ecs20140526.client import Client as E\nE(cfg)\n",
        "import alibabacloud_cr20181201.client as c\nc.Client(cfg)\n",
        "import gitlab\ngitlab.Gitlab('http://x')\n",
        "from gitlab import Gitlab\nGitlab('http://x')\n",
    ])
    def test_scanner_catches_each_way_of_building_a_client(self, snippet):
        assert client_constructions(snippet) == [2]

    def test_type_hints_alone_are_fine(self):
        assert client_constructions("from alibabacloud_ecs20140526.client import Client as E\n"
                                    "def f(c: E) -> None: ...\n") == []


class TestEndpointOverride:
    def test_sandbox_url_points_every_client_at_the_sandbox(self, monkeypatch):
        monkeypatch.setenv("ACRVPC_SANDBOX_URL", "http://127.0.0.1:8470/")
        spec = load_spec(EXAMPLE_SPEC)
        clients = cloud.cloud_clients(spec)
        for client in (clients.cr, clients.ecs, clients.vpc):
            assert client._endpoint == "127.0.0.1:8470"
            assert client._protocol == "http"
            assert client._credential.get_credential().access_key_id == cloud.sandbox_defaults.ACCESS_KEY_ID
        gl = cloud.gitlab_client("http://192.168.1.20", "t")
        assert gl.url == "http://127.0.0.1:8470"

    def test_without_sandbox_clients_go_to_regional_endpoints(self, monkeypatch):
        monkeypatch.delenv("ACRVPC_SANDBOX_URL", raising=False)
        key = cloud.AccessKey("LTAIx", "y")
        assert cloud.cr_client("cn-hangzhou", key)._endpoint == "cr.cn-hangzhou.aliyuncs.com"
        assert cloud.ecs_client("cn-shanghai", key)._endpoint == "ecs.cn-shanghai.aliyuncs.com"
        assert cloud.vpc_client("cn-hangzhou", key)._endpoint == "vpc.aliyuncs.com"
        assert cloud.gitlab_client("http://192.168.1.20", "t").url == "http://192.168.1.20"

    def test_no_credentials_means_the_default_chain(self, monkeypatch):
        monkeypatch.delenv("ACRVPC_SANDBOX_URL", raising=False)
        assert cloud.resolve_access_key(None) is None
        client = cloud.ecs_client("cn-hangzhou")
        assert type(client._credential).__module__.startswith("alibabacloud_credentials")

    def test_access_key_repr_hides_the_secret(self):
        assert "s3cr3t" not in repr(cloud.AccessKey("LTAIx", "s3cr3t"))

    def test_gitlab_token_from_environment_wins(self, monkeypatch):
        monkeypatch.setenv("ACRVPC_SANDBOX_URL", "http://127.0.0.1:1")
        monkeypatch.setenv("ACRVPC_GITLAB_TOKEN", "glpat-from-env")
        assert cloud.resolve_gitlab_token("gitlab-token") == "glpat-from-env"
        monkeypatch.delenv("ACRVPC_GITLAB_TOKEN")
        assert cloud.resolve_gitlab_token("gitlab-token") == cloud.sandbox_defaults.GITLAB_TOKEN
