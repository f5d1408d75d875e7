"""The pipeline spec: what a release manager declares, validated before anything is called.

A spec error names the field (as a dotted path such as ``repositories[0].build_rules[1].push_type``)
and says how to fix it. See ``examples/sandbox.yaml`` for a complete spec.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from acrvpc.domain.spec_base import SpecModel as _Model
from acrvpc.domain.spec_base import project_path
from acrvpc.domain.spec_endpoints import ENDPOINT_PRODUCTS, EndpointNetwork, EndpointsSpec  # noqa: F401 - re-exported
from acrvpc.domain.spec_errors import SpecError, validation_problems  # SpecError re-exported
from acrvpc.domain.spec_webhook import (  # noqa: F401 - re-exported: acrvpc.domain.spec is the public import path
    BRANCH_PREFIX,
    TAG_PREFIX,
    WebhookRoute,
    WebhookSpec,
    split_ref,
)

REVERSE_ACCESS_CIDR = "100.104.0.0/16"
TAG_KEY = "acr-vpc-build:link"

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,38}[a-z0-9]$")
_NAMESPACE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,119}$")
_PLATFORMS = {"linux/amd64", "linux/arm64", "linux/386", "linux/arm/v7", "linux/arm/v6"}


class GitLabAccess(str, Enum):
    """How the registry's builders reach GitLab."""

    ECS = "ecs"  # an ECS instance's private IP: its security group must admit 100.104.0.0/16
    SLB = "slb"  # behind a Server Load Balancer: no security-group change needed
    DATACENTER = "datacenter"  # in a data center over Express Connect: VBR return route needed


class LinkMode(str, Enum):
    API = "api"  # the pipeline creates the managed security group and ENI through ECS
    CONSOLE = "console"  # a person does it in the console; the pipeline pauses, then verifies


class PushType(str, Enum):
    GIT_BRANCH = "GIT_BRANCH"
    GIT_TAG = "GIT_TAG"


_project_path = project_path


