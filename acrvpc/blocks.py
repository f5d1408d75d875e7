"""Prefect credentials blocks: Alibaba Cloud and GitLab, each with ``get_client()``.

Both are Prefect :class:`~prefect.blocks.abstract.CredentialsBlock` s, registered through the
``prefect.collections`` entry point (pyproject.toml) so ``prefect block register -m acrvpc.blocks``
puts them in the UI's block catalogue. Clients come from the project's one factory,
:mod:`acrvpc.cloud.clients` (endpoints, sandbox override, rate limits, retries), imported only when a
client or a credential is asked for: importing this module costs Prefect's block machinery only.

Example:
    Save once (UI, CLI or Python), then name it in the spec as ``credentials.alibaba_block``::

        from acrvpc.blocks import AlibabaCloudCredentials
        AlibabaCloudCredentials(access_key_id="LTAI...", access_key_secret="...").save("acr-prod")
        ecs = AlibabaCloudCredentials.load("acr-prod").get_client("ecs", region="cn-hangzhou")

    The GitLab token: a :class:`GitLabCredentials` block (token, URL, CA bundle) or, as before, a plain
    Prefect ``Secret`` block, named by the spec's ``gitlab.token_block`` (a GitLab Credentials block of
    that name wins over a Secret of that name)::

        from acrvpc.blocks import GitLabCredentials
        GitLabCredentials(token="glpat-...", url="https://gitlab.internal", ca_bundle="/etc/ssl/corp.pem").save("gitlab-token")
"""

from __future__ import annotations

import re
from typing import Any

from prefect.blocks.abstract import CredentialsBlock
from pydantic import (
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    field_validator,
    model_validator,
)

PRODUCTS = ("cr", "ecs", "vpc")
# AssumeRole's DurationSeconds: 900 s at least; 3600 s is the SDK's default and a role's default maximum.
MIN_DURATION_S, MAX_DURATION_S = 900, 43200
_ARN = re.compile(r"^acs:ram::\d+:(role|oidc-provider)/\S+$")
_SESSION_NAME = re.compile(r"^[\w.@-]{2,64}$")


def _blank_to_none(v: Any) -> Any:
    """The UI sends ``""`` for a cleared field: treat it as not set."""
    if isinstance(v, str) and not v.strip():
        return None
    if isinstance(v, SecretStr) and not v.get_secret_value().strip():
        return None
    return v.strip() if isinstance(v, str) else v


