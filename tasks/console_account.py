"""Console mode, "bind account": whether the spec's GitLab is bound to the instance, through CR.

A bound repository of the spec answers by ``GetRepoSourceCodeRepo.CodeRepoDomain`` (reads only).
Otherwise ``CreateRepoSourceCodeRepo`` on an existing unbound repository of the spec, with exactly
the binding the binding stage makes, answers: ``SOURCE_CODE_ACCOUNT_NOT_EXIST`` means not bound,
and nothing was written; success means bound (and that repository's binding, which the binding
stage would make next, is done). When no repository of the spec exists yet, CR cannot be asked
without one: :func:`check_account` says so (``bound=None``) unless asked to create the first
repository's namespace and repository, as the binding stage does first anyway.

The GitLab token is typed by the operator into the console; it is never shown, logged or stored here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from alibabacloud_cr20181201 import models as cr_models
from prefect import task
from prefect.cache_policies import NO_CACHE

from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import RETRY, CrBusinessError, PipelineError, check_cr
from acrvpc.cloud.waiting import wait_until
from acrvpc.domain.outcomes import StageOutcome
from acrvpc.domain.spec import Spec
from tasks.binding import (
    ACCOUNT_NOT_BOUND,
    CODE_REPO_MISSING,
    create_source,
    ensure_namespace,
    ensure_repository,
    get_source,
)

ACCOUNT_NOT_BOUND_CODE = "CONSOLE_ACCOUNT_NOT_BOUND"
VERIFY_FIRST_POLL_S = 1.0  # the console's verifications poll 1 s, doubling to 5 s (wait_until's bounds)
VERIFY_MAX_POLL_S = 5.0
_REPO_ABSENT = {"REPO_NOT_EXIST", "NAMESPACE_NOT_EXIST"}


class AccountOutcome(StageOutcome):
    """Whether the instance has the spec's GitLab bound (the console's "bind account")."""

    stage: str = "account"
    bound: bool | None  # None: no repository of the spec exists, so CR could not be asked
    domain: str = ""  # CodeRepoDomain, when a bound repository showed it
    evidence: str = ""


# -- account ------------------------------------------------------------------------------------
def _same_endpoint(a: str, b: str) -> bool:
    return a.strip().rstrip("/").lower() == b.strip().rstrip("/").lower()


def _domain_answer(spec: Spec, full_name: str, domain: str, changes: list[str]) -> AccountOutcome:
    if not domain:  # bound, but CR names no endpoint: the binding stage accepts that too
        return AccountOutcome(bound=True, changes=changes, evidence=f"{full_name} is bound (no CodeRepoDomain shown)")
    same = _same_endpoint(domain, spec.gitlab.endpoint)
    evidence = f"{full_name} builds from the GitLab at {domain}" + (
        "" if same else f", not the spec's gitlab.endpoint {spec.gitlab.endpoint}"
    )
    return AccountOutcome(
        bound=same,
        domain=domain,
        evidence=evidence,
        changes=changes,
        resources={"account": f"{spec.gitlab.username} @ {domain}"} if same else {},
    )


def check_account(cr: Any, spec: Spec, *, create_repository: bool = False) -> AccountOutcome:
    """Find out whether the instance has the spec's GitLab bound, writing nothing when it has not.

    Args:
        cr: a Container Registry 2018-12-01 client (from :mod:`acrvpc.cloud.clients`).
        spec: the pipeline spec (instance_id, gitlab.endpoint, repositories).
        create_repository: when no repository of the spec exists, create the first one's namespace and
            repository (as the binding stage does first) so CR can be asked.

    Returns:
        ``bound`` True (the endpoint is bound), False (no GitLab account, or one for another endpoint:
        ``evidence`` says which), or None (no repository exists and ``create_repository`` is False).
        ``changes`` lists any write: the namespace/repository created on request and, only when the
        account is bound, the first unbound repository's source binding (the binding stage's own).

    Raises:
        CrBusinessError: a CR failure other than the answers above (e.g. ``INSTANCE_NOT_EXIST``).
    """
    changes: list[str] = []
    unbound: list[tuple[Any, str]] = []
    for repo in spec.repositories:
        try:
            repo_id = check_cr(
                cr.get_repository(
                    cr_models.GetRepositoryRequest(
                        instance_id=spec.instance_id, repo_namespace_name=repo.namespace, repo_name=repo.name
                    )
                ),
                "GetRepository",
            ).repo_id
        except CrBusinessError as exc:
            if exc.code in _REPO_ABSENT:
                continue
            raise
        source = get_source(cr, spec, repo_id)
        if source is not None:
            return _domain_answer(spec, repo.full_name, source.code_repo_domain or "", changes)
        unbound.append((repo, repo_id))
    if not unbound:
        if not create_repository:
            return AccountOutcome(bound=None, evidence=f"no repository of the spec exists yet in {spec.instance_id}")
        repo = spec.repositories[0]
        ensure_namespace(cr, spec, repo, changes)
        unbound.append((repo, ensure_repository(cr, spec, repo, changes)))
    repo, repo_id = unbound[0]
    try:
        create_source(cr, spec, repo, repo_id)
    except CrBusinessError as exc:
        if exc.code in ACCOUNT_NOT_BOUND:
            return AccountOutcome(
                bound=False,
                changes=changes,
                evidence=f"CreateRepoSourceCodeRepo for {repo.full_name} answered {exc.code}: no "
                f"GitLab account is bound to {spec.instance_id}",
            )
        if exc.code in CODE_REPO_MISSING:  # the account answered: the project is the binding stage's to report
            return AccountOutcome(
                bound=True,
                changes=changes,
                evidence=f"a GitLab account is bound to {spec.instance_id} (it does not see {repo.gitlab_project})",
            )
        raise
    changes.append(f"CreateRepoSourceCodeRepo {repo.full_name} -> {repo.gitlab_project}")
    source = get_source(cr, spec, repo_id)
    return _domain_answer(spec, repo.full_name, source.code_repo_domain if source else "", changes)


def account_bound(cr: Any, spec: Spec) -> bool:
    """Whether the instance has the spec's GitLab endpoint bound (see :func:`check_account`).

    Args:
        cr: a Container Registry 2018-12-01 client.
        spec: the pipeline spec.

    Returns:
        True when the spec's endpoint is bound. Reads only when a repository of the spec is bound; no
        source binding is ever written when the answer is False.
    """
    return check_account(cr, spec, create_repository=True).bound is True


def verify_account(
    cr: Any, spec: Spec, *, timeout_s: float = 0.0, sleep: Callable[[float], None] = time.sleep
) -> AccountOutcome:
    """Check the operator's "Bind Account", retrying for a while.

    Args:
        cr: a Container Registry 2018-12-01 client.
        spec: the pipeline spec.
        timeout_s: how long to keep retrying while the account is not (yet) bound.
        sleep: the sleep function between checks.

    Returns:
        The :class:`AccountOutcome` (bound).

    Raises:
        PipelineError: ``CONSOLE_ACCOUNT_NOT_BOUND`` with the evidence and the fix.
    """

    def once() -> AccountOutcome:
        found = check_account(cr, spec, create_repository=True)
        if found.bound:
            return found
        raise PipelineError(
            f"the GitLab account is not bound to {spec.instance_id} as the spec asks: {found.evidence}",
            code=ACCOUNT_NOT_BOUND_CODE,
            fix=(
                f"in the Container Registry console open instance {spec.instance_id} > Repository > Code Source > "
                f"GitLab > Bind Account and bind endpoint {spec.gitlab.endpoint} with user {spec.gitlab.username}, "
                f"then rerun"
            ),
        )

    return wait_until(
        once,
        what=f"the GitLab account to be bound to {spec.instance_id}",
        timeout_s=timeout_s,
        sleep=sleep,
        first_s=VERIFY_FIRST_POLL_S,
        max_s=VERIFY_MAX_POLL_S,
        retry_on=lambda exc: isinstance(exc, PipelineError) and exc.code == ACCOUNT_NOT_BOUND_CODE,
    )


# -- tasks ----------------------------------------------------------------------------------------
@task(
    name="check-console-account",
    task_run_name="check-console-account {spec.gitlab.username}",
    cache_policy=NO_CACHE,
    **RETRY,
)
def check_account_task(spec: Spec) -> AccountOutcome:
    """Whether the spec's GitLab is bound to the instance (console mode; see :func:`check_account`).

    Args:
        spec: the pipeline spec.

    Returns:
        The :class:`AccountOutcome`; the first repository is created when none exists yet.

    Raises:
        CrBusinessError: an unexpected CR failure.
    """
    return check_account(cloud.cloud_clients(spec).cr, spec, create_repository=True)


@task(
    name="verify-console-account",
    task_run_name="verify-console-account {spec.gitlab.username}",
    cache_policy=NO_CACHE,
    **RETRY,
)
def verify_account_task(spec: Spec, wait_s: float = 0.0) -> AccountOutcome:
    """Verify the operator's "Bind Account" through the CR API (console mode).

    Args:
        spec: the pipeline spec.
        wait_s: how long to keep retrying while the account is not bound yet.

    Returns:
        The :class:`AccountOutcome` (bound).

    Raises:
        PipelineError: ``CONSOLE_ACCOUNT_NOT_BOUND``.
    """
    return verify_account(cloud.cloud_clients(spec).cr, spec, timeout_s=wait_s)
