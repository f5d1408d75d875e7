"""Stage "gitlab": check the GitLab token and the projects before anything is bound.

Calls (all reads): ``GET /user`` (``gl.auth()``), ``GET /personal_access_tokens/self`` (admitted for a
token of any scope, so it reports a token's own scopes and expiry), ``GET /projects/:id`` per
repository. Each failure is a :class:`~acrvpc.cloud.errors.PipelineError` with its own code:

- ``GITLAB_TOKEN_INVALID``: GitLab answers 401 (unknown, revoked or expired token) or refuses the account.
- ``GITLAB_USER_MISMATCH``: the token belongs to another user than ``gitlab.username``.
- ``GITLAB_TOKEN_INACTIVE`` / ``GITLAB_TOKEN_EXPIRED``: the token's own record says so.
- ``GITLAB_TOKEN_SCOPE``: a scope of ``gitlab.required_scopes`` (or the API read access this stage needs) is missing.
- ``GITLAB_PROJECT_NOT_FOUND`` / ``GITLAB_PROJECT_ACCESS``: a project is missing or invisible, or the
  user's role is below Reporter (Maintainer with ``gitlab.register_webhook``); every project is
  checked before the stage fails, and the message lists each problem.
- ``GITLAB_UNREACHABLE`` (retryable): a timeout, refused connection or TLS failure, never reported
  as a bad token.

Messages never contain the token.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import gitlab
import requests
from gitlab.exceptions import GitlabAuthenticationError, GitlabGetError

from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import RETRY, PipelineError
from acrvpc.domain.outcomes import GitLabOutcome
from acrvpc.domain.spec import Spec
from acrvpc.lazy_prefect import task  # Prefect loads on first use: `acrvpc preflight` never needs it

REPORTER, MAINTAINER = 20, 40
EXPIRY_WARNING_DAYS = 14
ROLES = {
    0: "no role",
    5: "Minimal Access",
    10: "Guest",
    15: "Planner",
    20: "Reporter",
    30: "Developer",
    40: "Maintainer",
    50: "Owner",
}
# A required scope is also satisfied by a broader one the token holds.
_SATISFIED_BY = {
    "read_api": {"api"},
    "read_user": {"api", "read_api"},
    "read_repository": {"api", "write_repository"},
    "write_repository": {"api"},
}
# Scopes that let this stage read the user and the projects (GET /projects/:id).
_API_READ = {"api", "read_api"}


def _tokens_page(spec: Spec) -> str:
    return f"{spec.gitlab.api_base}/-/user_settings/personal_access_tokens"


def _new_token_fix(spec: Spec) -> str:
    scopes = ", ".join(spec.gitlab.required_scopes) or "api"
    return (
        f"create a personal access token for {spec.gitlab.username} with scope(s) {scopes} at "
        f"{_tokens_page(spec)} and save it in the token block {spec.gitlab.token_block!r} "
        f"(gitlab.token_block: a GitLab Credentials or Secret block), then rerun"
    )


def _body(exc: gitlab.exceptions.GitlabError) -> dict[str, Any]:
    raw = getattr(exc, "response_body", None)
    try:
        data = json.loads(raw) if raw else {}
    except (ValueError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}


def _reason(exc: gitlab.exceptions.GitlabError, status: int | None = None) -> str:
    """GitLab's explanation: ``error_description`` (revoked / expired), else ``message`` or ``error``."""
    body = _body(exc)
    text = str(body.get("error_description") or body.get("message") or body.get("error") or exc.error_message)
    return text if status is None or text.startswith(str(status)) else f"{status} {text}"


def _role(level: int) -> str:
    return f"{ROLES.get(level, 'access level')} ({level})"


@contextmanager
def _transport_errors(url: str) -> Iterator[None]:
    """Turn timeouts, refused connections and TLS failures into a retryable GITLAB_UNREACHABLE."""
    try:
        yield
    except requests.exceptions.SSLError as exc:
        raise PipelineError(
            f"the TLS handshake with GitLab at {url} failed ({type(exc).__name__})",
            code="GITLAB_UNREACHABLE",
            retryable=True,
            fix="check the scheme and port of gitlab.api_url (or gitlab.endpoint): http vs https, "
            "and that the CA bundle trusts GitLab's certificate",
        ) from exc
    except (
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        requests.exceptions.ChunkedEncodingError,
    ) as exc:
        raise PipelineError(
            f"GitLab at {url} did not answer ({type(exc).__name__}); this is not a token problem",
            code="GITLAB_UNREACHABLE",
            retryable=True,
            fix="check gitlab.api_url (or gitlab.endpoint), that GitLab is running and that this "
            "machine can reach it, then rerun",
        ) from exc


