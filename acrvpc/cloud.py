"""The one place where API clients are built.

Every Alibaba Cloud SDK client (CR, ECS, VPC) and every python-gitlab client comes from here,
so the sandbox override and the credential rules hold everywhere (a test enforces it).

* With ``ACRVPC_SANDBOX_URL=http://127.0.0.1:N`` set, all clients talk plain HTTP to that
  sandbox, with the sandbox's credentials (``ACRVPC_SANDBOX_ACCESS_KEY_ID`` /
  ``ACRVPC_SANDBOX_ACCESS_KEY_SECRET`` / ``ACRVPC_GITLAB_TOKEN`` override them).
* Without it, clients go to the regional endpoints with the credentials block the spec names,
  or else the standard Alibaba Cloud credential chain (environment, config file, ECS RAM role).

Clients are cheap and hold no connection: build them per task run, never cache them globally.
The clients :func:`cloud_clients` builds for the pipeline also refuse any API action not declared in
:mod:`acrvpc.actions` (the list the least-privilege policy is generated from) before sending it, and
name the RAM action to grant when the service refuses one (:func:`acrvpc.actions.guard`); the
per-product builders below (used as they are by the sandbox's own tests) do not.
Every Alibaba Cloud client takes a token of its product's process-wide rate limit before each
call (:mod:`acrvpc.ratelimit`; ``ACRVPC_QPS_<PRODUCT>``, default 20 per second), and retries the
transient failures of calls that are safe to repeat in place (:mod:`acrvpc.callretry`). GitLab
clients retry transient failures (5xx, 429, connection errors) with python-gitlab's own backoff.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import gitlab
from alibabacloud_cr20181201.client import Client as CrClient
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_vpc20160428.client import Client as VpcClient

from . import actions, callretry, ratelimit
from .sandbox import defaults as sandbox_defaults
from .spec import Spec

SANDBOX_ENV = "ACRVPC_SANDBOX_URL"
GITLAB_TOKEN_ENV = "ACRVPC_GITLAB_TOKEN"
USER_AGENT = "acr-vpc-build"
READ_TIMEOUT_MS = 10_000
CONNECT_TIMEOUT_MS = 5_000
GITLAB_TIMEOUT_S = 30


class CredentialsError(RuntimeError):
    """No usable credentials: the message says where they were looked for and how to provide them."""


@dataclass(frozen=True)
class AccessKey:
    """An AccessKey pair. ``repr`` never shows the secret."""

    access_key_id: str
    access_key_secret: str
    security_token: str | None = None

    def __repr__(self) -> str:
        return f"AccessKey(access_key_id={self.access_key_id!r}, access_key_secret='**********')"


def sandbox_url() -> str | None:
    """The sandbox base URL from ``ACRVPC_SANDBOX_URL``, or ``None`` for the real cloud."""
    url = os.environ.get(SANDBOX_ENV, "").strip()
    return url.rstrip("/") or None


def _sandbox_access_key() -> AccessKey:
    return AccessKey(
        os.environ.get("ACRVPC_SANDBOX_ACCESS_KEY_ID", sandbox_defaults.ACCESS_KEY_ID),
        os.environ.get("ACRVPC_SANDBOX_ACCESS_KEY_SECRET", sandbox_defaults.ACCESS_KEY_SECRET),
    )


def resolve_access_key(block_name: str | None) -> AccessKey | None:
    """The AccessKey to use: the sandbox's, a saved block's, or ``None`` for the default chain."""
    if sandbox_url():
        return _sandbox_access_key()
    if block_name:
        from .blocks import AlibabaCloudCredentials

        try:
            block = AlibabaCloudCredentials.load(block_name)
        except ValueError as exc:
            raise CredentialsError(
                f"credentials.alibaba_block: no AlibabaCloudCredentials block named {block_name!r} ({exc}); "
                f"create it with `acrvpc` docs' snippet or omit the field to use the environment") from None
        token = block.security_token.get_secret_value() if block.security_token else None
        return AccessKey(block.access_key_id, block.access_key_secret.get_secret_value(), token)
    return None


def _config(region: str, access_key: AccessKey | None, read_timeout_ms: int | None = None) -> open_api_models.Config:
    config = open_api_models.Config(region_id=region, user_agent=USER_AGENT,
                                    read_timeout=read_timeout_ms or READ_TIMEOUT_MS, connect_timeout=CONNECT_TIMEOUT_MS)
    if access_key is not None:
        config.access_key_id = access_key.access_key_id
        config.access_key_secret = access_key.access_key_secret
        if access_key.security_token:
            config.security_token = access_key.security_token
    else:
        from alibabacloud_credentials.client import Client as CredentialClient

        config.credential = CredentialClient()
    url = sandbox_url()
    if url:
        parts = urlsplit(url)
        config.endpoint = parts.netloc
        config.protocol = parts.scheme or "http"
    return config


def _guarded(client: Any, product: str, region: str) -> Any:
    """Rate-limit every call (each attempt takes a token) and retry safe calls' transient failures."""
    return callretry.guard(ratelimit.guard(client, product, region), product)


