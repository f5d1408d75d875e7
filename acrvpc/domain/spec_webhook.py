"""The spec's ``webhook`` section: the GitLab webhook receiver's routes and settings.

Re-exported by :mod:`acrvpc.domain.spec` (import from there). Built on :mod:`acrvpc.domain.spec_base` only:
the checks that join routes to the repositories and rules (``route_problems``, ``route_target``) need the
whole spec and live in :mod:`acrvpc.domain.spec`, so the import goes one way.
"""

from __future__ import annotations

import ipaddress
import re
from fnmatch import fnmatchcase
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator

from acrvpc.domain.spec_base import SpecModel, project_path

BRANCH_PREFIX, TAG_PREFIX = "refs/heads/", "refs/tags/"
MAX_REPLAY_WINDOW_S = 300
DEFAULT_RATE_LIMIT = "15000/minute"
"""Per source address. All deliveries of one GitLab instance come from one address, and GitLab never
resends a refused one, so the default must exceed what one instance legitimately sends: GitLab.com
caps webhook calls per top-level namespace at 500-13,000 a minute by plan, self-managed GitLab has no
cap by default. 15,000/minute is above GitLab.com's highest plan; the spool absorbs the burst (runs are
created at Prefect's pace). It still bounds a flood from a foreign address (refused before the body
is read). Lower it (e.g. 600/minute) for a small instance."""


def check_rate_limit(value: str) -> str:
    """A rate limit such as ``60/minute``, ``1000/second`` or ``10 per second``, checked with ``limits``.

    Raises:
        ValueError: the text is not one rate limit.
    """
    from limits import parse_many

    try:
        parsed = parse_many(value)
    except (ValueError, TypeError, OverflowError):
        parsed = []
    if len(parsed) != 1 or parsed[0].amount < 1:
        raise ValueError(f"{value!r} is not a rate limit; write it like 60/minute or 1000/second")
    return value.strip()


def check_proxy(value: str) -> str:
    """A trusted proxy address: an IP or a CIDR block (normalised).

    Raises:
        ValueError: it is neither.
    """
    try:
        return str(ipaddress.ip_network(str(value).strip(), strict=False))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or CIDR block; write 10.0.0.5 or 10.0.0.0/24") from None


def split_ref(ref: str) -> tuple[str, str] | None:
    """``("branch", name)`` for ``refs/heads/<name>``, ``("tag", name)`` for ``refs/tags/<name>``, else None."""
    for kind, prefix in (("branch", BRANCH_PREFIX), ("tag", TAG_PREFIX)):
        if ref.startswith(prefix) and len(ref) > len(prefix):
            return kind, ref[len(prefix) :]
    return None


class WebhookRoute(SpecModel):
    """One route of the GitLab webhook receiver: pushes to matching refs of a project build one rule.

    ``ref`` is a glob (``*``, ``?``, ``[...]``; ``*`` also matches ``/``). A bare pattern such as
    ``main`` or ``release-*`` and a ``refs/heads/<glob>`` pattern match BRANCH names of push events;
    a ``refs/tags/<glob>`` pattern matches TAG names of tag-push events. A branch named like a tag
    pattern never matches it, and the other way round.
    """

    project: str = Field(description="GitLab project path the push comes from, e.g. platform/billing-api.")
    ref: str = Field(
        description="Ref glob: main, release-* or refs/heads/<glob> for branches, refs/tags/<glob> for tags."
    )
    repository: str = Field(description="The repository to build, as namespace/name of one of repositories[].")
    rule: str = Field(description="Its build rule, named by the rule's image_tag or push_name.")

    @field_validator("project")
    @classmethod
    def _project(cls, v: str) -> str:
        return project_path(v)

    @field_validator("ref")
    @classmethod
    def _ref(cls, v: str) -> str:
        if not v or (v.startswith("refs/") and split_ref(v) is None):
            raise ValueError(
                f"{v!r} is not a ref pattern; write a branch glob such as main or release-*, or a tag "
                f"glob such as refs/tags/v*"
            )
        return v

    @property
    def kind(self) -> str:
        """``branch`` or ``tag``: which pushes the route matches."""
        return "tag" if self.ref.startswith(TAG_PREFIX) else "branch"

    @property
    def pattern(self) -> str:
        """The glob matched against the branch or tag name."""
        parsed = split_ref(self.ref)
        return parsed[1] if parsed else self.ref

    def matches(self, project: str, ref: str) -> bool:
        """Whether a push of ``ref`` (``refs/heads/...`` or ``refs/tags/...``) to ``project`` takes this route."""
        parsed = split_ref(ref)
        return (
            parsed is not None
            and project.strip("/").casefold() == self.project.casefold()
            and parsed[0] == self.kind
            and fnmatchcase(parsed[1], self.pattern)
        )


