"""State and rules of the GitLab emulation (no HTTP here).

The scenario's ``gitlab:`` section seeds users, personal access tokens and projects::

    gitlab:
      version: 17.5.1
      users:    [{id: 7, username: release-bot, name: Release Bot, state: active}]
      tokens:   [{token: glpat-..., user: release-bot, name: acr-build, scopes: [api],
                  expires_in_days: 180, revoked: false, active: true}]
      projects: [{id: 42, path_with_namespace: platform/billing-api, default_branch: main,
                  visibility: private, members: {release-bot: 40}}]

Rules (GitLab's): a token authenticates unless unknown (401), expired or revoked (401 with the
OAuth-style body); an endpoint admits a token when it holds one of the endpoint's scopes (403
``insufficient_scope`` otherwise); a private project is invisible (404) to non-members; project
hooks need the Maintainer role (403). Access levels: 10 Guest, 15 Planner, 20 Reporter,
30 Developer, 40 Maintainer, 50 Owner.

Assumptions:
- "Today" is the sandbox's date (UTC, real epoch + sandbox offset), so advancing the sandbox
  clock expires tokens. A token is expired from midnight UTC of its ``expires_at`` date on, as
  GitLab documents ("expire at midnight UTC" of that date).
- ``expires_in_days`` is counted from the date the world was seeded; ``null`` means never.
- A scenario token's ``active: false`` forces ``active`` false in ``/personal_access_tokens/self``
  while it still authenticates (a state real GitLab does not reach; it lets tests exercise a
  client's "inactive" branch). Otherwise ``active`` = not revoked and not expired.
- A blocked user (``state`` other than ``active``) gets 403 on every endpoint.
- Internal and public projects are visible to every authenticated user; only members get a
  ``permissions.project_access``. There are no group memberships (``group_access`` is null).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from ..core.world_view import ServiceWorld
from .errors import Forbidden, InsufficientScope, NotFound, ProjectNotFound, TokenExpired, TokenRevoked, Unauthorized

GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 20, 30, 40, 50


@dataclass
class User:
    id: int
    username: str
    name: str
    state: str = "active"
    email: str = ""
    bot: bool = False


@dataclass
class Token:
    id: int
    secret: str
    user: str  # username
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: date | None = None
    revoked: bool = False
    active_override: bool | None = None
    last_used_at: datetime | None = None


@dataclass
class Hook:
    id: int
    project_id: int
    url: str
    token: str = ""  # stored, never returned
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    attrs: dict[str, Any] = field(default_factory=dict)  # event flags and other settings


def iso(ts: datetime | None) -> str | None:
    """GitLab's timestamp format, e.g. ``2024-07-02T13:37:00.123Z``."""
    if ts is None:
        return None
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


