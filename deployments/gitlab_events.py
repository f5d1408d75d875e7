"""GitLab's push and tag-push webhook payloads, as documented.

Source: GitLab's ``doc/user/project/integrations/webhook_events.md``, sections "Push events"
(header ``X-Gitlab-Event: Push Hook``, ``object_kind: push``) and "Tag events" (header
``X-Gitlab-Event: Tag Push Hook``, ``object_kind: tag_push``). Only the fields the receiver reads
are required; the other documented fields are optional, and unknown ones are ignored (GitLab adds
fields over time).

- ``ref`` is ``refs/heads/<branch>`` for pushes and ``refs/tags/<tag>`` for tag pushes.
- ``after`` is 40 zeros when the branch or tag was deleted (``checkout_sha`` is then null);
  ``before`` is 40 zeros when it was created.
- ``commits`` holds at most the newest 20 commits; ``total_commits_count`` the real count.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ZERO_SHA = "0" * 40
PUSH_HOOK, TAG_PUSH_HOOK = "Push Hook", "Tag Push Hook"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class EventProject(_Payload):
    """The ``project`` object of a push payload."""

    id: int
    name: str = ""
    description: str | None = None
    web_url: str = ""
    git_ssh_url: str | None = None
    git_http_url: str | None = None
    namespace: str = ""
    visibility_level: int | None = None
    path_with_namespace: str
    default_branch: str | None = None


class EventCommit(_Payload):
    """One entry of ``commits``."""

    id: str
    message: str = ""
    title: str = ""
    timestamp: str | None = None
    url: str | None = None


class PushEvent(_Payload):
    """A ``Push Hook`` delivery (``object_kind: push``)."""

    object_kind: Literal["push"]
    event_name: str = "push"
    before: str = Field(min_length=1)
    after: str = Field(min_length=1)
    ref: str = Field(min_length=1)
    ref_protected: bool | None = None
    checkout_sha: str | None = None
    user_id: int | None = None
    user_name: str | None = None
    user_username: str | None = None
    project_id: int
    project: EventProject
    commits: list[EventCommit] = Field(default_factory=list)
    total_commits_count: int = 0

    @property
    def deleted(self) -> bool:
        """The push deleted its branch (or tag): ``after`` is 40 zeros."""
        return self.after == ZERO_SHA

    @property
    def sha(self) -> str:
        """The commit pushed: ``checkout_sha``, else ``after``."""
        return self.checkout_sha or self.after


class TagPushEvent(PushEvent):
    """A ``Tag Push Hook`` delivery (``object_kind: tag_push``): the same fields as a push."""

    object_kind: Literal["tag_push"]  # type: ignore[assignment]
    event_name: str = "tag_push"


EVENT_MODELS: dict[str, type[PushEvent]] = {PUSH_HOOK: PushEvent, TAG_PUSH_HOOK: TagPushEvent}
