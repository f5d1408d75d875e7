"""Stage "webhook": the GitLab project hooks that deliver pushes to the receiver.

Run by the full pipeline when ``gitlab.register_webhook`` is true, after the GitLab stage. For
every project named in ``webhook.routes`` (each once) it reads the project's hooks
(``GET /projects/:id/hooks``) and, matching by URL (``webhook.url``):

- creates the hook when none has that URL (``POST /projects/:id/hooks`` with ``push_events``,
  ``tag_push_events``, ``enable_ssl_verification`` and the secret ``token``). The POST is sent
  once, never retried on a 5xx or timeout (it may have landed); such a failure is answered by
  listing the hooks again, and a hook with the URL is taken as created;
- updates it when its push / tag-push events or TLS verification differ from the spec
  (``PUT /projects/:id/hooks/:hook_id``, the secret sent again);
- otherwise writes nothing, so a converged rerun makes no write.

GitLab never returns a hook's secret, so a rotated secret cannot be detected: after rotating it,
delete the hook in GitLab (Settings > Webhooks) and rerun, and it is created with the new one.
Managing hooks needs the Maintainer role and a token with ``api``.

The secret comes from ``ACRVPC_WEBHOOK_SECRET`` when set, else from the Prefect Secret block
``webhook.secret_block`` (:func:`resolve_webhook_secret`, shared with the receiver). It is never
logged or put in an outcome.

GitLab >= 19 also signs deliveries with a signing token (``whsec_`` + base64 of 32 bytes; the
Standard Webhooks scheme: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``). When
``ACRVPC_WEBHOOK_SIGNING_SECRET`` or the block ``webhook.signing_secret_block`` holds one
(:func:`resolve_signing_secret`), the hook is registered with it as ``signing_token``, and the
receiver refuses unsigned deliveries. GitLab never returns it either; a hook whose
``signing_token_present`` is false while one is wanted is updated.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any, cast

import gitlab
from gitlab.exceptions import GitlabError
from prefect import task

from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import RETRY, PipelineError, error_code, is_retryable
from acrvpc.domain.outcomes import StageOutcome
from acrvpc.domain.spec import Spec
from acrvpc.settings import secret_value, settings

SECRET_ENV = "ACRVPC_WEBHOOK_SECRET"
SIGNING_SECRET_ENV = "ACRVPC_WEBHOOK_SIGNING_SECRET"
SIGNING_PREFIX = "whsec_"
EVENTS = ("push_events", "tag_push_events")


def _secret_block(name: str) -> str:
    from prefect.blocks.system import Secret

    try:
        # a sync caller: Prefect's async_dispatch returns the block itself, not a coroutine
        return str(cast(Secret, Secret.load(name)).get())
    except ValueError:
        return ""


def resolve_webhook_secret(spec: Spec, *, required: bool = True) -> str | None:
    """The X-Gitlab-Token secret: ``ACRVPC_WEBHOOK_SECRET``, else the Secret block ``webhook.secret_block``.

    Args:
        spec: the pipeline spec.
        required: raise when there is none (False when a signing token authenticates deliveries instead).

    Returns:
        The secret as GitLab sends it (line breaks removed, trimmed: ``normalize_secret``), or None
        when there is none and it is not required.

    Raises:
        PipelineError: ``WEBHOOK_SECRET_MISSING`` when neither is set and ``required``.
    """
    from deployments.webhook_guard import normalize_secret  # GitLab sends it without line breaks, trimmed

    secret = normalize_secret(secret_value(settings().webhook_secret) or _secret_block(spec.webhook.secret_block))
    if not secret and required:
        block = spec.webhook.secret_block
        raise PipelineError(
            f"no webhook secret: {SECRET_ENV} is not set and there is no Prefect Secret block "
            f"named {block!r} (webhook.secret_block)",
            code="WEBHOOK_SECRET_MISSING",
            fix=f"save a long random secret with `Secret(value=...).save('{block}')` or set {SECRET_ENV}",
        )
    return secret or None


def check_signing_secret(secret: str) -> str:
    """Check that ``secret`` is a Standard Webhooks signing key as GitLab takes it: ``whsec_`` + base64 of 32 bytes.

    Args:
        secret: the candidate signing token.

    Returns:
        The token, stripped.

    Raises:
        PipelineError: ``WEBHOOK_SIGNING_SECRET_INVALID`` naming the expected form (never the value).
    """
    token = secret.strip()
    body = token.removeprefix(SIGNING_PREFIX)
    try:
        key = base64.b64decode(body, validate=True) if token.startswith(SIGNING_PREFIX) else b""
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != 32:
        raise PipelineError(
            "the webhook signing token is not whsec_ followed by the base64 of 32 bytes",
            code="WEBHOOK_SIGNING_SECRET_INVALID",
            fix=(
                "make one with python -c \"import base64,os;print('whsec_'+base64.b64encode("
                'os.urandom(32)).decode())" and give the same value to GitLab and to '
                f"{SIGNING_SECRET_ENV} or webhook.signing_secret_block"
            ),
        )
    return token


def resolve_signing_secret(spec: Spec) -> str | None:
    """GitLab's webhook signing token: ``ACRVPC_WEBHOOK_SIGNING_SECRET``, else ``webhook.signing_secret_block``.

    Args:
        spec: the pipeline spec.

    Returns:
        The ``whsec_...`` token, or None when signing is not configured (no variable, no block named).

    Raises:
        PipelineError: ``WEBHOOK_SIGNING_SECRET_MISSING`` when the named block does not exist or is empty;
            ``WEBHOOK_SIGNING_SECRET_INVALID`` when the token is not ``whsec_`` + base64 of 32 bytes.
    """
    token = secret_value(settings().webhook_signing_secret)
    block = spec.webhook.signing_secret_block
    if not token and block:
        token = _secret_block(block)
        if not token:
            raise PipelineError(
                f"no webhook signing token: {SIGNING_SECRET_ENV} is not set and there is no Prefect "
                f"Secret block named {block!r} (webhook.signing_secret_block)",
                code="WEBHOOK_SIGNING_SECRET_MISSING",
                fix=f"save GitLab's signing token with `Secret(value='whsec_...').save('{block}')`, "
                f"set {SIGNING_SECRET_ENV}, or remove webhook.signing_secret_block",
            )
    return check_signing_secret(token) if token else None


def _same_url(a: str, b: str) -> bool:
    return a.strip().rstrip("/") == b.strip().rstrip("/")


def _hook_error(exc: GitlabError, spec: Spec, path: str, action: str) -> Exception:
    if exc.response_code == 403:
        return PipelineError(
            f"GitLab refused to {action} the webhook of {path} (403)",
            code="WEBHOOK_HOOK_FORBIDDEN",
            fix=(
                f"give {spec.gitlab.username} the Maintainer role on {path} "
                f"({spec.gitlab.api_base}/{path}/-/project_members) and use a token with api"
            ),
        )
    if exc.response_code == 404:
        return PipelineError(
            f"GitLab has no project {path} visible to {spec.gitlab.username}",
            code="GITLAB_PROJECT_NOT_FOUND",
            fix=f"check webhook.routes[*].project, and add {spec.gitlab.username} to {path}",
        )
    if exc.response_code == 422:
        return PipelineError(
            f"GitLab rejected the webhook URL {spec.webhook.url} for {path}: {exc.error_message}",
            code="WEBHOOK_URL_REJECTED",
            fix=(
                "set webhook.url to an address GitLab may call; for a receiver on a private "
                "network, a GitLab administrator allows it under Admin > Settings > Network > "
                "Outbound requests"
            ),
        )
    return exc


def _drift(hook: Any, spec: Spec, signing: bool) -> list[str]:
    drift = [f"{event} false" for event in EVENTS if not getattr(hook, event, False)]
    ssl = bool(getattr(hook, "enable_ssl_verification", True))
    if ssl != spec.webhook.enable_ssl_verification:
        drift.append(f"enable_ssl_verification {str(ssl).lower()}")
    if signing and getattr(hook, "signing_token_present", None) is False:  # absent before GitLab 19: unknown
        drift.append("signing_token_present false")
    return drift


def _tokens(secret: str | None, signing_token: str | None) -> dict[str, str]:
    return {**({"token": secret} if secret else {}), **({"signing_token": signing_token} if signing_token else {})}


def _find_hook(project: Any, spec: Spec, path: str, url: str) -> Any:
    """The project's hook with this URL, or None (``GET /projects/:id/hooks``, retried in place)."""
    try:
        return next((h for h in project.hooks.list(get_all=True) if _same_url(h.url, url)), None)
    except GitlabError as exc:
        raise _hook_error(exc, spec, path, "list") from exc