class GitLabBackend:
    """Users, tokens, projects and project hooks of the sandbox GitLab."""

    def __init__(self, world: ServiceWorld) -> None:
        self.world = world
        self.version = "17.5.1"
        self.revision = "b6d0d4a6a5e"
        self.users: dict[str, User] = {}
        self.tokens: dict[str, Token] = {}
        # project id -> the project's record: the scenario entry plus derived keys
        # (path, name, namespace, namespace_id, namespace_kind, created_at).
        self.projects: dict[int, dict[str, Any]] = {}
        self.hooks: dict[int, Hook] = {}
        self._hook_ids = itertools.count(1)
        self.seeded_at = datetime.now(UTC)

    # -- seeding ----------------------------------------------------------------------------
    def load(self, section: dict[str, Any]) -> None:
        """Seed state from the scenario's ``gitlab:`` section."""
        self.seeded_at = self.now()
        self.version = str(section.get("version", self.version))
        self.revision = str(section.get("revision", self.revision))
        for u in section.get("users", []):
            user = User(
                int(u["id"]),
                u["username"],
                u.get("name", u["username"]),
                u.get("state", "active"),
                u.get("email", f"{u['username']}@example.com"),
                bool(u.get("bot", False)),
            )
            self.users[user.username.lower()] = user
        today = self.today()
        for n, t in enumerate(section.get("tokens", []), start=1):
            days = t.get("expires_in_days")
            token = Token(
                id=int(t.get("id", n)),
                secret=str(t["token"]),
                user=t["user"],
                name=t.get("name", f"token-{n}"),
                scopes=list(t.get("scopes", [])),
                created_at=self.seeded_at - timedelta(days=30),
                expires_at=None if days is None else today + timedelta(days=int(days)),
                revoked=bool(t.get("revoked", False)),
                active_override=None if t.get("active") is None else bool(t["active"]),
            )
            self.tokens[token.secret] = token
        namespace_ids: dict[str, int] = {}
        for p in section.get("projects", []):
            full = str(p["path_with_namespace"]).strip("/")
            namespace, _, path = full.rpartition("/")
            ns_id = p.get("namespace_id") or namespace_ids.setdefault(namespace, 100 + len(namespace_ids))
            record = dict(p)
            record.update(
                id=int(p["id"]),
                path_with_namespace=full,
                path=path,
                name=p.get("name", path),
                namespace=namespace,
                namespace_id=int(ns_id),
                namespace_kind="user" if namespace.lower() in self.users else "group",
                default_branch=p.get("default_branch", "main"),
                visibility=p.get("visibility", "private"),
                members={str(k).lower(): int(v) for k, v in (p.get("members") or {}).items()},
                created_at=self.seeded_at - timedelta(days=90),
            )
            self.projects[record["id"]] = record

    # -- time -------------------------------------------------------------------------------
    def now(self) -> datetime:
        """The sandbox's wall-clock time (UTC)."""
        return datetime.fromtimestamp(self.world.clock.epoch_ms() / 1000, tz=UTC)

    def today(self) -> date:
        return self.now().date()

    def token_expired(self, token: Token) -> bool:
        return token.expires_at is not None and token.expires_at <= self.today()

    def token_active(self, token: Token) -> bool:
        if token.active_override is not None:
            return token.active_override
        return not token.revoked and not self.token_expired(token)

    # -- authentication ---------------------------------------------------------------------
    def authenticate(self, secret: str | None, accepted: tuple[str, ...] | None) -> tuple[User, Token]:
        """The user and token behind ``secret``, if the token may call an endpoint.

        Args:
            secret: the token as sent (``PRIVATE-TOKEN`` or ``Authorization: Bearer``).
            accepted: the scopes the endpoint admits; ``None`` admits any scope.

        Raises:
            Unauthorized, TokenExpired, TokenRevoked: the token is not usable (401).
            InsufficientScope: the token holds none of ``accepted`` (403).
            Forbidden: the token's user is blocked (403).
        """
        token = self.tokens.get(secret or "")
        user = self.users.get(token.user.lower()) if token else None
        if token is None or user is None:
            raise Unauthorized()
        # GitLab's AccessTokenValidationService checks expiry, then revocation, then scopes.
        if self.token_expired(token):
            raise TokenExpired()
        if token.revoked:
            raise TokenRevoked()
        if accepted is not None and not set(accepted) & set(token.scopes):
            raise InsufficientScope(accepted)
        if user.state != "active":
            raise Forbidden("403 Forbidden - Your account has been blocked.")
        token.last_used_at = self.now()
        return user, token

    # -- projects ---------------------------------------------------------------------------
    def project(self, ref: str) -> dict[str, Any] | None:
        """A project by numeric id or (URL-encoded) full path, visibility ignored."""
        ref = unquote(ref)
        if ref.isdigit():
            return self.projects.get(int(ref))
        return self.project_by_path(ref)

    def project_by_path(self, path: str) -> dict[str, Any] | None:
        """The project with this ``path_with_namespace`` (used by the CR emulation), or ``None``."""
        wanted = path.strip("/").lower()  # GitLab's full-path lookup is case-insensitive
        for project in self.projects.values():
            if project["path_with_namespace"].lower() == wanted:
                return project
        return None

    def access_level(self, user: User, project: dict[str, Any]) -> int | None:
        """The user's membership access level in the project, or ``None`` for a non-member."""
        return project["members"].get(user.username.lower())

    def visible_project(self, user: User, ref: str) -> dict[str, Any]:
        """The project ``ref`` if ``user`` may see it.

        Raises:
            ProjectNotFound: it does not exist, or it is private and ``user`` is not a member.
        """
        project = self.project(ref)
        if project is None:
            raise ProjectNotFound()
        if project["visibility"] == "private" and self.access_level(user, project) is None:
            raise ProjectNotFound()
        return project

    def require_role(self, user: User, project: dict[str, Any], minimum: int) -> None:
        """Raise :class:`Forbidden` unless ``user`` has at least ``minimum`` in the project."""
        if (self.access_level(user, project) or 0) < minimum:
            raise Forbidden()

    # -- project hooks ----------------------------------------------------------------------
    def list_hooks(self, project: dict[str, Any]) -> list[Hook]:
        return [h for h in self.hooks.values() if h.project_id == project["id"]]

    def get_hook(self, project: dict[str, Any], hook_id: str) -> Hook:
        hook = self.hooks.get(int(hook_id)) if hook_id.isdigit() else None
        if hook is None or hook.project_id != project["id"]:
            raise NotFound()
        return hook

    def add_hook(self, project: dict[str, Any], url: str, token: str, attrs: dict[str, Any]) -> Hook:
        hook = Hook(next(self._hook_ids), project["id"], url, token, self.now(), dict(attrs))
        self.hooks[hook.id] = hook
        return hook

    def update_hook(self, hook: Hook, url: str | None, token: str | None, attrs: dict[str, Any]) -> Hook:
        if url is not None and url != hook.url:
            hook.url = url
            hook.token = ""  # GitLab: changing the URL resets the secret token
        if token is not None:
            hook.token = token
        hook.attrs.update(attrs)
        return hook

    def delete_hook(self, hook: Hook) -> None:
        self.hooks.pop(hook.id, None)