class AlibabaCloudCredentials(CredentialsBlock):
    """Alibaba Cloud credentials for Container Registry, ECS and VPC clients.

    Fill one option; leave every field empty for the default credential chain:

    * **AccessKey**: ``access_key_id`` + ``access_key_secret`` (a RAM user's pair).
    * **STS token**: the same pair from an STS grant + ``security_token``.
    * **RAM role**: ``role_arn`` (+ optional ``role_session_name``, ``role_session_duration_seconds``),
      assumed with the AccessKey pair (or STS token) given above.
    * **OIDC / RRSA** (ACK pods): ``role_arn`` + ``oidc_provider_arn`` + ``oidc_token_file_path``.
    * **Default chain** (all empty): ``ALIBABA_CLOUD_ACCESS_KEY_ID``/``_SECRET`` (``_SECURITY_TOKEN``), the
      ``ALIBABA_CLOUD_ROLE_ARN``/``ALIBABA_CLOUD_OIDC_*`` variables, ``~/.aliyun/config.json``,
      ``~/.alibabacloud/credentials.ini``, ``ALIBABA_CLOUD_CREDENTIALS_URI``, then the ECS instance's RAM role
      (:func:`acrvpc.cloud.clients.default_chain`), asked when a client is built, on the machine that builds it.

    A half-filled option is a validation error naming the field and the fix. Secrets are ``SecretStr``:
    stored encrypted by Prefect, shown as ``**********`` in ``repr`` and never logged.
    """

    # pydantic's errors would print the input, secrets included
    model_config = ConfigDict(hide_input_in_errors=True)
    _block_type_name = "Alibaba Cloud Credentials"
    _block_type_slug = "alibaba-cloud-credentials"  # the name saved blocks were made with: keep it
    _description = (
        "Alibaba Cloud credentials (AccessKey, STS token, RAM role, OIDC/RRSA, or the default "
        "credential chain when left empty) for acr-vpc-build's Container Registry, ECS and VPC clients."
    )
    _documentation_url = HttpUrl(
        "https://www.alibabacloud.com/help/en/sdk/developer-reference/v2-manage-python-access-credentials"
    )

    access_key_id: str | None = Field(
        default=None,
        title="AccessKey ID",
        description="A RAM user's AccessKey id (LTAI...), or an STS grant's (STS...).",
    )
    access_key_secret: SecretStr | None = Field(
        default=None, title="AccessKey secret", description="The AccessKey secret that goes with the id."
    )
    security_token: SecretStr | None = Field(
        default=None, title="STS security token", description="Only for temporary (STS) credentials, with their pair."
    )
    role_arn: str | None = Field(
        default=None,
        title="RAM role ARN",
        description="A RAM role to assume (acs:ram::<account>:role/<name>), with the "
        "AccessKey pair above or with OIDC (RRSA) below.",
    )
    role_session_name: str | None = Field(
        default=None,
        title="Role session name",
        description="The assumed role's session name (2-64 of A-Z a-z 0-9 . @ - "
        "_); default acr-vpc-build. Shown in ActionTrail.",
    )
    role_session_duration_seconds: int | None = Field(
        default=None,
        title="Role session duration (s)",
        description=f"{MIN_DURATION_S}-{MAX_DURATION_S}; default 3600 (at most the role's maximum).",
    )
    oidc_provider_arn: str | None = Field(
        default=None,
        title="OIDC provider ARN",
        description="RRSA: acs:ram::<account>:oidc-provider/<name>, with role_arn and the token file.",
    )
    oidc_token_file_path: str | None = Field(
        default=None,
        title="OIDC token file",
        description="RRSA: the path of the OIDC token file on the machine "
        "that runs the flow (ACK: /var/run/secrets/ack.alibabacloud"
        ".com/rrsa-tokens/token).",
    )
    sts_endpoint: str | None = Field(
        default=None,
        title="STS endpoint",
        description="Where roles are assumed; default sts.aliyuncs.com "
        "(sts-vpc.<region>.aliyuncs.com from inside a VPC).",
    )
    region_id: str | None = Field(
        default=None, title="Region", description="Default region of get_client() (the pipeline uses the spec's)."
    )

    @field_validator("*", mode="before")
    @classmethod
    def _blank(cls, v: Any) -> Any:
        return _blank_to_none(v)

    @model_validator(mode="after")
    def _one_complete_option(self) -> AlibabaCloudCredentials:
        problem = self._problem()
        if problem:
            raise ValueError(problem)
        return self

    def _problem(self) -> str | None:
        """What is half-filled or contradictory, naming the field and the fix; None when the block is usable."""
        key_id, secret = self.access_key_id is not None, self.access_key_secret is not None
        oidc = {"oidc_provider_arn": self.oidc_provider_arn, "oidc_token_file_path": self.oidc_token_file_path}
        if key_id != secret:
            have, lack = ("access_key_id", "access_key_secret") if key_id else ("access_key_secret", "access_key_id")
            return (
                f"{have} is set without {lack}: fill {lack} too (an AccessKey is a pair), or clear {have} "
                "(all fields empty = the default credential chain)"
            )
        if self.security_token is not None and not key_id:
            return (
                "security_token is set without access_key_id and access_key_secret: fill the pair the STS grant "
                "returned with the token, or clear security_token"
            )
        if any(oidc.values()) and not all(oidc.values()):
            lack = next(name for name, value in oidc.items() if not value)
            have = next(name for name, value in oidc.items() if value)
            return (
                f"{have} is set without {lack}: OIDC (RRSA) needs role_arn, oidc_provider_arn and "
                f"oidc_token_file_path; fill {lack}, or clear {have}"
            )
        if all(oidc.values()) and self.role_arn is None:
            return "oidc_provider_arn is set without role_arn: fill role_arn with the RAM role OIDC (RRSA) assumes"
        if all(oidc.values()) and key_id:
            return (
                "both an AccessKey pair and OIDC (RRSA) are set: OIDC assumes role_arn with the token file alone; "
                "clear access_key_id/access_key_secret, or clear oidc_provider_arn/oidc_token_file_path"
            )
        if self.role_arn is not None and not key_id and not all(oidc.values()):
            return (
                "role_arn is set but nothing can assume it: fill access_key_id and access_key_secret (a RAM user "
                "allowed sts:AssumeRole on the role), or oidc_provider_arn and oidc_token_file_path (RRSA); or "
                "clear role_arn to use the default credential chain (it reads ALIBABA_CLOUD_ROLE_ARN)"
            )
        for name in ("role_session_name", "role_session_duration_seconds", "sts_endpoint"):
            if getattr(self, name) is not None and self.role_arn is None:
                return f"{name} only applies when a role is assumed: fill role_arn, or clear {name}"
        for name in ("role_arn", "oidc_provider_arn"):
            value = getattr(self, name)
            if value is not None and not _ARN.match(value):
                kind = "role/<role name>" if name == "role_arn" else "oidc-provider/<provider name>"
                return f"{name}: {value!r} is not a RAM ARN; write acs:ram::<account id>:{kind} (RAM console)"
        if self.role_session_name is not None and not _SESSION_NAME.match(self.role_session_name):
            return (
                f"role_session_name: {self.role_session_name!r} is not a session name; use 2-64 characters "
                "of A-Z a-z 0-9 . @ - _"
            )
        duration = self.role_session_duration_seconds
        if duration is not None and not MIN_DURATION_S <= duration <= MAX_DURATION_S:
            return (
                f"role_session_duration_seconds: {duration} is out of range; give {MIN_DURATION_S}-"
                f"{MAX_DURATION_S} seconds (at most the role's maximum session duration), or clear it"
            )
        return None

    @property
    def option(self) -> str:
        """Which option is filled: ``access_key``, ``sts``, ``ram_role``, ``oidc`` or ``default_chain``."""
        if self.oidc_provider_arn:
            return "oidc"
        if self.role_arn:
            return "ram_role"
        if self.access_key_id:
            return "sts" if self.security_token else "access_key"
        return "default_chain"

    def credential(self) -> Any:
        """The credential clients are built with (:data:`acrvpc.cloud.clients.Credential`).

        An :class:`~acrvpc.cloud.clients.AccessKey` for a pair or an STS token; an SDK credentials client
        for a RAM role or OIDC (it assumes the role at the first call and refreshes before expiry); the
        default chain's answer, asked now, when the block is empty.

        Raises:
            CredentialsError: the default chain found nothing, or the OIDC token file is missing.
        """
        from acrvpc.cloud import clients

        secret = self.access_key_secret.get_secret_value() if self.access_key_secret else None
        token = self.security_token.get_secret_value() if self.security_token else None
        option = self.option
        if option in ("access_key", "sts"):
            return clients.AccessKey(self.access_key_id or "", secret or "", token)
        if option == "default_chain":
            return clients.default_chain()
        from alibabacloud_credentials import provider as providers
        from alibabacloud_credentials.client import Client as CredentialClient

        role = {
            "role_arn": self.role_arn,
            "role_session_name": self.role_session_name or "acr-vpc-build",
            "duration_seconds": self.role_session_duration_seconds or 3600,
            "sts_endpoint": self.sts_endpoint,
        }
        if option == "oidc":
            from pathlib import Path

            if not Path(self.oidc_token_file_path or "").is_file():
                raise clients.CredentialsError(
                    f"oidc_token_file_path: no file {self.oidc_token_file_path!r} on this machine; RRSA mounts it "
                    "in the pod (enable RRSA on the ACK cluster and the pod's service account), or fix the path"
                )
            return CredentialClient(
                provider=providers.OIDCRoleArnCredentialsProvider(
                    oidc_provider_arn=self.oidc_provider_arn, oidc_token_file_path=self.oidc_token_file_path, **role
                )
            )
        return CredentialClient(
            provider=providers.RamRoleArnCredentialsProvider(
                access_key_id=self.access_key_id, access_key_secret=secret, security_token=token, **role
            )
        )

    def get_client(
        self, product: str, region: str | None = None, *, endpoint: str = "public", read_timeout_ms: int | None = None
    ) -> Any:
        """A Container Registry (``"cr"``), ECS (``"ecs"``) or VPC (``"vpc"``) client with these credentials.

        Built by :func:`acrvpc.cloud.clients.client_for`: the same endpoints, sandbox override
        (``ACRVPC_SANDBOX_URL``), rate limit and retries as the pipeline's clients.

        Args:
            product: ``cr``, ``ecs`` or ``vpc``.
            region: the region; default the block's ``region_id``.
            endpoint: ``public``, ``vpc``, or a host (as the spec's ``endpoints``).
            read_timeout_ms: the read timeout; default the factory's.

        Raises:
            ValueError: an unknown product, or no region.
        """
        from acrvpc.cloud import clients

        region = region or self.region_id
        if not region:
            raise ValueError(
                f"get_client({product!r}): no region; pass region='cn-hangzhou' (for example) or fill "
                "the block's region_id"
            )
        self.logger.debug("building a %s client for %s with %s credentials", product, region, self.option)
        return clients.client_for(
            product, region, self.credential(), endpoint=endpoint, read_timeout_ms=read_timeout_ms
        )