def _check_cidr(value: str, what: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid {what} ({exc}); write it like 10.10.0.0/16") from None


class NetworkSpec(_Model):
    """The VPC side: where the registry's build ENI goes and how the data center connects."""

    vpc_id: str = Field(
        description="The VPC holding GitLab (or connected to its data center), e.g. vpc-bp1...", examples=["vpc-bp1..."]
    )
    vswitch_id: str = Field(
        description="The vSwitch for the build ENI; its zone must support VPC mode.", examples=["vsw-bp1..."]
    )
    datacenter_cidrs: list[str] = Field(
        default_factory=list, description="Data-center CIDR blocks reached over Express Connect."
    )
    vbr_id: str | None = Field(
        default=None, description="The Express Connect virtual border router (datacenter access)."
    )

    @field_validator("vpc_id")
    @classmethod
    def _vpc(cls, v: str) -> str:
        if not v.startswith("vpc-"):
            raise ValueError(f"{v!r} is not a VPC id; VPC ids start with 'vpc-' (see the VPC console)")
        return v

    @field_validator("vswitch_id")
    @classmethod
    def _vsw(cls, v: str) -> str:
        if not v.startswith("vsw-"):
            raise ValueError(f"{v!r} is not a vSwitch id; vSwitch ids start with 'vsw-'")
        return v

    @field_validator("vbr_id")
    @classmethod
    def _vbr(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("vbr-"):
            raise ValueError(f"{v!r} is not a VBR id; VBR ids start with 'vbr-' (Express Connect console)")
        return v

    @field_validator("datacenter_cidrs")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        return [_check_cidr(c, "CIDR block") for c in v]


class GitLabSpec(_Model):
    """The self-managed GitLab the registry builds from."""

    endpoint: str = Field(
        description="GitLab's URL as the registry reaches it and as bound in the console, e.g. http://192.168.1.20",
        examples=["http://192.168.1.20"],
    )
    api_url: str | None = Field(
        default=None,
        description="Where this pipeline reaches GitLab's API, when it "
        "differs from endpoint (e.g. a bastion or DNS name).",
    )
    private_ip: str = Field(
        description="GitLab's private IPv4 address (the ECS IP, SLB IP or data-center IP).", examples=["192.168.1.20"]
    )
    port: int = Field(default=80, ge=1, le=65535, description="GitLab's HTTP(S) port as the registry reaches it.")
    access: GitLabAccess = Field(default=GitLabAccess.ECS, description="ecs | slb | datacenter")
    security_group_id: str | None = Field(
        default=None,
        description="The GitLab ECS's security group; found from the private IP when omitted (access: ecs).",
    )
    username: str = Field(
        description="The GitLab user the token belongs to (the console's bound user name).", examples=["release-bot"]
    )
    token_block: str = Field(
        default="gitlab-token",
        description="Name of the Prefect block that holds the "
        "personal access token: a GitLab Credentials block "
        "(acrvpc.blocks; wins) or a Secret block.",
    )
    required_scopes: list[str] = Field(
        default_factory=lambda: ["api"], description="Scopes the token must have (the console binding needs api)."
    )
    register_webhook: bool = Field(default=False, description="Register the push webhook on each project.")

    @field_validator("endpoint", "api_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not re.match(r"^https?://[^\s/]+", v):
            raise ValueError(f"{v!r} is not a URL; write it with its scheme, e.g. http://192.168.1.20")
        return v.rstrip("/")

    @field_validator("private_ip")
    @classmethod
    def _ip(cls, v: str) -> str:
        try:
            ip = ipaddress.IPv4Address(v)
        except ValueError:
            raise ValueError(f"{v!r} is not an IPv4 address; give GitLab's private IP, e.g. 192.168.1.20") from None
        return str(ip)

    @field_validator("security_group_id")
    @classmethod
    def _sg(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("sg-"):
            raise ValueError(f"{v!r} is not a security group id; they start with 'sg-'")
        return v

    @property
    def api_base(self) -> str:
        """The URL this pipeline uses for GitLab's API (``api_url`` or ``endpoint``)."""
        return self.api_url or self.endpoint


class AllowedTarget(_Model):
    """One egress destination besides GitLab, e.g. a Maven mirror."""

    cidr: str
    port_range: str = "1/65535"

    @property
    def label(self) -> str:
        return self.cidr if self.port_range == "1/65535" else f"{self.cidr}:{self.port_range.split('/')[0]}"


def _parse_allowed(value: Any) -> AllowedTarget:
    if isinstance(value, dict):
        return AllowedTarget.model_validate(value)  # not **value: a YAML key may be a number (found by fuzzing)
    text = str(value).strip()
    host, _, port = text.partition(":")
    try:
        net = ipaddress.ip_network(host, strict=True)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an IP address or CIDR block; write 192.168.1.30, 10.0.0.0/24 or 192.168.1.30:8081"
        ) from None
    if net.version != 4:
        raise ValueError(f"{text!r}: only IPv4 destinations are supported")
    port_range = "1/65535"
    if port:
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{text!r}: the port after ':' must be a number from 1 to 65535")
        port_range = f"{port}/{port}"
    return AllowedTarget(cidr=str(net), port_range=port_range)


class LinkSpec(_Model):
    """The build link: the managed security group and ENI the registry's builders use."""

    mode: LinkMode = Field(default=LinkMode.API, description="api | console")
    allowed_ips: list[AllowedTarget] = Field(
        default_factory=list, description="Other egress destinations (IP, CIDR or IP:port)."
    )
    build_service_account_id: int | None = Field(
        default=None,
        description="Account id of the registry's build service, granted InstanceAttach on the ENI (api mode).",
    )
    pause_timeout_minutes: float = Field(
        default=60,
        gt=0,
        description="Console mode: how long a guided pause waits for the operator to resume the "
        "run before it fails (CONSOLE_PAUSE_TIMEOUT).",
    )

    @field_validator("allowed_ips", mode="before")
    @classmethod
    def _allowed(cls, v: Any) -> list[AllowedTarget]:
        if v is None:
            return []
        if not isinstance(v, list):
            raise ValueError("must be a list such as [192.168.1.30, 10.0.0.0/24]")
        return [_parse_allowed(item) for item in v]


class BuildRuleSpec(_Model):
    """One ACR build rule: which Git ref builds which image tag."""

    push_type: PushType = Field(default=PushType.GIT_BRANCH, description="GIT_BRANCH | GIT_TAG")
    push_name: str = Field(description="Branch or tag name (or pattern) that triggers the rule.", examples=["main"])
    image_tag: str = Field(description="Image tag to push, e.g. latest.", examples=["latest"])
    dockerfile_location: str = Field(default="/", description="Directory of the Dockerfile in the repository.")
    dockerfile_name: str = Field(default="Dockerfile")
    platforms: list[str] = Field(default_factory=lambda: ["linux/amd64"])
    build_args: list[str] = Field(default_factory=list, description="KEY=VALUE build arguments.")
    build: bool = Field(default=True, description="Start a build of this rule on every pipeline run.")

    @field_validator("platforms")
    @classmethod
    def _platforms(cls, v: list[str]) -> list[str]:
        bad = [p for p in v if p not in _PLATFORMS]
        if bad:
            raise ValueError(f"unsupported platform(s) {bad}; choose from {sorted(_PLATFORMS)}")
        if not v:
            raise ValueError("needs at least one platform, e.g. [linux/amd64]")
        return v

    @field_validator("build_args")
    @classmethod
    def _args(cls, v: list[str]) -> list[str]:
        for arg in v:
            if "=" not in arg:
                raise ValueError(f"build arg {arg!r} must be KEY=VALUE")
        return v

    @field_validator("dockerfile_location")
    @classmethod
    def _loc(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"{v!r} must be a path from the repository root starting with '/', e.g. / or /docker")
        return v


class RepositorySpec(_Model):
    """An ACR image repository built from a GitLab project."""

    namespace: str = Field(description="ACR namespace (created when missing).", examples=["apps"])
    name: str = Field(description="ACR repository name (created when missing).", examples=["billing-api"])
    gitlab_project: str = Field(
        description="GitLab project path, e.g. platform/billing-api.", examples=["platform/billing-api"]
    )
    summary: str = Field(default="", description="Repository summary (defaults to the project path).")
    repo_type: str = Field(default="PRIVATE", pattern="^(PRIVATE|PUBLIC)$")
    auto_build: bool = Field(default=False, description="Let ACR build on every push by itself.")
    disable_cache_build: bool = Field(default=False)
    build_rules: list[BuildRuleSpec] = Field(
        min_length=1, description="The ACR build rules: which Git ref builds which image tag."
    )

    @field_validator("namespace", "name")
    @classmethod
    def _names(cls, v: str) -> str:
        if not _NAMESPACE_RE.match(v):
            raise ValueError(
                f"{v!r} must be 2-120 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return v

    @field_validator("gitlab_project")
    @classmethod
    def _project(cls, v: str) -> str:
        return _project_path(v)

    @property
    def full_name(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def code_repo_namespace(self) -> str:
        return self.gitlab_project.rsplit("/", 1)[0]

    @property
    def code_repo_name(self) -> str:
        return self.gitlab_project.rsplit("/", 1)[1]


class CredentialsSpec(_Model):
    alibaba_block: str | None = Field(
        default=None,
        description="Name of an AlibabaCloudCredentials block; the standard credential chain when omitted.",
    )


class BuildSettings(_Model):
    timeout_minutes: float = Field(default=60, gt=0, description="Cancel a build still running after this long.")
    poll_seconds: float = Field(default=2, gt=0, description="First status poll interval; it relaxes to 30 s.")


class Spec(_Model):
    """The whole pipeline spec."""

    name: str = Field(
        description="Link name: tags every created resource acr-vpc-build:link=<name>.", examples=["billing-build"]
    )
    region: str = Field(description="Region of the instance and VPC, e.g. cn-hangzhou.", examples=["cn-hangzhou"])
    instance_id: str = Field(description="ACR Enterprise Edition instance id, e.g. cri-xxxx.", examples=["cri-..."])
    network: NetworkSpec = Field(description="The VPC side: the VPC holding GitLab and the vSwitch for the build ENI.")
    gitlab: GitLabSpec = Field(description="The self-managed GitLab the registry builds from.")
    link: LinkSpec = Field(default_factory=LinkSpec)
    repositories: list[RepositorySpec] = Field(
        min_length=1, description="The ACR repositories to build, each from a GitLab project."
    )
    credentials: CredentialsSpec = Field(default_factory=CredentialsSpec)
    build: BuildSettings = Field(default_factory=BuildSettings)
    webhook: WebhookSpec = Field(default_factory=WebhookSpec)
    endpoints: EndpointsSpec = Field(
        default_factory=EndpointsSpec,
        description="Which API endpoints the Alibaba Cloud clients call: public (default) or vpc (a worker "
        "inside a VPC without internet access), with per-product overrides cr/ecs/vpc.",
        examples=["vpc"],
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"{v!r} must be 2-40 lower-case letters, digits and '-', e.g. billing-build")
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not re.match(r"^[a-z]{2}-[a-z0-9-]+$", v):
            raise ValueError(f"{v!r} is not a region id; write it like cn-hangzhou")
        return v

    @field_validator("instance_id")
    @classmethod
    def _instance(cls, v: str) -> str:
        if not v.startswith("cri-"):
            raise ValueError(f"{v!r} is not an ACR EE instance id; they start with 'cri-' (Instances page)")
        return v

    @model_validator(mode="after")
    def _cross(self) -> Spec:
        problems: list[str] = []
        if self.gitlab.access == GitLabAccess.DATACENTER:
            if not self.network.datacenter_cidrs:
                problems.append(
                    "network.datacenter_cidrs: gitlab.access is datacenter, so list the data center's CIDR blocks"
                )
            if not self.network.vbr_id:
                problems.append("network.vbr_id: gitlab.access is datacenter, so name the Express Connect VBR")
        if self.link.mode == LinkMode.API and self.link.build_service_account_id is None:
            problems.append(
                "link.build_service_account_id: link.mode is api, so give the account id of the "
                "registry's build service (or use link.mode: console)"
            )
        seen: set[str] = set()
        for i, repo in enumerate(self.repositories):
            if repo.full_name in seen:
                problems.append(f"repositories[{i}]: {repo.full_name} is listed twice; merge the entries")
            seen.add(repo.full_name)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _webhook_routes(self) -> Spec:
        problems = route_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def resource_name(self) -> str:
        """The name of every ECS resource the pipeline creates for this link."""
        return f"acr-vpc-build-{self.name}"

    @property
    def tag(self) -> tuple[str, str]:
        """The tag every created resource carries."""
        return TAG_KEY, self.name


# The cross-field rules that join the webhook routes to the repositories (they need the whole spec).
def rules_named(repo: RepositorySpec, name: str) -> list[BuildRuleSpec]:
    """The build rules of ``repo`` whose image_tag or push_name is ``name``."""
    return [rule for rule in repo.build_rules if name in (rule.image_tag, rule.push_name)]


def route_target(spec: Spec, route: WebhookRoute) -> tuple[RepositorySpec, BuildRuleSpec]:
    """The repository and build rule a (validated) route builds."""
    repo = next(r for r in spec.repositories if r.full_name == route.repository)
    return repo, rules_named(repo, route.rule)[0]


def route_problems(spec: Spec) -> list[str]:
    """The spec's cross-field webhook problems, each ``"field: message with the fix"``."""
    problems: list[str] = []
    repos = {r.full_name: r for r in spec.repositories}
    for i, route in enumerate(spec.webhook.routes):
        where = f"webhook.routes[{i}]"
        repo = repos.get(route.repository)
        if repo is None:
            problems.append(
                f"{where}.repository: {route.repository!r} is not one of repositories[] "
                f"({', '.join(repos)}): name one as namespace/name"
            )
            continue
        rules = rules_named(repo, route.rule)
        if not rules:
            tags = ", ".join(dict.fromkeys(r.image_tag for r in repo.build_rules))
            names = ", ".join(dict.fromkeys(r.push_name for r in repo.build_rules))
            problems.append(
                f"{where}.rule: {route.rule!r} is not a build rule of {repo.full_name}: name one by its "
                f"image_tag ({tags}) or push_name ({names})"
            )
        elif len(rules) > 1:
            problems.append(
                f"{where}.rule: {route.rule!r} names {len(rules)} build rules of {repo.full_name}: use "
                f"a value only one rule has (an image_tag or push_name)"
            )
        else:
            want = PushType.GIT_TAG if route.kind == "tag" else PushType.GIT_BRANCH
            if rules[0].push_type != want:
                problems.append(
                    f"{where}.ref: {route.ref!r} matches {route.kind} pushes, but rule {route.rule!r} of "
                    f"{repo.full_name} is a {rules[0].push_type.value} rule: route "
                    f"{'tags (refs/tags/<glob>)' if want == PushType.GIT_BRANCH else 'branches'} to it, "
                    f"or pick a {want.value} rule"
                )
    if spec.gitlab.register_webhook:
        if not spec.webhook.url:
            problems.append(
                "webhook.url: gitlab.register_webhook is true, so give the URL GitLab delivers to, e.g. "
                "https://hooks.example.com/hooks/gitlab"
            )
        if not spec.webhook.routes:
            problems.append(
                "webhook.routes: gitlab.register_webhook is true, so route at least one project "
                "(hooks are registered on the routed projects)"
            )
    return problems


def parse_spec(data: Any, source: str = "spec") -> Spec:
    """Validate a spec mapping. Raises :class:`SpecError` naming every bad field."""
    if not isinstance(data, dict):
        raise SpecError(source, [("(top level)", "the spec must be a YAML mapping; see examples/sandbox.yaml")])
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(source, validation_problems(exc, Spec)) from None
    except RecursionError:
        raise SpecError(
            source, [("(top level)", "nested too deeply to be a spec; see examples/sandbox.yaml")]
        ) from None


def load_spec(path: str | Path) -> Spec:
    """Read and validate a YAML spec file.

    Raises:
        SpecError: the file is missing, is not YAML, or a field is wrong (each named with its fix).
    """
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise SpecError(
            str(path), [("(file)", "no such file; pass the path of a spec such as examples/sandbox.yaml")]
        ) from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            str(path), [("(file)", f"not UTF-8 text (byte {exc.start}); save the spec as UTF-8 YAML")]
        ) from None
    except OSError as exc:
        raise SpecError(
            str(path),
            [("(file)", f"cannot be read ({exc.strerror or type(exc).__name__}); pass the path of a spec file")],
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise SpecError(str(path), [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    except RecursionError:
        raise SpecError(str(path), [("(file)", "nested too deeply to be a spec")]) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise SpecError(str(path), [("(file)", f"a value cannot be read ({str(exc)[:80]})")]) from None
    return parse_spec(data, str(path))


def resolve_spec(spec: Spec | Mapping[str, Any] | None = None, spec_path: str | Path | None = None) -> Spec:
    """The spec a flow run works on: its ``spec`` parameter (deployment state) or a file.

    Deployments made by ``acrvpc deploy`` carry the whole spec as the ``spec`` parameter (the Prefect
    UI renders it as a form and the run records the exact spec it used); ``acrvpc run``/``demo`` and
    deployments from prefect.yaml name a file with ``spec_path``.

    Args:
        spec: a :class:`Spec`, or its JSON form as a flow-run parameter.
        spec_path: path of a YAML spec file (relative to the worker's working directory).

    Returns:
        The validated spec.

    Raises:
        SpecError: neither or both are given, or the spec is invalid (each bad field named with its fix).
    """
    if spec is not None and spec_path:
        raise SpecError(
            "parameters",
            [
                (
                    "spec_path",
                    "give the run either spec (the deployment's spec) or "
                    "spec_path (a file on the worker), not both; drop spec_path",
                )
            ],
        )
    if isinstance(spec, Spec):
        return spec
    if spec is not None:
        return parse_spec(dict(spec) if isinstance(spec, Mapping) else spec, "parameter spec")
    if spec_path:
        return load_spec(spec_path)
    raise SpecError(
        "parameters",
        [
            (
                "spec",
                "the run has no spec: deploy the spec with `acrvpc deploy SPEC` "
                "(it becomes the deployment's spec parameter), or pass spec_path",
            )
        ],
    )
