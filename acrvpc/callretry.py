"""Call-level retries for API calls that are safe to repeat.

Task retries (:data:`acrvpc.errors.RETRY`) re-run a whole stage. A stage makes many calls, so
under a steady rate of transient faults a stage-level retry alone rarely gets through: with 20%
of calls failing, a stage of 15 calls succeeds on 0.8^15 = 3.5% of its attempts. So calls that
are safe to repeat are also retried where they fail, a few times with a short exponential
backoff and full jitter, before the error reaches the task:

* reads (``Describe*``, ``Get*``, ``List*``);
* writes that carry a ``ClientToken`` (the service deduplicates them);
* writes whose repetition the stages already treat as success: ``AuthorizeSecurityGroup*``
  (an identical rule is a no-op), ``Revoke*`` and ``Delete*`` (gone counts as done),
  ``Modify*``/``Update*`` (same values again), ``CreateNamespace``, ``CreateRepository``,
  ``CreateRepoSourceCodeRepo`` (an "already exists" answer makes the stage re-read), and
  ``CreateNetworkInterfacePermission`` (a second grant returns the first).

Never retried here: ``CreateBuildRecordByRule`` (it would start a second build),
``CreateRepoBuildRule`` (rules may be duplicated), and any other write not listed.

``ACRVPC_CALL_RETRIES`` sets the attempts after the first (default 3; 0 turns this off).
"""

from __future__ import annotations

import logging
import os
import random
import time
from typing import Any, Callable

from .errors import error_code, is_retryable

logger = logging.getLogger(__name__)

SAFE_PREFIXES = ("Describe", "Get", "List", "AuthorizeSecurityGroup", "Revoke", "Delete", "Modify", "Update")
SAFE_WRITES = {"CreateNamespace", "CreateRepository", "CreateRepoSourceCodeRepo", "CreateNetworkInterfacePermission"}
BASE_DELAY_S = 0.2
MAX_DELAY_S = 2.0


def attempts_after_first() -> int:
    raw = os.environ.get("ACRVPC_CALL_RETRIES", "").strip()
    if not raw:
        return 3
    if not raw.isdigit():
        raise ValueError(f"ACRVPC_CALL_RETRIES={raw!r}: write a whole number of retries, e.g. 3 (0 turns them off)")
    return int(raw)


def safe_to_repeat(action: str, query: dict[str, Any] | None) -> bool:
    """Whether repeating ``action`` with these parameters cannot do anything twice."""
    if action in SAFE_WRITES or action.startswith(SAFE_PREFIXES):
        return True
    return bool(query and query.get("ClientToken"))


def guard(client: Any, product: str, sleep: Callable[[float], None] = time.sleep) -> Any:
    """Retry a client's transient failures of safe calls in place (wraps its ``call_api``).

    Args:
        client: a tea-openapi based client (CR, ECS, VPC), possibly already rate-limited.
        product: ``cr``, ``ecs`` or ``vpc`` (for logs).
        sleep: the pause between attempts (tests may pass their own).

    Returns:
        The same client.
    """
    retries = attempts_after_first()
    if retries == 0:
        return client
    call_api = client.call_api

    def retrying_call_api(params: Any, request: Any, runtime: Any) -> dict:
        query = getattr(request, "query", None)
        attempt = 0
        while True:
            try:
                return call_api(params, request, runtime)
            except Exception as exc:  # noqa: BLE001 - classified below
                if attempt >= retries or not is_retryable(exc) or not safe_to_repeat(params.action, query):
                    raise
                delay = random.uniform(0, min(MAX_DELAY_S, BASE_DELAY_S * 2 ** attempt))
                attempt += 1
                logger.info("%s %s: %s, retry %d/%d in %.2f s", product, params.action,
                            error_code(exc) or type(exc).__name__, attempt, retries, delay)
                sleep(delay)

    client.call_api = retrying_call_api
    return client
