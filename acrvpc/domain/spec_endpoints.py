"""The spec's ``endpoints`` section: which endpoint each Alibaba Cloud API client calls.

Re-exported by :mod:`acrvpc.domain.spec` (import from there); :mod:`acrvpc.cloud.clients` turns it into hosts.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from acrvpc.domain.spec_base import SpecModel as _Model


class EndpointNetwork(str, Enum):
    PUBLIC = "public"  # the products' public endpoints (the SDKs' defaults)
    VPC = "vpc"  # the products' VPC endpoints, <product>-vpc.<region>.aliyuncs.com


_ENDPOINT_HOST_RE = re.compile(
    r"^(?=.{1,253}(:|$))[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:[0-9]{1,5})?$"
)
ENDPOINT_PRODUCTS = ("cr", "ecs", "vpc")


def _check_endpoint(value: str, product: str) -> str:
    """``public``, ``vpc``, a host name (``host[:port]``) or an ``http(s)://host[:port]`` URL."""
    text = value.strip()
    if text.lower() in ("public", "vpc"):
        return text.lower()
    scheme, sep, rest = text.partition("://")
    host = rest.rstrip("/") if sep else text
    if (
        sep
        and scheme.lower() not in ("http", "https")
        or not _ENDPOINT_HOST_RE.match(host)
        or (":" in host and not 1 <= int(host.rsplit(":", 1)[1]) <= 65535)
    ):
        example = f"{product}-vpc.cn-hangzhou.aliyuncs.com"
        raise ValueError(
            f"{value!r} is not an endpoint: write public, vpc, a host name such as {example}, or a "
            f"URL such as https://{example}"
        )
    return f"{scheme.lower()}://{host}" if sep else host


class EndpointsSpec(_Model):
    """Which endpoint each Alibaba Cloud API client calls: public, the product's VPC endpoint, or a host.

    ``endpoints: vpc`` is short for ``endpoints: {network: vpc}``. A worker inside a VPC without
    internet access needs ``vpc``; a product left unset follows ``network``.
    """

    network: EndpointNetwork = Field(
        default=EndpointNetwork.PUBLIC,
        description="public | vpc: vpc makes every client (CR, ECS, VPC) call its product's VPC endpoint, "
        "<product>-vpc.<region>.aliyuncs.com, reachable only from inside an Alibaba Cloud VPC.",
        examples=["vpc"],
    )
    cr: str | None = Field(
        default=None,
        description="Container Registry's endpoint, when it differs from "
        "network: public, vpc, or a host name (some regions have no "
        "cr-vpc endpoint).",
        examples=["cr-vpc.cn-hangzhou.aliyuncs.com"],
    )
    ecs: str | None = Field(
        default=None,
        description="ECS's endpoint, when it differs from network: public, vpc, or a host name.",
        examples=["ecs-vpc.cn-hangzhou.aliyuncs.com"],
    )
    vpc: str | None = Field(
        default=None,
        description="The VPC API's endpoint, when it differs from network: public, vpc, or a host name.",
        examples=["vpc-vpc.cn-hangzhou.aliyuncs.com"],
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):  # endpoints: vpc
            return {"network": data}
        if data is None:
            return {}
        if not isinstance(data, (dict, EndpointsSpec)):
            raise ValueError(
                f"{data!r} is not an endpoints setting; write endpoints: vpc, or a section such as "
                f"endpoints: {{network: vpc, cr: public}}"
            )
        return data

    @field_validator("network", mode="before")
    @classmethod
    def _network(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() in ("public", "vpc"):
            return v.strip().lower()
        if isinstance(v, EndpointNetwork):
            return v
        raise ValueError(
            f"{v!r} is not an endpoint network; write public (the default) or vpc (a worker inside "
            f"a VPC: every client calls <product>-vpc.<region>.aliyuncs.com)"
        )

    @field_validator("cr", "ecs", "vpc")
    @classmethod
    def _endpoint(cls, v: str | None, info: ValidationInfo) -> str | None:
        return None if v is None else _check_endpoint(v, str(info.field_name))

    def for_product(self, product: str) -> str:
        """The endpoint setting of one product (``cr``, ``ecs`` or ``vpc``): ``public``, ``vpc``, a host or a URL."""
        if product not in ENDPOINT_PRODUCTS:
            raise ValueError(f"unknown product {product!r}; one of {', '.join(ENDPOINT_PRODUCTS)}")
        return getattr(self, product) or self.network.value
