"""The one place where API clients are built.

Every Alibaba Cloud SDK client (CR, ECS, VPC) and every python-gitlab client comes from here,
so the sandbox override and the credential rules hold everywhere (a test enforces it).

* With ``ACRVPC_SANDBOX_URL=http://127.0.0.1:N`` set, all clients talk plain HTTP to that
  sandbox, with the sandbox's credentials (``ACRVPC_SANDBOX_ACCESS_KEY_ID`` /
  ``ACRVPC_SANDBOX_ACCESS_KEY_SECRET`` / ``ACRVPC_GITLAB_TOKEN`` override them).
* Without it, clients go to the endpoints the spec's ``endpoints`` names (:func:`endpoint_for`: the
  public ones by default, ``<product>-vpc.<region>.aliyuncs.com`` with ``vpc``, or a given host) with
  the credentials block the spec names,
  or else the standard Alibaba Cloud credential chain (environment, config file, ECS RAM role),
  resolved once, before any API call, by :func:`resolve_access_key`: no credentials anywhere is one
  :class:`CredentialsError` naming every way to give them, not an error per call (the SDK's own chain
  would ask the ECS metadata service again, with retries and a traceback, on every request).

Clients are cheap and hold no connection: build them per task run, never cache them globally.
The clients :func:`cloud_clients` builds for the pipeline also refuse any API action not declared in
:mod:`acrvpc.domain.actions` (the list the least-privilege policy is generated from) before sending it, and
name the RAM action to grant when the service refuses one (:func:`acrvpc.cloud.declared.guard`); the
per-product builders below (used as they are by the sandbox's own tests) do not.
Every Alibaba Cloud client takes a token of its product's process-wide rate limit before each
call (:mod:`acrvpc.cloud.ratelimit`; ``ACRVPC_QPS_<PRODUCT>``, default 20 per second), and retries the
transient failures of calls that are safe to repeat in place (:mod:`acrvpc.cloud.callretry`). GitLab
clients retry transient failures (5xx, 429, connection errors) with python-gitlab's own backoff,
bounded by the same policy (:func:`acrvpc.cloud.callretry.guard_gitlab`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from acrvpc.cloud import callretry, declared, ratelimit
from acrvpc.domain.spec import Spec
from acrvpc.settings import secret_value, settings

if TYPE_CHECKING:  # the SDKs are imported where clients are built: resolving credentials needs none of them
    import gitlab
    from alibabacloud_cr20181201.client import Client as CrClient
    from alibabacloud_ecs20140526.client import Client as EcsClient
    from alibabacloud_tea_openapi import models as open_api_models
    from alibabacloud_vpc20160428.client import Client as VpcClient

SANDBOX_ENV = "ACRVPC_SANDBOX_URL"
GITLAB_TOKEN_ENV = "ACRVPC_GITLAB_TOKEN"
USER_AGENT = "acr-vpc-build"
READ_TIMEOUT_MS = 10_000
CONNECT_TIMEOUT_MS = 5_000
GITLAB_TIMEOUT_S = 30
# The ECS instance metadata service (link-local on every ECS instance) and how long one probe may take:
# it answers in milliseconds on ECS; elsewhere the address is unroutable.
METADATA_HOST = "100.100.100.200"
METADATA_PROBE_TIMEOUT_S = 0.5


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


# What clients are built with: an AccessKey pair, or an SDK credentials client (refreshing credentials).
Credential = AccessKey | Any


def sandbox_url() -> str | None:
    """The sandbox base URL from ``ACRVPC_SANDBOX_URL``, or ``None`` for the real cloud."""
    url = settings().sandbox_url or ""
    return url.rstrip("/") or None


# What a sandbox's default world accepts (acrvpc/sandbox/scenarios/default.yaml seeds them; `acrvpc sandbox`
# serves that world): sandbox-only, not secret. Written here, not imported from acrvpc.sandbox, so the product
# imports nothing of the sandbox; tests/unit/test_no_sandbox_imports.py holds the two equal. A sandbox with
# other credentials is given them through ACRVPC_SANDBOX_ACCESS_KEY_ID / _SECRET and ACRVPC_GITLAB_TOKEN.
SANDBOX_ACCESS_KEY_ID = "LTAI5tSANDBOXKEY0001"
SANDBOX_ACCESS_KEY_SECRET = "sandbox-secret-0123456789abcdef"
SANDBOX_GITLAB_TOKEN = "glpat-sandbox-release-bot-0001"


def _sandbox_access_key() -> AccessKey:
    current = settings()
    return AccessKey(
        current.sandbox_access_key_id or SANDBOX_ACCESS_KEY_ID,
        secret_value(current.sandbox_access_key_secret) or SANDBOX_ACCESS_KEY_SECRET,
    )


# The type slugs of acrvpc.blocks' AlibabaCloudCredentials and GitLabCredentials. Their saved blocks are loaded by
# slug through Prefect's block registry (the package's prefect.collections entry point imports acrvpc.blocks), so
# this module, below the Prefect integration, does not import it (acrvpc.blocks builds its clients here).
ALIBABA_BLOCK_TYPE = "alibaba-cloud-credentials"
GITLAB_BLOCK_TYPE = "acr-vpc-build-gitlab-credentials"


class BlockUnusable(ValueError):
    """A saved block that no longer validates (half-filled in the UI, say): the message names the field and the fix."""


def load_block(slug: str, name: str) -> Any:
    """The saved block ``<slug>/<name>``, as its class (found by slug in Prefect's block registry).

    Raises:
        ValueError: no block of that type and name (Prefect's "Unable to find block document ...").
        BlockUnusable: the block exists but is misfilled; the message says which field and how to fix it.
    """
    from prefect.blocks.core import Block
    from pydantic import ValidationError

    try:
        return Block.load(f"{slug}/{name}")
    except RuntimeError as exc:  # Prefect's "failed validation" keeps pydantic's message in __cause__
        cause = exc.__cause__
        if not isinstance(cause, ValidationError):
            raise
        why = "; ".join(_error_text(e) for e in cause.errors())
        raise BlockUnusable(
            f"the saved {slug} block {name!r} is misfilled: {why}; fix it in the UI (Blocks) or save it again"
        ) from None


def _error_text(error: Any) -> str:
    msg = str(error.get("msg", "")).removeprefix("Value error, ")
    loc = ".".join(str(part) for part in error.get("loc", ()))
    return msg if not loc or msg.startswith(loc) else f"{loc}: {msg}"


def resolve_access_key(block_name: str | None) -> Credential:
    """The credentials to use, resolved once, before any API call.

    In order: the sandbox's (``ACRVPC_SANDBOX_URL``); the AlibabaCloudCredentials block the spec
    names; else the standard Alibaba Cloud chain (:func:`default_chain`).

    Args:
        block_name: the spec's ``credentials.alibaba_block``, or ``None``.

    Returns:
        An :class:`AccessKey`, or an SDK credentials client for credentials that refresh
        (a block's RAM role or OIDC option, a profile's STS or role, OIDC, a credentials URI, an ECS RAM role).

    Raises:
        CredentialsError: the block does not exist or is misfilled, or the chain found nothing usable.
    """
    if sandbox_url():
        return _sandbox_access_key()
    if block_name:
        try:
            block = load_block(ALIBABA_BLOCK_TYPE, block_name)
        except ValueError as exc:  # not found, or saved half-filled (the message names the field and the fix)
            raise CredentialsError(
                f"credentials.alibaba_block: cannot use the Alibaba Cloud Credentials block {block_name!r} ({exc}); "
                "save it with `prefect block create alibaba-cloud-credentials` or AlibabaCloudCredentials(...)"
                ".save(...) (README, Credentials), or omit the field to use the default credential chain"
            ) from None
        return block.credential()
    return default_chain()


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def _set(name: str) -> str:
    return os.environ.get(name, "").strip()


def metadata_service_answers(
    host: str = METADATA_HOST, port: int = 80, timeout_s: float = METADATA_PROBE_TIMEOUT_S
) -> bool:
    """Whether the ECS instance metadata service answers: one HTTP request, ``timeout_s`` at most.

    Any HTTP answer counts (the token endpoint may refuse a method or be IMDSv1-only); no
    answer in time, a refused connection or no route means this is not an ECS instance.
    """
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("PUT", "/latest/api/token", headers={"X-aliyun-ecs-metadata-token-ttl-seconds": "60"})
        conn.getresponse().read()
        return True
    except OSError:  # refused, unreachable, timed out
        return False
    except http.client.HTTPException:  # something answered, though not in HTTP we understood
        return True
    finally:
        conn.close()


def _sdk(provider: str) -> Any:
    """A credentials provider class of the Alibaba Cloud SDK (imported only when a source is configured)."""
    from alibabacloud_credentials import provider as providers

    return getattr(providers, provider)


def _configured_sources() -> list[tuple[str, Any]]:
    """The chain's sources that are configured here (a variable that is set, a file that exists), in the
    SDK's order (OIDC, the aliyun CLI's config, the credentials file, a credentials URI), as ``(where,
    provider factory)``; nothing is read or asked yet."""
    sources: list[tuple[str, Any]] = []
    if (
        _set("ALIBABA_CLOUD_OIDC_TOKEN_FILE")
        and _set("ALIBABA_CLOUD_ROLE_ARN")
        and _set("ALIBABA_CLOUD_OIDC_PROVIDER_ARN")
    ):
        sources.append(
            ("OIDC (ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_*)", lambda: _sdk("OIDCRoleArnCredentialsProvider")())
        )
    cli_config = _home() / ".aliyun" / "config.json"
    if cli_config.is_file() and _set("ALIBABA_CLOUD_CLI_PROFILE_DISABLED").lower() != "true":
        sources.append((str(cli_config), lambda: _sdk("CLIProfileCredentialsProvider")(profile_file=str(cli_config))))
    profile = Path(_set("ALIBABA_CLOUD_CREDENTIALS_FILE") or _home() / ".alibabacloud" / "credentials.ini")
    if profile.is_file():
        sources.append((str(profile), lambda: _sdk("ProfileCredentialsProvider")(profile_file=str(profile))))
    if _set("ALIBABA_CLOUD_CREDENTIALS_URI"):
        sources.append(("ALIBABA_CLOUD_CREDENTIALS_URI", lambda: _sdk("URLCredentialsProvider")()))
    return sources


def no_credentials_message(problems: list[str], metadata: str) -> str:
    """The one message for "no usable Alibaba Cloud credentials": every way to give them."""
    found = "; ".join(problems)
    return (
        "no Alibaba Cloud credentials" + (f" could be used ({found})" if found else " found") + ". Give them "
        "one of these ways: the spec's credentials.alibaba_block (the name of a saved AlibabaCloudCredentials "
        "block); the environment variables ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET "
        "(and ALIBABA_CLOUD_SECURITY_TOKEN for STS); a credentials file, ~/.alibabacloud/credentials.ini "
        "(or ALIBABA_CLOUD_CREDENTIALS_FILE) or the aliyun CLI's ~/.aliyun/config.json; or, on an ECS "
        f"instance, a RAM role attached to it ({metadata}). To try the pipeline without an account: "
        "`acrvpc demo`, or `acrvpc sandbox` with ACRVPC_SANDBOX_URL"
    )


def default_chain() -> Credential:
    """The standard Alibaba Cloud credential chain, asked once.

    Environment variables (``ALIBABA_CLOUD_ACCESS_KEY_ID``/``_SECRET``/``_SECURITY_TOKEN``), then the
    sources configured here (OIDC, the aliyun CLI's config, the credentials file, a credentials URI),
    then, when none of them gave credentials, the ECS RAM role: the metadata service is probed once
    (:func:`metadata_service_answers`, skipped with ``ALIBABA_CLOUD_ECS_METADATA_DISABLED=true``) and
    asked only when it answers. Each source is asked once; its failure becomes part of the message.

    Raises:
        CredentialsError: nothing usable; the message names every way to give credentials.
    """
    key_id, secret = _set("ALIBABA_CLOUD_ACCESS_KEY_ID"), _set("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    if key_id and secret:
        return AccessKey(key_id, secret, _set("ALIBABA_CLOUD_SECURITY_TOKEN") or None)
    have, lack = ("ID", "SECRET") if key_id else ("SECRET", "ID")
    problems = (
        [f"ALIBABA_CLOUD_ACCESS_KEY_{have} is set without ALIBABA_CLOUD_ACCESS_KEY_{lack}"] if key_id or secret else []
    )
    for where, make in _configured_sources():
        found = _ask(where, make, problems)
        if found is not None:
            return found
    if _set("ALIBABA_CLOUD_ECS_METADATA_DISABLED").lower() == "true":
        metadata = "not asked: ALIBABA_CLOUD_ECS_METADATA_DISABLED=true"
    elif not metadata_service_answers():
        metadata = f"no ECS metadata service answered at {METADATA_HOST} within {METADATA_PROBE_TIMEOUT_S:g} s"
    else:
        metadata = "the metadata service answered but gave no role credentials"
        found = _ask(
            f"the ECS RAM role ({METADATA_HOST})",
            lambda: _sdk("EcsRamRoleCredentialsProvider")(async_update_enabled=False),
            problems,
        )
        if found is not None:
            return found
    raise CredentialsError(no_credentials_message(problems, metadata))


def _ask(where: str, make: Any, problems: list[str]) -> Credential | None:
    """Ask one source of the chain once; a failure is noted in ``problems`` (the SDK's loggers are held)."""
    import logging

    from alibabacloud_credentials.client import Client as CredentialClient

    quiet = logging.getLogger("credentials")
    was, quiet.disabled = quiet.disabled, True  # the SDK logs each failure with a traceback
    try:
        provider = make()
        provider.get_credentials()
    except Exception as exc:  # noqa: BLE001 - the SDK raises many kinds; each becomes a line of the message
        problems.append(f"{where}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        return None
    finally:
        quiet.disabled = was
    return CredentialClient(provider=provider)


# The documented VPC endpoint of each product's regional API ("Endpoints" page of the CR 2018-12-01,
# ECS 2014-05-26 and VPC 2016-04-28 API references): <product>-vpc.<region>.aliyuncs.com. Set
# explicitly: the SDKs' own endpoint maps win over their ``network`` setting (ECS in cn-hangzhou would
# stay ecs-cn-hangzhou.aliyuncs.com, VPC in cn-hangzhou vpc.aliyuncs.com, both public).
VPC_ENDPOINT = "{product}-vpc.{region}.aliyuncs.com"


def endpoint_for(product: str, region: str, setting: str = "public") -> tuple[str | None, str | None]:
    """The host and protocol a product's client calls for an ``endpoints`` setting.

    Args:
        product: ``cr``, ``ecs`` or ``vpc``.
        region: the spec's region.
        setting: ``public`` (the SDK's own choice), ``vpc``, a ``host[:port]`` or an ``http(s)://host[:port]``
            URL (from :meth:`acrvpc.domain.spec.EndpointsSpec.for_product`).

    Returns:
        ``(host, protocol)``; ``(None, None)`` leaves both to the SDK (its public endpoint, HTTPS).
    """
    if setting == "public":
        return None, None
    if setting == "vpc":
        return VPC_ENDPOINT.format(product=product, region=region), None
    scheme, sep, rest = setting.partition("://")
    return (rest.rstrip("/"), scheme) if sep else (setting, None)


def _config(
    region: str,
    access_key: Credential | None,
    read_timeout_ms: int | None = None,
    *,
    product: str = "",
    endpoint: str = "public",
) -> open_api_models.Config:
    from alibabacloud_tea_openapi import models as open_api_models

    config = open_api_models.Config(
        region_id=region,
        user_agent=USER_AGENT,
        read_timeout=read_timeout_ms or READ_TIMEOUT_MS,
        connect_timeout=CONNECT_TIMEOUT_MS,
    )
    if access_key is None:
        access_key = resolve_access_key(None)
    if isinstance(access_key, AccessKey):
        config.access_key_id = access_key.access_key_id
        config.access_key_secret = access_key.access_key_secret
        if access_key.security_token:
            config.security_token = access_key.security_token
    else:
        config.credential = access_key
    url = sandbox_url()
    if url:  # the sandbox wins over the spec's endpoints
        parts = urlsplit(url)
        config.endpoint = parts.netloc
        config.protocol = parts.scheme or "http"
    else:
        host, protocol = endpoint_for(product, region, endpoint)
        if host:
            config.endpoint = host
        if protocol:
            config.protocol = protocol
    if (config.protocol or "").lower() == "http":
        plain_http_without_tls()
    return config


def plain_http_without_tls() -> None:
    """Plain-HTTP endpoints (a sandbox, an ``http://`` endpoint setting) get a connection pool without an SSL context.

    The SDKs' HTTP runtime (darabonba) builds, for each new session, an SSL context loading the system's CA store
    (``ssl.create_default_context``: 17 ms of CPU, a third of a preflight's reads against a sandbox, issue 18) even
    for ``http://``, whose connections never use it. HTTPS sessions are built as before (certifi's CAs, the TLS
    minimum version). Idempotent; a darabonba without this layout is left as it is.
    """
    import darabonba.core as core
    from darabonba.core import DaraCore

    built = DaraCore.get_adapter
    if getattr(built, "plain_http_without_tls", False) or not hasattr(core, "_TLSAdapter"):
        return

    def get_adapter(prefix: str, tls_min_version: str | None = None, pool_size: int | None = None) -> Any:
        if str(prefix).upper() == "HTTPS":
            return built(prefix, tls_min_version, pool_size=pool_size)
        size = pool_size if pool_size is not None and pool_size > 0 else core.DEFAULT_POOL_MAXSIZE
        return core._TLSAdapter(ssl_context=None, pool_connections=core.DEFAULT_POOL_SIZE, pool_maxsize=size)

    get_adapter.plain_http_without_tls = True  # type: ignore[attr-defined]
    DaraCore.get_adapter = staticmethod(get_adapter)


def _guarded(client: Any, product: str, region: str) -> Any:
    """Rate-limit every call (each attempt takes a token) and retry safe calls' transient failures."""
    return callretry.guard(ratelimit.guard(client, product, region), product)


def cr_client(
    region: str, access_key: Credential | None = None, *, read_timeout_ms: int | None = None, endpoint: str = "public"
) -> CrClient:
    """A Container Registry 2018-12-01 client, rate-limited per :mod:`acrvpc.cloud.ratelimit`.

    Without ``access_key`` the credentials are resolved now (:func:`resolve_access_key`), as for the
    ECS and VPC builders below. ``endpoint`` is the spec's setting for the product (:func:`endpoint_for`).
    """
    from alibabacloud_cr20181201.client import Client as CrClient

    return _guarded(
        CrClient(_config(region, access_key, read_timeout_ms, product="cr", endpoint=endpoint)), "cr", region
    )


def ecs_client(
    region: str, access_key: Credential | None = None, *, read_timeout_ms: int | None = None, endpoint: str = "public"
) -> EcsClient:
    """An ECS 2014-05-26 client, rate-limited per :mod:`acrvpc.cloud.ratelimit`."""
    from alibabacloud_ecs20140526.client import Client as EcsClient

    return _guarded(
        EcsClient(_config(region, access_key, read_timeout_ms, product="ecs", endpoint=endpoint)), "ecs", region
    )


def vpc_client(
    region: str, access_key: Credential | None = None, *, read_timeout_ms: int | None = None, endpoint: str = "public"
) -> VpcClient:
    """A VPC 2016-04-28 client, rate-limited per :mod:`acrvpc.cloud.ratelimit`."""
    from alibabacloud_vpc20160428.client import Client as VpcClient

    return _guarded(
        VpcClient(_config(region, access_key, read_timeout_ms, product="vpc", endpoint=endpoint)), "vpc", region
    )


PRODUCT_CLIENTS = {"cr": cr_client, "ecs": ecs_client, "vpc": vpc_client}


def client_for(
    product: str,
    region: str,
    access_key: Credential | None = None,
    *,
    read_timeout_ms: int | None = None,
    endpoint: str = "public",
) -> Any:
    """The client of one product by name (``cr``, ``ecs`` or ``vpc``): :func:`cr_client`, :func:`ecs_client`
    or :func:`vpc_client`. What :meth:`acrvpc.blocks.AlibabaCloudCredentials.get_client` builds.

    Raises:
        ValueError: another product name.
    """
    build = PRODUCT_CLIENTS.get(product.strip().lower())
    if build is None:
        raise ValueError(f"product {product!r} has no client here; use one of {', '.join(PRODUCT_CLIENTS)}")
    return build(region, access_key, read_timeout_ms=read_timeout_ms, endpoint=endpoint)


@dataclass
class CloudClients:
    """The three Alibaba Cloud clients a stage may need, for one region."""

    cr: CrClient
    ecs: EcsClient
    vpc: VpcClient


def cloud_clients(spec: Spec) -> CloudClients:
    """Build the CR, ECS and VPC clients for a spec (its region, credentials and endpoints).

    Each may call only the actions declared for its product in :mod:`acrvpc.domain.actions`.
    """
    key = resolve_access_key(spec.credentials.alibaba_block)
    ends = spec.endpoints
    return CloudClients(
        declared.guard(cr_client(spec.region, key, endpoint=ends.for_product("cr")), "cr"),
        declared.guard(ecs_client(spec.region, key, endpoint=ends.for_product("ecs")), "ecs"),
        declared.guard(vpc_client(spec.region, key, endpoint=ends.for_product("vpc")), "vpc"),
    )


@dataclass(frozen=True)
class GitLabAuth:
    """A GitLab token and the CA bundle (a path or PEM text) GitLab's TLS is checked with. ``repr`` hides the token."""

    token: str
    ca_bundle: str | None = None

    def __repr__(self) -> str:
        return f"GitLabAuth(token='**********', ca_bundle={self.ca_bundle!r})"


def resolve_gitlab_token(token_block: str) -> str:
    """The GitLab token, from where :func:`resolve_gitlab` finds it."""
    return resolve_gitlab(token_block).token


def resolve_gitlab(token_block: str) -> GitLabAuth:
    """The GitLab token (and CA bundle), in order: ``ACRVPC_GITLAB_TOKEN``; the sandbox's; the
    ``GitLabCredentials`` block named ``token_block`` (its token and CA bundle); the Prefect ``Secret``
    block of that name (the old way; a GitLab Credentials block of the same name wins).

    Raises:
        CredentialsError: neither block exists, or the GitLab Credentials block is misfilled.
    """
    token = secret_value(settings().gitlab_token).strip()
    if token:
        return GitLabAuth(token)
    if sandbox_url():
        return GitLabAuth(SANDBOX_GITLAB_TOKEN)
    from prefect.blocks.system import Secret

    try:
        block = load_block(GITLAB_BLOCK_TYPE, token_block)
        return GitLabAuth(block.token.get_secret_value(), block.ca_bundle)
    except BlockUnusable as exc:
        raise CredentialsError(f"gitlab.token_block: {exc}") from None
    except ValueError:  # no such block: the Secret block of that name, as before
        pass
    try:
        # a sync caller: Prefect's async_dispatch returns the block itself, not a coroutine
        return GitLabAuth(str(cast(Secret, Secret.load(token_block)).get()))
    except ValueError:
        raise CredentialsError(
            f"gitlab.token_block: no {GITLAB_BLOCK_TYPE} block and no Prefect Secret block "
            f"named {token_block!r}; create one (`GitLabCredentials(token='glpat-...', url=...).save('{token_block}')`"
            f" or `Secret(value='glpat-...').save('{token_block}')`, README, Credentials) or set "
            f"{GITLAB_TOKEN_ENV}"
        ) from None


def ca_bundle_path(ca_bundle: str | None) -> str | bool:
    """What python-gitlab's ``ssl_verify`` takes for a CA bundle: ``True`` (the system's CAs) without one;
    the path of a bundle file; PEM text written once to a file named by its hash in the temporary directory.

    Raises:
        CredentialsError: a path that is not a file here.
    """
    if not ca_bundle:
        return True
    if "-----BEGIN" in ca_bundle:
        import hashlib
        import tempfile

        path = Path(tempfile.gettempdir()) / f"acrvpc-ca-{hashlib.sha256(ca_bundle.encode()).hexdigest()[:16]}.pem"
        if not path.is_file():
            part = path.with_suffix(f".{os.getpid()}.tmp")
            part.write_text(ca_bundle.strip() + "\n")
            part.replace(path)
        return str(path)
    if not Path(ca_bundle).expanduser().is_file():
        raise CredentialsError(
            f"ca_bundle: no file {ca_bundle!r} on this machine; give the CA bundle's path here, "
            "or paste the PEM text itself into the block's ca_bundle"
        )
    return str(Path(ca_bundle).expanduser())


def gitlab_client(url: str, token: str, *, ca_bundle: str | None = None) -> gitlab.Gitlab:
    """A python-gitlab client for ``url`` (the sandbox's, when ``ACRVPC_SANDBOX_URL`` is set).

    Its retries follow the project's policy (:func:`acrvpc.cloud.callretry.guard_gitlab`): at most
    ``ACRVPC_CALL_RETRIES`` per call, none for POST/PATCH on 5xx or timeouts, ``Retry-After`` capped.
    ``ca_bundle`` (a path or PEM text) checks GitLab's TLS certificate (:func:`ca_bundle_path`).
    """
    import gitlab

    return callretry.guard_gitlab(
        gitlab.Gitlab(
            sandbox_url() or url,
            private_token=token,
            timeout=GITLAB_TIMEOUT_S,
            keep_base_url=True,
            user_agent=USER_AGENT,
            ssl_verify=ca_bundle_path(ca_bundle),
        )
    )


def gitlab_for(spec: Spec) -> gitlab.Gitlab:
    """The GitLab client for a spec's GitLab (its ``api_url``/``endpoint``), with the token (and CA bundle)
    :func:`resolve_gitlab` finds for ``gitlab.token_block``."""
    auth = resolve_gitlab(spec.gitlab.token_block)
    return gitlab_client(spec.gitlab.api_base, auth.token, ca_bundle=auth.ca_bundle)
