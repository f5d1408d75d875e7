"""Prefect blocks holding credentials.

Example:
    Save once (CLI or Python), then name it in the spec as ``credentials.alibaba_block``::

        from acrvpc.blocks import AlibabaCloudCredentials
        AlibabaCloudCredentials(access_key_id="LTAI...", access_key_secret="...").save("acr-prod")

    The GitLab token is a plain Prefect ``Secret`` block named by ``gitlab.token_block``::

        from prefect.blocks.system import Secret
        Secret(value="glpat-...").save("gitlab-token")
"""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class AlibabaCloudCredentials(Block):
    """An Alibaba Cloud AccessKey pair (optionally an STS token) for the pipeline's RAM user.

    Attributes:
        access_key_id: the AccessKey id (not secret, but identifies the RAM user).
        access_key_secret: the AccessKey secret; stored encrypted by Prefect, never logged.
        security_token: an STS security token when the pair is temporary.
    """

    _block_type_name = "Alibaba Cloud Credentials"
    _block_type_slug = "alibaba-cloud-credentials"
    _description = "AccessKey pair used by acr-vpc-build to call Container Registry, ECS and VPC."

    access_key_id: str = Field(title="AccessKey ID", description="The RAM user's AccessKey id (LTAI...).")
    access_key_secret: SecretStr = Field(title="AccessKey secret", description="The AccessKey secret.")
    security_token: SecretStr | None = Field(default=None, title="STS security token",
                                             description="Only for temporary (STS) credentials.")
