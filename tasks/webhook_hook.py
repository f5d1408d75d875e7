"""Stage "webhook": the GitLab project hooks that deliver pushes to the receiver.

Run by the full pipeline when ``gitlab.register_webhook`` is true, after the GitLab stage. For
every project named in ``webhook.routes`` (each once) it reads the project's hooks
(``GET /projects/:id/hooks``) and, matching by URL (``webhook.url``):

- creates the hook when none has that URL (``POST /projects/:id/hooks`` with ``push_events``,
  ``tag_push_events``, ``enable_ssl_verification`` and the secret ``token``);
- updates it when its push / tag-push events or TLS verification differ from the spec
  (``PUT /projects/:id/hooks/:hook_id``, the secret sent again);
- otherwise writes nothing, so a converged rerun makes no write.

GitLab never returns a hook's secret, so a rotated secret cannot be detected: after rotating it,
delete the hook in GitLab (Settings > Webhooks) and rerun, and it is created with the new one.
Managing hooks needs the Maintainer role and a token with ``api``.

The secret comes from ``ACRVPC_WEBHOOK_SECRET`` when set, else from the Prefect Secret block
``webhook.secret_block`` (:func:`resolve_webhook_secret`, shared with the receiver). It is never
logged or put in an outcome.
"""

from __future__ import annotations

import os
from typing import Any

import gitlab
from gitlab.exceptions import GitlabError
from prefect import task

from acrvpc import cloud
from acrvpc.errors import RETRY, PipelineError
from acrvpc.outcomes import StageOutcome
from acrvpc.spec import Spec

SECRET_ENV = "ACRVPC_WEBHOOK_SECRET"
EVENTS = ("push_events", "tag_push_events")


def resolve_webhook_secret(spec: Spec) -> str:
    """The X-Gitlab-Token secret: ``ACRVPC_WEBHOOK_SECRET``, else the Secret block ``webhook.secret_block``.

    Args:
        spec: the pipeline spec.

    Returns:
        The secret (never empty).

    Raises:
        PipelineError: ``WEBHOOK_SECRET_MISSING`` when neither is set.
    """
    secret = os.environ.get(SECRET_ENV, "")
    if secret:
        return secret
    from prefect.blocks.system import Secret

    try:
        secret = str(Secret.load(spec.webhook.secret_block).get())
    except ValueError:
        secret = ""
    if not secret:
        block = spec.webhook.secret_block
        raise PipelineError(f"no webhook secret: {SECRET_ENV} is not set and there is no Prefect Secret block "
                            f"named {block!r} (webhook.secret_block)", code="WEBHOOK_SECRET_MISSING",
                            fix=f"save a long random secret with `Secret(value=...).save('{block}')` or set {SECRET_ENV}")
    return secret


def _same_url(a: str, b: str) -> bool:
    return a.strip().rstrip("/") == b.strip().rstrip("/")


def _hook_error(exc: GitlabError, spec: Spec, path: str, action: str) -> Exception:
    if exc.response_code == 403:
        return PipelineError(f"GitLab refused to {action} the webhook of {path} (403)", code="WEBHOOK_HOOK_FORBIDDEN",
                             fix=(f"give {spec.gitlab.username} the Maintainer role on {path} "
                                  f"({spec.gitlab.api_base}/{path}/-/project_members) and use a token with api"))
    if exc.response_code == 404:
        return PipelineError(f"GitLab has no project {path} visible to {spec.gitlab.username}",
                             code="GITLAB_PROJECT_NOT_FOUND",
                             fix=f"check webhook.routes[*].project, and add {spec.gitlab.username} to {path}")
    if exc.response_code == 422:
        return PipelineError(f"GitLab rejected the webhook URL {spec.webhook.url} for {path}: {exc.error_message}",
                             code="WEBHOOK_URL_REJECTED",
                             fix=("set webhook.url to an address GitLab may call; for a receiver on a private "
                                  "network, a GitLab administrator allows it under Admin > Settings > Network > "
                                  "Outbound requests"))
    return exc


def _drift(hook: Any, spec: Spec) -> list[str]:
    drift = [f"{event} false" for event in EVENTS if not getattr(hook, event, False)]
    ssl = bool(getattr(hook, "enable_ssl_verification", True))
    if ssl != spec.webhook.enable_ssl_verification:
        drift.append(f"enable_ssl_verification {str(ssl).lower()}")
    return drift


def ensure_project_hooks(gl: gitlab.Gitlab, spec: Spec, secret: str) -> StageOutcome:
    """Find, create or repair the push webhook of every routed GitLab project.

    Args:
        gl: a python-gitlab client built by :func:`acrvpc.cloud.gitlab_for`.
        spec: the pipeline spec (``webhook.url``, ``webhook.routes``, ``webhook.enable_ssl_verification``).
        secret: the X-Gitlab-Token secret GitLab sends with each delivery.

    Returns:
        A ``webhook`` outcome: each project's hook id in ``resources``, the writes in ``changes``.

    Raises:
        PipelineError: ``WEBHOOK_HOOK_FORBIDDEN`` (not Maintainer, or the token lacks api),
            ``GITLAB_PROJECT_NOT_FOUND``, ``WEBHOOK_URL_REJECTED`` (GitLab refused the URL), or
            ``WEBHOOK_URL_MISSING`` when ``webhook.url`` is not set.
        gitlab.exceptions.GitlabError: any other GitLab answer (5xx are retryable by status).
    """
    url = spec.webhook.url
    if not url:
        raise PipelineError("webhook.url is not set, so there is no address to register", code="WEBHOOK_URL_MISSING",
                            fix="set webhook.url to the receiver's /hooks/gitlab URL")
    wanted = {**{event: True for event in EVENTS}, "enable_ssl_verification": spec.webhook.enable_ssl_verification}
    resources: dict[str, str] = {}
    changes: list[str] = []
    for path in spec.webhook.projects:
        project = gl.projects.get(path, lazy=True)
        try:
            hook = next((h for h in project.hooks.list(get_all=True) if _same_url(h.url, url)), None)
        except GitlabError as exc:
            raise _hook_error(exc, spec, path, "list") from exc
        if hook is None:
            try:
                hook = project.hooks.create({"url": url, "token": secret, **wanted})
            except GitlabError as exc:
                raise _hook_error(exc, spec, path, "create") from exc
            changes.append(f"CreateProjectHook {path} {hook.id} -> {url}")
        else:
            drift = _drift(hook, spec)
            if drift:
                try:
                    project.hooks.update(hook.id, {"url": url, "token": secret, **wanted})
                except GitlabError as exc:
                    raise _hook_error(exc, spec, path, "update") from exc
                changes.append(f"UpdateProjectHook {path} {hook.id} ({', '.join(drift)})")
        resources[path] = f"hook {hook.id}"
    return StageOutcome(stage="webhook", resources=resources, changes=changes)


@task(name="webhook", **RETRY)
def webhook_hook(spec: Spec) -> StageOutcome:
    """Prefect task: :func:`ensure_project_hooks` with the spec's GitLab client and webhook secret.

    Args:
        spec: the pipeline spec.

    Returns:
        The ``webhook`` :class:`~acrvpc.outcomes.StageOutcome`.

    Raises:
        PipelineError: see :func:`ensure_project_hooks` and :func:`resolve_webhook_secret`.
    """
    return ensure_project_hooks(cloud.gitlab_for(spec), spec, resolve_webhook_secret(spec))