def cr_client(region: str, access_key: AccessKey | None = None, *, read_timeout_ms: int | None = None) -> CrClient:
    """A Container Registry 2018-12-01 client, rate-limited per :mod:`acrvpc.ratelimit`."""
    return _guarded(CrClient(_config(region, access_key, read_timeout_ms)), "cr", region)


def ecs_client(region: str, access_key: AccessKey | None = None, *, read_timeout_ms: int | None = None) -> EcsClient:
    """An ECS 2014-05-26 client, rate-limited per :mod:`acrvpc.ratelimit`."""
    return _guarded(EcsClient(_config(region, access_key, read_timeout_ms)), "ecs", region)


def vpc_client(region: str, access_key: AccessKey | None = None, *, read_timeout_ms: int | None = None) -> VpcClient:
    """A VPC 2016-04-28 client, rate-limited per :mod:`acrvpc.ratelimit`."""
    return _guarded(VpcClient(_config(region, access_key, read_timeout_ms)), "vpc", region)


@dataclass
class CloudClients:
    """The three Alibaba Cloud clients a stage may need, for one region."""

    cr: CrClient
    ecs: EcsClient
    vpc: VpcClient


def cloud_clients(spec: Spec) -> CloudClients:
    """Build the CR, ECS and VPC clients for a spec (its region and credentials).

    Each may call only the actions declared for its product in :mod:`acrvpc.actions`.
    """
    key = resolve_access_key(spec.credentials.alibaba_block)
    return CloudClients(actions.guard(cr_client(spec.region, key), "cr"),
                        actions.guard(ecs_client(spec.region, key), "ecs"),
                        actions.guard(vpc_client(spec.region, key), "vpc"))


def resolve_gitlab_token(token_block: str) -> str:
    """The GitLab token: ``ACRVPC_GITLAB_TOKEN``, the sandbox's, or the named Prefect Secret block."""
    token = os.environ.get(GITLAB_TOKEN_ENV, "").strip()
    if token:
        return token
    if sandbox_url():
        return sandbox_defaults.GITLAB_TOKEN
    from prefect.blocks.system import Secret

    try:
        return str(Secret.load(token_block).get())
    except ValueError:
        raise CredentialsError(
            f"gitlab.token_block: no Prefect Secret block named {token_block!r}; create it with "
            f"`Secret(value='glpat-...').save('{token_block}')` or set {GITLAB_TOKEN_ENV}") from None


def gitlab_client(url: str, token: str) -> gitlab.Gitlab:
    """A python-gitlab client for ``url`` (the sandbox's, when ``ACRVPC_SANDBOX_URL`` is set)."""
    return gitlab.Gitlab(sandbox_url() or url, private_token=token, timeout=GITLAB_TIMEOUT_S, keep_base_url=True,
                         user_agent=USER_AGENT, retry_transient_errors=callretry.attempts_after_first() > 0)


def gitlab_for(spec: Spec) -> gitlab.Gitlab:
    """The GitLab client for a spec's GitLab, authenticated with its token."""
    return gitlab_client(spec.gitlab.api_base, resolve_gitlab_token(spec.gitlab.token_block))