def _authenticate(gl: gitlab.Gitlab, spec: Spec) -> Any:
    """``GET /user``; returns the current user."""
    try:
        gl.auth()
    except GitlabAuthenticationError as exc:
        raise PipelineError(
            f"GitLab at {gl.url} rejected the token (token block {spec.gitlab.token_block!r} or "
            f"{cloud.GITLAB_TOKEN_ENV}): {_reason(exc, 401)}",
            code="GITLAB_TOKEN_INVALID",
            fix=_new_token_fix(spec),
        ) from exc
    except GitlabGetError as exc:
        if exc.response_code == 403 and _body(exc).get("error") == "insufficient_scope":
            return None  # valid token without read_user/read_api/api: the scope check explains it
        if exc.response_code == 403:
            raise PipelineError(
                f"GitLab at {gl.url} refused the account behind the token ({_reason(exc, 403)})",
                code="GITLAB_TOKEN_INVALID",
                fix=f"ask a GitLab administrator to unblock {spec.gitlab.username}, or {_new_token_fix(spec)}",
            ) from exc
        raise
    return gl.user


def _check_token(gl: gitlab.Gitlab, spec: Spec, today: date, outcome_notes: list[str]) -> tuple[list[str], str | None]:
    """``GET /personal_access_tokens/self``: state, expiry and scopes. Returns (scopes, expires_at)."""
    try:
        pat = gl.personal_access_tokens.get("self")
    except GitlabGetError as exc:
        if exc.response_code in (400, 404, 405):
            outcome_notes.append(
                f"GitLab did not describe the token (GET /personal_access_tokens/self: "
                f"{exc.response_code}; GitLab before 15.5, or not a personal access token): "
                f"its scopes and expiry were not checked"
            )
            return [], None
        raise
    name = getattr(pat, "name", "?")
    if getattr(pat, "revoked", False):
        raise PipelineError(
            f"the GitLab token {name!r} is revoked", code="GITLAB_TOKEN_INACTIVE", fix=_new_token_fix(spec)
        )
    expires_at = getattr(pat, "expires_at", None)
    expiry = date.fromisoformat(str(expires_at)[:10]) if expires_at else None
    if expiry is not None and expiry <= today:
        raise PipelineError(
            f"the GitLab token {name!r} expired on {expiry.isoformat()}",
            code="GITLAB_TOKEN_EXPIRED",
            fix=f"rotate it at {_tokens_page(spec)} (or create a new one) and save it in the "
            f"token block {spec.gitlab.token_block!r} (gitlab.token_block), then rerun",
        )
    if not getattr(pat, "active", True):
        raise PipelineError(
            f"GitLab reports the token {name!r} as inactive", code="GITLAB_TOKEN_INACTIVE", fix=_new_token_fix(spec)
        )
    if expiry is not None and (expiry - today).days <= EXPIRY_WARNING_DAYS:
        outcome_notes.append(
            f"the GitLab token {name!r} expires on {expiry.isoformat()} (in {(expiry - today).days} "
            f"day(s)): rotate it at {_tokens_page(spec)} and update the token block "
            f"{spec.gitlab.token_block!r}"
        )
    scopes = [str(s) for s in getattr(pat, "scopes", []) or []]
    held = set(scopes)
    missing = [s for s in spec.gitlab.required_scopes if s not in held and not _SATISFIED_BY.get(s, set()) & held]
    if missing:
        raise PipelineError(
            f"the GitLab token {name!r} lacks scope(s) {', '.join(missing)} (it has {', '.join(scopes) or 'none'})",
            code="GITLAB_TOKEN_SCOPE",
            fix=f"create a token with {', '.join(spec.gitlab.required_scopes)} at {_tokens_page(spec)} "
            f"(scopes cannot be added to an existing token), or change gitlab.required_scopes",
        )
    if not _API_READ & held:
        raise PipelineError(
            f"the GitLab token {name!r} has scope(s) {', '.join(scopes) or 'none'} but this stage "
            f"needs api or read_api to read the user and projects",
            code="GITLAB_TOKEN_SCOPE",
            fix=f"create a token with api (or read_api) at {_tokens_page(spec)} and add it to gitlab.required_scopes",
        )
    return scopes, expiry.isoformat() if expiry else None


def _access_level(project: Any) -> int:
    perms = getattr(project, "permissions", None) or {}
    levels = [0]
    for key in ("project_access", "group_access"):
        entry = perms.get(key) if isinstance(perms, dict) else None
        if isinstance(entry, dict) and entry.get("access_level") is not None:
            levels.append(int(entry["access_level"]))
    return max(levels)


