"""Every SDK client the pipeline gets refuses actions :mod:`acrvpc.domain.actions` does not declare.

:func:`guard` wraps a client's ``call_api``: an undeclared action is refused before it is sent
(``ACTION_NOT_DECLARED``: the least-privilege policy generated from the declarations would not allow
it), and a permission error names the RAM action to grant. The declarations are the domain's; this
wrapper is cloud access, so it lives here (the domain imports nothing of :mod:`acrvpc.cloud`).
"""

from __future__ import annotations

from typing import Any

from acrvpc.cloud.errors import PipelineError
from acrvpc.domain.actions import THIS_FILE, declared, ram_action

DENIED_CODES = {"Forbidden.RAM", "Forbidden.RAMSTS", "NoPrivilege", "NoPermission"}


def not_declared_error(product: str, action: str) -> Exception:
    """The ``ACTION_NOT_DECLARED`` error for an undeclared call."""
    return PipelineError(
        f"{product} API action {action} is not declared in {THIS_FILE}, so the pipeline may not call it "
        f"(the least-privilege policy would not allow it)",
        code="ACTION_NOT_DECLARED",
        fix=f"declare Api({product!r}, {action!r}, <RAM action>, <resource kind>) in the stage that calls it in "
        f"{THIS_FILE}; `acrvpc policy` then grants it",
    )


def _denied_note(product: str, action: str, exc: BaseException) -> str:
    detail = getattr(exc, "access_denied_detail", None) or getattr(exc, "accessDeniedDetail", None) or {}
    auth_action = detail.get("AuthAction") if isinstance(detail, dict) else None
    return (
        f" [RAM denied {auth_action or ram_action(product, action)} (API {action}): grant it to the AccessKey; "
        f"`acrvpc policy SPEC` prints the policy that does]"
    )


def guard(client: Any, product: str) -> Any:
    """Refuse undeclared actions before sending, and name the RAM action in permission errors.

    Wraps the instance's ``call_api`` / ``call_api_async`` (as :func:`acrvpc.cloud.ratelimit.guard` does).

    Args:
        client: a tea-openapi based client (CR, ECS, VPC).
        product: ``cr``, ``ecs`` or ``vpc``.

    Returns:
        The same client.

    Raises:
        PipelineError: (from the wrapped calls) ``ACTION_NOT_DECLARED`` for an action missing here.
    """
    allowed = declared(product)
    call_api, call_api_async = client.call_api, client.call_api_async

    def annotate(action: str, exc: BaseException) -> None:
        code = getattr(exc, "code", None)
        message = getattr(exc, "message", None)
        if code in DENIED_CODES and isinstance(message, str) and "RAM denied" not in message:
            sdk_error: Any = exc  # the SDK's errors (TeaException) carry a writable message
            sdk_error.message = message + _denied_note(product, action, exc)

    def declared_call_api(params: Any, request: Any, runtime: Any) -> dict:
        if params.action not in allowed:
            raise not_declared_error(product, params.action)
        try:
            return call_api(params, request, runtime)
        except Exception as exc:
            annotate(params.action, exc)
            raise

    async def declared_call_api_async(params: Any, request: Any, runtime: Any) -> dict:
        if params.action not in allowed:
            raise not_declared_error(product, params.action)
        try:
            return await call_api_async(params, request, runtime)
        except Exception as exc:
            annotate(params.action, exc)
            raise

    client.call_api = declared_call_api
    client.call_api_async = declared_call_api_async
    return client