class GitLabCredentials(CredentialsBlock):
    """A GitLab personal access token, the GitLab URL and the CA bundle its TLS certificate chains to.

    Named by the spec's ``gitlab.token_block`` like the plain ``Secret`` block used before (a GitLab
    Credentials block of that name wins over a Secret of that name); the pipeline calls the spec's
    ``gitlab.api_url``/``endpoint`` with this block's token and CA bundle.
    """

    # Not "GitLab Credentials": prefect-gitlab registers that slug with other fields.
    # pydantic's errors would print the input, secrets included
    model_config = ConfigDict(hide_input_in_errors=True)
    _block_type_name = "ACR VPC Build GitLab Credentials"
    _block_type_slug = "acr-vpc-build-gitlab-credentials"
    _description = (
        "A GitLab personal access token (api scope), GitLab's URL and CA bundle, for acr-vpc-build's "
        "GitLab client (named by the spec's gitlab.token_block)."
    )

    token: SecretStr = Field(
        title="Personal access token",
        description="glpat-...: a token of the spec's gitlab.username with the api scope.",
    )
    url: str | None = Field(
        default=None,
        title="GitLab URL",
        description="e.g. https://gitlab.internal; the pipeline uses the spec's gitlab.api_url or endpoint instead.",
    )
    ca_bundle: str | None = Field(
        default=None,
        title="CA bundle",
        description="The CA certificate(s) GitLab's TLS certificate chains to: a file "
        "path on the machine running the flow, or the PEM text itself. "
        "Empty: the system's CAs.",
    )

    @field_validator("url", "ca_bundle", mode="before")
    @classmethod
    def _blank(cls, v: Any) -> Any:
        return _blank_to_none(v)

    @field_validator("token", mode="after")
    @classmethod
    def _token(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().strip():
            raise ValueError(
                "token is empty: paste GitLab's personal access token (User settings > Access tokens, scope api)"
            )
        return SecretStr(v.get_secret_value().strip())

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError(f"url: {v!r} is not a URL; write it with its scheme, e.g. https://gitlab.internal")
        return v.rstrip("/") if v else v

    @field_validator("ca_bundle")
    @classmethod
    def _pem(cls, v: str | None) -> str | None:
        if v is not None and "-----BEGIN" in v and "-----END CERTIFICATE-----" not in v:
            raise ValueError(
                "ca_bundle: the PEM text is cut short (no -----END CERTIFICATE-----); paste the whole "
                "certificate, or give the bundle's file path"
            )
        return v

    def get_client(self, url: str | None = None) -> Any:
        """A python-gitlab client with this token, built by :func:`acrvpc.cloud.clients.gitlab_client`
        (sandbox override, the project's bounded retries, the CA bundle).

        Args:
            url: GitLab's URL; default the block's ``url``.
        """
        from acrvpc.cloud import clients

        url = url or self.url
        if not url:
            raise ValueError("get_client(): no GitLab URL; pass url='https://gitlab.internal' or fill the block's url")
        return clients.gitlab_client(url, self.token.get_secret_value(), ca_bundle=self.ca_bundle)
