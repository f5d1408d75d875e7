"""GitLab-shaped webhook deliveries for the receiver's tests (payloads as in GitLab's webhook_events.md)."""

from __future__ import annotations

import copy

# GitLab's documented "Push events" payload (webhook_events.md), pointed at a routed project.
PUSH = {
    "object_kind": "push",
    "event_name": "push",
    "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
    "after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    "ref": "refs/heads/main",
    "ref_protected": True,
    "checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    "user_id": 4,
    "user_name": "John Smith",
    "user_username": "jsmith",
    "user_email": "john@example.com",
    "user_avatar": "https://s.gravatar.com/avatar/d4c74594d841139328695756648b6bd6?s=80",
    "project_id": 42,
    "project": {
        "id": 42,
        "name": "billing-api",
        "description": "",
        "web_url": "http://192.168.1.20/platform/billing-api",
        "avatar_url": None,
        "git_ssh_url": "git@192.168.1.20:platform/billing-api.git",
        "git_http_url": "http://192.168.1.20/platform/billing-api.git",
        "namespace": "platform",
        "visibility_level": 0,
        "path_with_namespace": "platform/billing-api",
        "default_branch": "main",
        "homepage": "http://192.168.1.20/platform/billing-api",
        "url": "git@192.168.1.20:platform/billing-api.git",
        "ssh_url": "git@192.168.1.20:platform/billing-api.git",
        "http_url": "http://192.168.1.20/platform/billing-api.git",
    },
    "repository": {
        "name": "billing-api",
        "url": "git@192.168.1.20:platform/billing-api.git",
        "description": "",
        "homepage": "http://192.168.1.20/platform/billing-api",
    },
    "commits": [
        {
            "id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            "message": "fixed readme",
            "title": "fixed readme",
            "timestamp": "2012-01-03T23:36:29+02:00",
            "url": "http://192.168.1.20/platform/billing-api/commit/da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            "author": {"name": "GitLab dev user", "email": "gitlabdev@example.com"},
            "added": ["CHANGELOG"],
            "modified": ["app/controller/application.rb"],
            "removed": [],
        }
    ],
    "total_commits_count": 4,
}


def tag_push(tag: str, project: str = "platform/web-frontend") -> dict:
    """GitLab's documented "Tag events" payload for ``refs/tags/<tag>``."""
    body = copy.deepcopy(PUSH)
    body.update(
        object_kind="tag_push",
        event_name="tag_push",
        before="0" * 40,
        after="82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
        ref=f"refs/tags/{tag}",
        checkout_sha="82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
        commits=[],
        total_commits_count=0,
        project_id=43,
    )
    body["project"].update(id=43, name=project.split("/")[1], path_with_namespace=project)
    return body