def _check_projects(gl: gitlab.Gitlab, spec: Spec, username: str) -> dict[str, int]:
    """``GET /projects/:id`` for every repository's project; raises once, listing every problem."""
    need = MAINTAINER if spec.gitlab.register_webhook else REPORTER
    why = " (gitlab.register_webhook is true, and webhooks need Maintainer)" if spec.gitlab.register_webhook else ""
    fields: dict[str, list[str]] = {}
    for i, repo in enumerate(spec.repositories):
        fields.setdefault(repo.gitlab_project, []).append(f"repositories[{i}].gitlab_project")
    found: dict[str, int] = {}
    missing: list[tuple[str, str]] = []  # (path, problem)
    low: list[tuple[str, str]] = []
    for path, where in fields.items():
        try:
            project = gl.projects.get(path)
        except GitlabGetError as exc:
            if exc.response_code == 404:
                missing.append(
                    (path, f"{path} ({', '.join(where)}): not found, or private and {username} is not a member")
                )
                continue
            if exc.response_code == 403 and _body(exc).get("error") == "insufficient_scope":
                raise PipelineError(
                    f"the GitLab token may not read project {path} (403 insufficient_scope)",
                    code="GITLAB_TOKEN_SCOPE",
                    fix=f"create a token with api (or read_api) at {_tokens_page(spec)}",
                ) from exc
            raise
        level = _access_level(project)
        if level < need:
            low.append((path, f"{path}: {username} has {_role(level)}, needs at least {_role(need)}{why}"))
        found[path] = int(project.id)
    if not missing and not low:
        return found
    problems = missing + low
    text = f"{len(problems)} GitLab project problem(s): " + "; ".join(problem for _, problem in problems)
    members = ", ".join(f"{spec.gitlab.api_base}/{path}/-/project_members" for path, _ in problems)
    if missing:
        raise PipelineError(
            text,
            code="GITLAB_PROJECT_NOT_FOUND",
            fix=f"check each repositories[*].gitlab_project path (group/project, as in the project's "
            f"URL) and add {username} as a member with the {ROLES[need]} role at {members}",
        )
    raise PipelineError(
        text, code="GITLAB_PROJECT_ACCESS", fix=f"give {username} the {ROLES[need]} role (or higher) at {members}"
    )


def validate_token(gl: gitlab.Gitlab, spec: Spec, *, today: date | None = None) -> GitLabOutcome:
    """Check that the GitLab token works for the pipeline: who it is, its state, scopes and projects.

    Args:
        gl: a python-gitlab client built by :func:`acrvpc.cloud.clients.gitlab_for`.
        spec: the pipeline spec (``gitlab.*`` and ``repositories[*].gitlab_project``).
        today: the date expiry is judged against (UTC today by default).

    Returns:
        The user, the token's scopes and expiry date, and each project's id (``projects``); ``notes``
        says when the token expires within 14 days.

    Raises:
        PipelineError: codes ``GITLAB_TOKEN_INVALID``, ``GITLAB_USER_MISMATCH``, ``GITLAB_TOKEN_INACTIVE``,
            ``GITLAB_TOKEN_EXPIRED``, ``GITLAB_TOKEN_SCOPE``, ``GITLAB_PROJECT_NOT_FOUND``,
            ``GITLAB_PROJECT_ACCESS``, or ``GITLAB_UNREACHABLE`` (retryable).
        gitlab.exceptions.GitlabError: any other GitLab answer (e.g. 5xx, retryable by status).
    """
    today = today or datetime.now(UTC).date()
    notes: list[str] = []
    with _transport_errors(gl.url):
        user = _authenticate(gl, spec)
        if user is not None and user.username.casefold() != spec.gitlab.username.casefold():
            raise PipelineError(
                f"the GitLab token belongs to {user.username!r}, not to gitlab.username {spec.gitlab.username!r}",
                code="GITLAB_USER_MISMATCH",
                fix=f"set gitlab.username to the account bound in the registry console, or save a "
                f"token of {spec.gitlab.username} in the token block {spec.gitlab.token_block!r}",
            )
        scopes, expires_at = _check_token(gl, spec, today, notes)
        if user is None:  # /user refused for scope, yet the token passed the scope checks: read it now
            raise PipelineError(
                "the GitLab token may not read its user (GET /user: insufficient_scope)",
                code="GITLAB_TOKEN_SCOPE",
                fix=f"create a token with api (or read_api) at {_tokens_page(spec)}",
            )
        projects = _check_projects(gl, spec, user.username)
    return GitLabOutcome(
        username=user.username,
        user_id=int(user.id),
        scopes=scopes,
        expires_at=expires_at,
        projects=projects,
        resources={"user": user.username, "projects": ", ".join(f"{p} (id {i})" for p, i in projects.items())},
        notes=notes,
    )


@task(name="gitlab", task_run_name="gitlab {spec.gitlab.username}", **RETRY)
def gitlab_token(spec: Spec) -> GitLabOutcome:
    """Prefect task: :func:`validate_token` with the spec's GitLab client.

    Args:
        spec: the pipeline spec.

    Returns:
        The :class:`~acrvpc.domain.outcomes.GitLabOutcome`.

    Raises:
        PipelineError: see :func:`validate_token`.
    """
    return validate_token(cloud.gitlab_for(spec), spec)
