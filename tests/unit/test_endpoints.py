"""The spec's ``endpoints`` setting: which host each Alibaba Cloud client calls (acrvpc/cloud/clients.py).

The host a client would call is read twice: what the SDK computed (the client's ``_endpoint``, the
``host`` of every request it builds) and, end to end, the ``CONNECT`` line a real call sends to a
loopback HTTPS proxy (nothing leaves the machine: the proxy refuses the tunnel).
"""

from __future__ import annotations

import os
import socket
import threading

import pytest
import requests
import yaml
from alibabacloud_cr20181201 import models as cr_models
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_vpc20160428 import models as vpc_models

from acrvpc.cloud import clients as cloud
from acrvpc.domain.spec import Spec, SpecError, parse_spec
from acrvpc.sandbox import defaults as sandbox_defaults
from tests.conftest import EXAMPLE_SPEC

REGION = "cn-hangzhou"


def spec_with(endpoints: object) -> Spec:
    data = yaml.safe_load(EXAMPLE_SPEC.read_text())
    data["endpoints"] = endpoints
    return parse_spec(data)


@pytest.fixture
def real_cloud(monkeypatch):
    """No sandbox; an AccessKey in the environment (never used to reach anything)."""
    monkeypatch.delenv("ACRVPC_SANDBOX_URL", raising=False)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI-test")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "not-a-secret")


def hosts(spec: Spec) -> dict[str, str]:
    clients = cloud.cloud_clients(spec)
    return {"cr": clients.cr._endpoint, "ecs": clients.ecs._endpoint, "vpc": clients.vpc._endpoint}