class WebhookSpec(SpecModel):
    """The GitLab webhook: where GitLab delivers pushes, its secret, and which pushes build what."""

    url: str | None = Field(
        default=None,
        description="Where GitLab delivers events (the receiver's "
        "/hooks/gitlab URL), used to register the project hook.",
    )
    secret_block: str = Field(
        default="gitlab-webhook-secret",
        description="Name of the Prefect Secret block with "
        "the X-Gitlab-Token secret "
        "(ACRVPC_WEBHOOK_SECRET wins when set).",
    )
    enable_ssl_verification: bool = Field(
        default=True, description="GitLab verifies the receiver's TLS certificate (registered hook setting)."
    )
    deployment: str = Field(
        default="build-on-push/webhook",
        description="The deployment a routed push starts, as flow-name/deployment-name.",
    )
    routes: list[WebhookRoute] = Field(
        default_factory=list, description="Project + ref glob -> repository and build rule; the first match wins."
    )
    signing_secret_block: str | None = Field(
        default=None,
        description="Name of the Prefect Secret block with GitLab's webhook signing token (whsec_...; "
        "ACRVPC_WEBHOOK_SIGNING_SECRET wins when set). When either is set, every delivery "
        "must carry a valid Standard Webhooks webhook-signature.",
    )
    replay_window_seconds: int = Field(
        default=MAX_REPLAY_WINDOW_S,
        ge=1,
        le=MAX_REPLAY_WINDOW_S,
        description="Signed deliveries whose webhook-timestamp is further than this from now are refused "
        "(at most 300, the standardwebhooks library's tolerance).",
    )
    rate_limit: str = Field(
        default=DEFAULT_RATE_LIMIT,
        description="Deliveries allowed per source address in a moving window, e.g. "
        "15000/minute or 100/second (over it: 429 with Retry-After). One "
        "GitLab instance delivers from one address: keep it above the "
        "instance's busiest minute.",
    )
    trusted_proxies: list[Annotated[str, AfterValidator(check_proxy)]] = Field(
        default_factory=list,
        description="Addresses (IP or CIDR) of reverse proxies in front of the receiver: "
        "only requests from them have X-Forwarded-For honoured.",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError(
                f"{v!r} is not a URL; write it with its scheme, e.g. https://hooks.example.com/hooks/gitlab"
            )
        return v

    @field_validator("signing_secret_block")
    @classmethod
    def _signing_block(cls, v: str | None) -> str | None:
        if v is not None and not v:
            raise ValueError("is empty: name the Prefect Secret block with the signing token, or leave it out")
        return v

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit(cls, v: str) -> str:
        return check_rate_limit(v)

    @field_validator("deployment")
    @classmethod
    def _deployment(cls, v: str) -> str:
        if v.count("/") != 1 or v.startswith("/") or v.endswith("/"):
            raise ValueError(f"{v!r} must name a deployment as flow-name/deployment-name, e.g. build-on-push/webhook")
        return v

    def route_for(self, project: str, ref: str) -> WebhookRoute | None:
        """The first route a push of ``ref`` to ``project`` takes, or None."""
        return next((route for route in self.routes if route.matches(project, ref)), None)

    @property
    def projects(self) -> list[str]:
        """The routed GitLab projects, each once, in route order."""
        return list(dict.fromkeys(route.project for route in self.routes))
