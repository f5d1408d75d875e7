"""GitLab REST v4 error answers, serialized in one place.

Each class carries the HTTP status and the JSON body GitLab answers. GitLab has two body shapes:
Grape's ``{"message": ...}`` (401 unknown token, 403, 404, 422) and the OAuth-style
``{"error": ..., "error_description": ...}`` of ``lib/api/api_guard.rb`` (revoked / expired
token, insufficient scope), the latter with a ``WWW-Authenticate: Bearer ...`` header.
"""

from __future__ import annotations

from typing import Any


class GitLabApiError(Exception):
    """An error answer of the GitLab API."""

    status = 500
    message: Any = "500 Internal Server Error"

    def __init__(self, message: Any = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(f"{self.status}: {self.message}")

    def body(self) -> dict[str, Any]:
        return {"message": self.message}

    def headers(self) -> dict[str, str]:
        return {}


class _BearerError(GitLabApiError):
    """The OAuth-style answers of GitLab's API guard."""

    error = "invalid_token"
    description = ""

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}

    def headers(self) -> dict[str, str]:
        return {
            "WWW-Authenticate": f'Bearer realm="Protected by OAuth 2.0", error="{self.error}", '
            f'error_description="{self.description}"'
        }


class Unauthorized(GitLabApiError):
    """No token, or a token GitLab does not know."""

    status = 401
    message = "401 Unauthorized"


class TokenRevoked(_BearerError):
    status = 401
    description = "Token was revoked. You have to re-authorize from the user."


class TokenExpired(_BearerError):
    status = 401
    description = "Token has expired."


class InsufficientScope(_BearerError):
    """The token is valid but none of its scopes admits this endpoint."""

    status = 403
    error = "insufficient_scope"
    description = "The request requires higher privileges than provided by the access token."

    def __init__(self, accepted: tuple[str, ...]) -> None:
        self.scope = " ".join(accepted)
        super().__init__()

    def body(self) -> dict[str, Any]:
        return {**super().body(), "scope": self.scope}

    def headers(self) -> dict[str, str]:
        base = super().headers()["WWW-Authenticate"]
        return {"WWW-Authenticate": f'{base}, scope="{self.scope}"'}


class Forbidden(GitLabApiError):
    """Authenticated, but the role (or account state) does not allow it."""

    status = 403
    message = "403 Forbidden"


class NotFound(GitLabApiError):
    status = 404
    message = "404 Not Found"


class ProjectNotFound(NotFound):
    """The project does not exist, or the user may not see it (GitLab does not tell which)."""

    message = "404 Project Not Found"


class BadRequest(GitLabApiError):
    """Grape's parameter validation: ``{"error": "url is missing"}``."""

    status = 400

    def body(self) -> dict[str, Any]:
        return {"error": self.message}


class Unprocessable(GitLabApiError):
    """Model validation failed: ``{"message": {"url": ["..."]}}``."""

    status = 422