class _ConnectRecorder:
    """A loopback HTTPS proxy that records each CONNECT target and refuses it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.targets: list[str] = []
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                line = head.split(b"\r\n", 1)[0].decode("latin-1")
                if line.startswith("CONNECT "):
                    self.targets.append(line.split()[1])
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def close(self) -> None:
        self.sock.close()


class TestEndpointSetting:
    def test_default_is_public_and_unchanged(self, real_cloud, spec):
        assert spec.endpoints.network.value == "public"
        assert hosts(spec) == {
            "cr": "cr.cn-hangzhou.aliyuncs.com",
            "ecs": "ecs-cn-hangzhou.aliyuncs.com",
            "vpc": "vpc.aliyuncs.com",
        }

    def test_vpc_makes_every_client_use_its_products_vpc_endpoint(self, real_cloud):
        assert hosts(spec_with("vpc")) == {
            "cr": "cr-vpc.cn-hangzhou.aliyuncs.com",
            "ecs": "ecs-vpc.cn-hangzhou.aliyuncs.com",
            "vpc": "vpc-vpc.cn-hangzhou.aliyuncs.com",
        }

    def test_vpc_in_another_region(self, real_cloud):
        data = yaml.safe_load(EXAMPLE_SPEC.read_text())
        data.update(region="ap-southeast-1", endpoints={"network": "vpc"})
        clients = cloud.cloud_clients(parse_spec(data))
        assert (clients.cr._endpoint, clients.ecs._endpoint, clients.vpc._endpoint) == (
            "cr-vpc.ap-southeast-1.aliyuncs.com",
            "ecs-vpc.ap-southeast-1.aliyuncs.com",
            "vpc-vpc.ap-southeast-1.aliyuncs.com",
        )

    def test_per_product_overrides(self, real_cloud):
        spec = spec_with({"network": "vpc", "cr": "public", "vpc": "ep-123.vpc.cn-hangzhou.privatelink.aliyuncs.com"})
        assert hosts(spec) == {
            "cr": "cr.cn-hangzhou.aliyuncs.com",
            "ecs": "ecs-vpc.cn-hangzhou.aliyuncs.com",
            "vpc": "ep-123.vpc.cn-hangzhou.privatelink.aliyuncs.com",
        }

    def test_a_real_call_goes_to_the_vpc_endpoint(self, real_cloud, monkeypatch):
        proxy = _ConnectRecorder()
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("https_proxy", proxy.url)
        clients = cloud.cloud_clients(spec_with("vpc"))
        calls = [
            lambda: clients.ecs.describe_security_groups(ecs_models.DescribeSecurityGroupsRequest(region_id=REGION)),
            lambda: clients.vpc.describe_vpc_attribute(
                vpc_models.DescribeVpcAttributeRequest(region_id=REGION, vpc_id="vpc-bp1sandbox00000001")
            ),
            lambda: clients.cr.get_instance(cr_models.GetInstanceRequest(instance_id="cri-test")),
        ]
        try:
            for call in calls:
                with pytest.raises(Exception, match="(?i)proxy|tunnel|403"):  # refused by the proxy, nothing else
                    call()
        finally:
            proxy.close()
        assert proxy.targets == [
            "ecs-vpc.cn-hangzhou.aliyuncs.com:443",
            "vpc-vpc.cn-hangzhou.aliyuncs.com:443",
            "cr-vpc.cn-hangzhou.aliyuncs.com:443",
        ]

    def test_an_override_url_is_called_there(self, sandbox, monkeypatch):
        """endpoints.ecs pointing at the loopback sandbox (ACRVPC_SANDBOX_URL unset): the ECS calls land there."""
        url = os.environ["ACRVPC_SANDBOX_URL"]
        monkeypatch.delenv("ACRVPC_SANDBOX_URL")
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", sandbox_defaults.ACCESS_KEY_ID)
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", sandbox_defaults.ACCESS_KEY_SECRET)
        clients = cloud.cloud_clients(spec_with({"network": "vpc", "ecs": url}))
        assert clients.vpc._endpoint == "vpc-vpc.cn-hangzhou.aliyuncs.com"
        body = clients.ecs.describe_security_groups(
            ecs_models.DescribeSecurityGroupsRequest(region_id=REGION, vpc_id="vpc-bp1sandbox00000001")
        ).body
        assert body.security_groups is not None
        calls = requests.get(f"{url}/_sandbox/calls", timeout=5).json()["calls"]
        assert [c["action"] for c in calls] == ["DescribeSecurityGroups"]

    def test_the_sandbox_wins_over_the_spec(self, sandbox):
        netloc = os.environ["ACRVPC_SANDBOX_URL"].split("://", 1)[1]
        clients = cloud.cloud_clients(spec_with({"network": "vpc", "ecs": "ecs.example.internal"}))
        assert {clients.cr._endpoint, clients.ecs._endpoint, clients.vpc._endpoint} == {netloc}
        assert clients.ecs._protocol == "http"


class TestEndpointValidation:
    @pytest.mark.parametrize(
        "value, field, words",
        [
            ("private", "endpoints.network", "write public (the default) or vpc"),
            ({"network": "intranet"}, "endpoints.network", "write public (the default) or vpc"),
            ({"ecs": "ecs vpc"}, "endpoints.ecs", "a host name such as ecs-vpc.cn-hangzhou.aliyuncs.com"),
            ({"cr": "ftp://cr.example"}, "endpoints.cr", "a URL such as https://cr-vpc.cn-hangzhou.aliyuncs.com"),
            ({"vpc": "vpc.example:70000"}, "endpoints.vpc", "vpc-vpc.cn-hangzhou.aliyuncs.com"),
            ({"rds": "vpc"}, "endpoints.rds", "is not a spec field"),
            (5, "endpoints", "write endpoints: vpc, or a section"),
        ],
    )
    def test_bad_values_name_the_field_and_the_fix(self, value, field, words):
        with pytest.raises(SpecError) as err:
            spec_with(value)
        (problem,) = err.value.problems
        assert problem[0] == field and words in problem[1]

    def test_the_shorthand_and_case(self):
        assert spec_with("VPC").endpoints.for_product("ecs") == "vpc"
        assert spec_with({"network": "vpc", "ecs": "HTTP://127.0.0.1:8470/"}).endpoints.ecs == "http://127.0.0.1:8470"

    def test_the_setting_survives_the_deployment_parameter_round_trip(self):
        spec = spec_with({"network": "vpc", "cr": "public"})
        again = parse_spec(spec.model_dump(mode="json"))
        assert again.endpoints == spec.endpoints