def _created_after_all(exc: Exception, project: Any, spec: Spec, path: str, url: str) -> Any:
    """After a failed ``POST /projects/:id/hooks``: the hook if it was created anyway, else the error.

    The POST is sent once (:func:`acrvpc.cloud.callretry.guard_gitlab`): a 5xx, timeout or dropped
    connection may come after GitLab created the hook, and sending it again would register a second
    one. So a transient failure is answered by reading the hooks again: a hook with the URL is the one
    this call created; none means the create did not happen, and the (retryable) error goes to the
    task's retry, which lists before it creates.
    """
    if not is_retryable(exc):
        explained = _hook_error(exc, spec, path, "create") if isinstance(exc, GitlabError) else exc
        if explained is exc:
            raise exc
        raise explained from exc
    hook = _find_hook(project, spec, path, url)
    if hook is None:
        raise exc
    logging.getLogger(__name__).warning(
        "webhook of %s: the create answered %s, but the hook exists (%s): using it",
        path,
        error_code(exc) or getattr(exc, "response_code", None) or type(exc).__name__,
        hook.id,
    )
    return hook


def ensure_project_hooks(
    gl: gitlab.Gitlab, spec: Spec, secret: str | None, signing_token: str | None = None
) -> StageOutcome:
    """Find, create or repair the push webhook of every routed GitLab project.

    Args:
        gl: a python-gitlab client built by :func:`acrvpc.cloud.clients.gitlab_for`.
        spec: the pipeline spec (``webhook.url``, ``webhook.routes``, ``webhook.enable_ssl_verification``).
        secret: the X-Gitlab-Token secret GitLab sends with each delivery (None: none is set).
        signing_token: GitLab's ``whsec_`` signing token (None: deliveries are not signed).

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
        raise PipelineError(
            "webhook.url is not set, so there is no address to register",
            code="WEBHOOK_URL_MISSING",
            fix="set webhook.url to the receiver's /hooks/gitlab URL",
        )
    wanted = {**{event: True for event in EVENTS}, "enable_ssl_verification": spec.webhook.enable_ssl_verification}
    tokens = _tokens(secret, signing_token)
    resources: dict[str, str] = {}
    changes: list[str] = []
    for path in spec.webhook.projects:
        project = gl.projects.get(path, lazy=True)
        hook = _find_hook(project, spec, path, url)
        if hook is None:
            try:
                hook = project.hooks.create({"url": url, **tokens, **wanted})
            except Exception as exc:  # noqa: BLE001 - a lost answer is re-read below
                hook = _created_after_all(exc, project, spec, path, url)
            changes.append(f"CreateProjectHook {path} {hook.id} -> {url}")
        else:
            drift = _drift(hook, spec, signing_token is not None)
            if drift:
                try:
                    project.hooks.update(hook.id, {"url": url, **tokens, **wanted})
                except GitlabError as exc:
                    raise _hook_error(exc, spec, path, "update") from exc
                changes.append(f"UpdateProjectHook {path} {hook.id} ({', '.join(drift)})")
        resources[path] = f"hook {hook.id}"
    return StageOutcome(stage="webhook", resources=resources, changes=changes)


@task(name="webhook", task_run_name="webhook {spec.name}", **RETRY)
def webhook_hook(spec: Spec) -> StageOutcome:
    """Prefect task: :func:`ensure_project_hooks` with the spec's GitLab client, secret and signing token.

    The X-Gitlab-Token secret is optional when a signing token is configured.

    Args:
        spec: the pipeline spec.

    Returns:
        The ``webhook`` :class:`~acrvpc.domain.outcomes.StageOutcome`.

    Raises:
        PipelineError: see :func:`ensure_project_hooks`, :func:`resolve_webhook_secret` and
            :func:`resolve_signing_secret`.
    """
    signing_token = resolve_signing_secret(spec)
    secret = resolve_webhook_secret(spec, required=signing_token is None)
    return ensure_project_hooks(cloud.gitlab_for(spec), spec, secret, signing_token)
