"""Binding stage: an ACR repository bound to its GitLab project, with the spec's build rules.

For one :class:`~acrvpc.domain.spec.RepositorySpec` it converges, reading before every write:

1. the namespace (GetNamespace -> CreateNamespace when ``NAMESPACE_NOT_EXIST``);
2. the repository (GetRepository -> CreateRepository when ``REPO_NOT_EXIST``);
3. the source-code binding (GetRepoSourceCodeRepo -> CreateRepoSourceCodeRepo when unbound,
   UpdateRepoSourceCodeRepo when it points at another project or its flags differ; builds
   outside mainland China are always turned off), then verifies that the bound GitLab is the
   spec's endpoint (``CodeRepoDomain``);
4. the build rules (ListRepoBuildRule, every page -> CreateRepoBuildRule for each spec rule that
   no existing rule matches).

A converged repository costs read calls only. Two repositories of one namespace are bound
concurrently, so a failed CreateNamespace/CreateRepository is followed by a second read: if the
resource now exists (another task made it), that counts as success, whatever code the create
answered. The console's "bind account" has no API: an instance without a GitLab account raises
``GITLAB_ACCOUNT_NOT_BOUND`` with the console steps.

Plan mode (``plan=True``, used by ``acrvpc plan``): the same reads, and each write the stage would make
recorded in ``changes`` (in the same words as a real run) without calling it. Once a namespace or
repository is missing, the reads below it are skipped (there is nothing to read) and its creates are
planned; ids still to be made are :data:`PLANNED_REPOSITORY` and :data:`PLANNED_RULE`. Plan mode cannot
see ``GITLAB_ACCOUNT_NOT_BOUND`` (only CreateRepoSourceCodeRepo reveals it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alibabacloud_cr20181201 import models as cr_models
from alibabacloud_cr20181201.client import Client as CrClient

from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import RETRY, CrBusinessError, PipelineError, check_cr
from acrvpc.cloud.paging import paginate
from acrvpc.domain.outcomes import BindingOutcome, BoundRule
from acrvpc.domain.spec import BuildRuleSpec, RepositorySpec, Spec
from acrvpc.lazy_prefect import task

CODE_REPO_TYPE = "GITLAB"
RULES_PAGE_SIZE = 100
# GetRepoSourceCodeRepo's answer for a repository bound to no source code (the sandbox's code;
# an answer with an empty CodeRepoName counts as unbound as well).
SOURCE_NOT_BOUND = {"REPO_SOURCE_CODE_NOT_EXIST"}
ACCOUNT_NOT_BOUND = {"SOURCE_CODE_ACCOUNT_NOT_EXIST"}
CODE_REPO_MISSING = {"CODE_REPO_NOT_EXIST"}
PLANNED_REPOSITORY = "<new repository>"  # plan mode: ids a run would create
PLANNED_RULE = "<new build rule>"


def _flag(value: Any) -> bool:
    """CR's string booleans ("true"/"false", any case) and real booleans."""
    return str(value).strip().lower() == "true"


def _same_endpoint(a: str, b: str) -> bool:
    return a.strip().rstrip("/").lower() == b.strip().rstrip("/").lower()


def _account_not_bound(spec: Spec, repo: RepositorySpec) -> PipelineError:
    return PipelineError(
        f"instance {spec.instance_id} has no GitLab account bound, so {repo.full_name} cannot be linked to "
        f"{repo.gitlab_project}",
        code="GITLAB_ACCOUNT_NOT_BOUND",
        fix=(
            f"in the Container Registry console open instance {spec.instance_id} > Repositories > Code Source > "
            f"GitLab and bind endpoint {spec.gitlab.endpoint}, user {spec.gitlab.username}, with the personal "
            f"access token from the token block '{spec.gitlab.token_block}' (gitlab.token_block); then rerun "
            f"(or set link.mode: console to be guided through it)"
        ),
    )


def _create_or_confirm(create: Callable[[], Any], confirm: Callable[[], Any]) -> bool:
    """Run ``create``; when CR refuses it, ``confirm`` (a read) decides whether the resource exists anyway.

    Returns:
        True when this call created the resource, False when another writer had.
    """
    try:
        create()
        return True
    except CrBusinessError as exc:
        try:
            confirm()
        except CrBusinessError:
            raise exc from None
        return False


def ensure_namespace(cr: CrClient, spec: Spec, repo: RepositorySpec, changes: list[str], *, plan: bool = False) -> bool:
    """GetNamespace, and CreateNamespace when it does not exist.

    Returns:
        Whether the namespace exists now (False only in plan mode, for a namespace a run would create).
    """

    def get() -> Any:
        return check_cr(
            cr.get_namespace(
                cr_models.GetNamespaceRequest(instance_id=spec.instance_id, namespace_name=repo.namespace)
            ),
            "GetNamespace",
        )

    try:
        get()
        return True
    except CrBusinessError as exc:
        if exc.code != "NAMESPACE_NOT_EXIST":
            raise
    if plan:
        changes.append(f"CreateNamespace {repo.namespace}")
        return False
    created = _create_or_confirm(
        lambda: check_cr(
            cr.create_namespace(
                cr_models.CreateNamespaceRequest(
                    instance_id=spec.instance_id,
                    namespace_name=repo.namespace,
                    auto_create_repo=False,
                    default_repo_type="PRIVATE",
                )
            ),
            "CreateNamespace",
        ),
        get,
    )
    if created:
        changes.append(f"CreateNamespace {repo.namespace}")
    return True


def ensure_repository(
    cr: CrClient,
    spec: Spec,
    repo: RepositorySpec,
    changes: list[str],
    *,
    plan: bool = False,
    namespace_exists: bool = True,
) -> str:
    """GetRepository by namespace and name, and CreateRepository when it does not exist.

    Returns:
        The repository id (``crr-...``; :data:`PLANNED_REPOSITORY` in plan mode for one a run would create).
    """
    if plan and not namespace_exists:
        changes.append(f"CreateRepository {repo.full_name} {PLANNED_REPOSITORY}")
        return PLANNED_REPOSITORY

    def get() -> Any:
        return check_cr(
            cr.get_repository(
                cr_models.GetRepositoryRequest(
                    instance_id=spec.instance_id, repo_namespace_name=repo.namespace, repo_name=repo.name
                )
            ),
            "GetRepository",
        )

    try:
        return get().repo_id
    except CrBusinessError as exc:
        if exc.code != "REPO_NOT_EXIST":
            raise
    if plan:
        changes.append(f"CreateRepository {repo.full_name} {PLANNED_REPOSITORY}")
        return PLANNED_REPOSITORY
    result: dict[str, str] = {}

    def create() -> None:
        body = check_cr(
            cr.create_repository(
                cr_models.CreateRepositoryRequest(
                    instance_id=spec.instance_id,
                    repo_namespace_name=repo.namespace,
                    repo_name=repo.name,
                    repo_type=repo.repo_type,
                    summary=repo.summary or repo.gitlab_project,
                )
            ),
            "CreateRepository",
        )
        result["id"] = body.repo_id

    if _create_or_confirm(create, get):
        changes.append(f"CreateRepository {repo.full_name} {result['id']}")
        return result["id"]
    return get().repo_id


def get_source(cr: CrClient, spec: Spec, repo_id: str) -> Any | None:
    """The repository's source-code binding, or ``None`` when it has none."""
    try:
        body = check_cr(
            cr.get_repo_source_code_repo(
                cr_models.GetRepoSourceCodeRepoRequest(instance_id=spec.instance_id, repo_id=repo_id)
            ),
            "GetRepoSourceCodeRepo",
        )
    except CrBusinessError as exc:
        if exc.code in SOURCE_NOT_BOUND:
            return None
        raise
    return body if body.code_repo_name else None


def _source_drift(source: Any, repo: RepositorySpec) -> list[str]:
    drift = []
    if (source.code_repo_type or "").upper() != CODE_REPO_TYPE:
        drift.append(f"CodeRepoType {source.code_repo_type} != {CODE_REPO_TYPE}")
    if (source.code_repo_namespace_name, source.code_repo_name) != (repo.code_repo_namespace, repo.code_repo_name):
        drift.append(f"project {source.code_repo_namespace_name}/{source.code_repo_name} != {repo.gitlab_project}")
    if _flag(source.oversea_build):
        drift.append("OverseaBuild true != false")
    if _flag(source.auto_build) != repo.auto_build:
        drift.append(f"AutoBuild {source.auto_build} != {str(repo.auto_build).lower()}")
    if _flag(source.disable_cache_build) != repo.disable_cache_build:
        drift.append(f"DisableCacheBuild {source.disable_cache_build} != {str(repo.disable_cache_build).lower()}")
    return drift


def _source_error(exc: CrBusinessError, spec: Spec, repo: RepositorySpec) -> Exception:
    if exc.code in ACCOUNT_NOT_BOUND:
        return _account_not_bound(spec, repo)
    if exc.code in CODE_REPO_MISSING:
        return PipelineError(
            f"the GitLab bound to instance {spec.instance_id} has no project {repo.gitlab_project} visible to its "
            f"account",
            code="CODE_REPO_NOT_EXIST",
            fix=(
                f"check repositories[].gitlab_project for {repo.full_name}, and give GitLab user "
                f"{spec.gitlab.username} access to the project"
            ),
        )
    return exc


def ensure_source(
    cr: CrClient,
    spec: Spec,
    repo: RepositorySpec,
    repo_id: str,
    changes: list[str],
    notes: list[str],
    *,
    plan: bool = False,
) -> None:
    """Bind the repository to its GitLab project (or repair the binding), then verify the endpoint.

    In plan mode, record the bind or repair a run would make without making it (and without the read
    when ``repo_id`` is :data:`PLANNED_REPOSITORY`).

    Raises:
        PipelineError: ``GITLAB_ACCOUNT_NOT_BOUND``, ``CODE_REPO_NOT_EXIST`` or ``GITLAB_ENDPOINT_MISMATCH``.
    """
    source = None if plan and repo_id == PLANNED_REPOSITORY else get_source(cr, spec, repo_id)
    if plan:
        _plan_source(spec, repo, source, changes, notes)
        return
    try:
        if source is None:
            create_source(cr, spec, repo, repo_id)
            changes.append(f"CreateRepoSourceCodeRepo {repo.full_name} -> {repo.gitlab_project}")
        else:
            _check_endpoint(spec, repo, source.code_repo_domain or "")
            drift = _source_drift(source, repo)
            if not drift:
                return
            check_cr(
                cr.update_repo_source_code_repo(
                    cr_models.UpdateRepoSourceCodeRepoRequest(
                        instance_id=spec.instance_id,
                        repo_id=repo_id,
                        code_repo_type=CODE_REPO_TYPE,
                        code_repo_namespace_name=repo.code_repo_namespace,
                        code_repo_name=repo.code_repo_name,
                        auto_build=str(repo.auto_build).lower(),
                        oversea_build="false",
                        disable_cache_build=str(repo.disable_cache_build).lower(),
                    )
                ),
                "UpdateRepoSourceCodeRepo",
            )
            changes.append(f"UpdateRepoSourceCodeRepo {repo.full_name} ({'; '.join(drift)})")
            notes.append(f"{repo.full_name}: repaired source binding: {'; '.join(drift)}")
    except CrBusinessError as exc:
        raise _source_error(exc, spec, repo) from exc
    verified = get_source(cr, spec, repo_id)
    if verified is None:
        raise PipelineError(
            f"{repo.full_name} shows no source binding right after it was bound",
            code="SOURCE_BINDING_NOT_VISIBLE",
            fix="rerun; if it persists, check the console",
            retryable=True,
        )
    _check_endpoint(spec, repo, verified.code_repo_domain or "")


def _plan_source(spec: Spec, repo: RepositorySpec, source: Any | None, changes: list[str], notes: list[str]) -> None:
    if source is None:
        changes.append(f"CreateRepoSourceCodeRepo {repo.full_name} -> {repo.gitlab_project}")
        return
    _check_endpoint(spec, repo, source.code_repo_domain or "")
    drift = _source_drift(source, repo)
    if drift:
        changes.append(f"UpdateRepoSourceCodeRepo {repo.full_name} ({'; '.join(drift)})")
        notes.append(f"{repo.full_name}: a run would repair the source binding: {'; '.join(drift)}")


def create_source(cr: Any, spec: Spec, repo: RepositorySpec, repo_id: str) -> None:
    """Bind ``repo`` to its GitLab project (CreateRepoSourceCodeRepo; builds outside mainland China off)."""
    check_cr(
        cr.create_repo_source_code_repo(
            cr_models.CreateRepoSourceCodeRepoRequest(
                instance_id=spec.instance_id,
                repo_id=repo_id,
                code_repo_type=CODE_REPO_TYPE,
                code_repo_namespace_name=repo.code_repo_namespace,
                code_repo_name=repo.code_repo_name,
                auto_build=repo.auto_build,
                oversea_build=False,
                disable_cache_build=repo.disable_cache_build,
            )
        ),
        "CreateRepoSourceCodeRepo",
    )


def _check_endpoint(spec: Spec, repo: RepositorySpec, domain: str) -> None:
    if domain and not _same_endpoint(domain, spec.gitlab.endpoint):
        raise PipelineError(
            f"{repo.full_name} builds from the GitLab at {domain}, but the spec's gitlab.endpoint is "
            f"{spec.gitlab.endpoint}",
            code="GITLAB_ENDPOINT_MISMATCH",
            fix=(
                f"rebind the instance's GitLab code source to {spec.gitlab.endpoint} in the Container Registry "
                f"console (instance {spec.instance_id} > Repositories > Code Source), or set gitlab.endpoint to "
                f"{domain}"
            ),
        )


def list_build_rules(cr: CrClient, spec: Spec, repo_id: str) -> list[Any]:
    """Every build rule of a repository (ListRepoBuildRule, all pages)."""

    def fetch(page: int) -> Any:
        return check_cr(
            cr.list_repo_build_rule(
                cr_models.ListRepoBuildRuleRequest(
                    instance_id=spec.instance_id, repo_id=repo_id, page_no=page, page_size=RULES_PAGE_SIZE
                )
            ),
            "ListRepoBuildRule",
        )

    return list(paginate(fetch, lambda body: body.build_rules, what=f"ListRepoBuildRule of {repo_id}", by="page"))


def _matches(existing: Any, wanted: BuildRuleSpec) -> bool:
    return (
        (existing.push_type or "").upper() == wanted.push_type.value
        and existing.push_name == wanted.push_name
        and existing.image_tag == wanted.image_tag
        and (existing.dockerfile_location or "/") == wanted.dockerfile_location
        and (existing.dockerfile_name or "Dockerfile") == wanted.dockerfile_name
        and sorted(existing.platforms or ["linux/amd64"]) == sorted(wanted.platforms)
    )


def ensure_build_rules(
    cr: CrClient,
    spec: Spec,
    repo: RepositorySpec,
    repo_id: str,
    changes: list[str],
    notes: list[str],
    *,
    plan: bool = False,
) -> list[BoundRule]:
    """Find or create one build rule per spec rule, in spec order (in plan mode, record the creates only)."""
    existing = [] if plan and repo_id == PLANNED_REPOSITORY else list_build_rules(cr, spec, repo_id)
    bound: list[BoundRule] = []
    for wanted in repo.build_rules:
        match = next((r for r in existing if _matches(r, wanted)), None)
        if match is not None:
            rule_id = match.build_rule_id
            if sorted(match.build_args or []) != sorted(wanted.build_args):
                notes.append(
                    f"{repo.full_name}: rule {rule_id} has build args {match.build_args or []}, the spec "
                    f"says {wanted.build_args}; change them in the console"
                )
        elif plan:
            rule_id = PLANNED_RULE
            changes.append(
                f"CreateRepoBuildRule {repo.full_name} {wanted.push_type.value}:{wanted.push_name} -> "
                f"{wanted.image_tag} {rule_id}"
            )
        else:
            body = check_cr(
                cr.create_repo_build_rule(
                    cr_models.CreateRepoBuildRuleRequest(
                        instance_id=spec.instance_id,
                        repo_id=repo_id,
                        push_type=wanted.push_type.value,
                        push_name=wanted.push_name,
                        image_tag=wanted.image_tag,
                        dockerfile_location=wanted.dockerfile_location,
                        dockerfile_name=wanted.dockerfile_name,
                        platforms=list(wanted.platforms),
                        build_args=list(wanted.build_args) or None,
                    )
                ),
                "CreateRepoBuildRule",
            )
            rule_id = body.build_rule_id
            changes.append(
                f"CreateRepoBuildRule {repo.full_name} {wanted.push_type.value}:{wanted.push_name} -> "
                f"{wanted.image_tag} {rule_id}"
            )
        bound.append(
            BoundRule(
                build_rule_id=rule_id,
                push_type=wanted.push_type.value,
                push_name=wanted.push_name,
                image_tag=wanted.image_tag,
                build=wanted.build,
            )
        )
    return bound


def bind_repository(cr: CrClient, spec: Spec, repo: RepositorySpec, *, plan: bool = False) -> BindingOutcome:
    """Converge one ACR repository: namespace, repository, GitLab source binding and build rules.

    Args:
        cr: a Container Registry 2018-12-01 client (from :mod:`acrvpc.cloud.clients`).
        spec: the pipeline spec (instance id, GitLab endpoint and user).
        repo: the repository to bind.
        plan: read only, and record the writes a run would make in ``changes`` without making them
            (ids still to be made are :data:`PLANNED_REPOSITORY` and :data:`PLANNED_RULE`).

    Returns:
        The repository id, its bound rules (with the spec's ``build`` flag), and the writes made.

    Raises:
        PipelineError: ``GITLAB_ACCOUNT_NOT_BOUND`` (no GitLab account on the instance),
            ``GITLAB_ENDPOINT_MISMATCH`` (bound to another GitLab), ``CODE_REPO_NOT_EXIST``, or a
            :class:`~acrvpc.cloud.errors.CrBusinessError` carrying CR's code (e.g. ``INSTANCE_NOT_EXIST``).
    """
    changes: list[str] = []
    notes: list[str] = []
    namespace_exists = ensure_namespace(cr, spec, repo, changes, plan=plan)
    repo_id = ensure_repository(cr, spec, repo, changes, plan=plan, namespace_exists=namespace_exists)
    ensure_source(cr, spec, repo, repo_id, changes, notes, plan=plan)
    rules = ensure_build_rules(cr, spec, repo, repo_id, changes, notes, plan=plan)
    return BindingOutcome(
        namespace=repo.namespace,
        name=repo.name,
        repo_id=repo_id,
        gitlab_project=repo.gitlab_project,
        rules=rules,
        resources={"repository": f"{repo.full_name} ({repo_id})", "rules": ",".join(r.build_rule_id for r in rules)},
        changes=changes,
        notes=notes,
    )


@task(name="binding", task_run_name="binding {repo.namespace}/{repo.name}", **RETRY)
def binding(spec: Spec, repo: RepositorySpec) -> BindingOutcome:
    """Bind one ACR repository to its GitLab project and create its build rules.

    Args:
        spec: the pipeline spec.
        repo: one of ``spec.repositories``.

    Returns:
        The :class:`~acrvpc.domain.outcomes.BindingOutcome` of :func:`bind_repository`.

    Raises:
        PipelineError: as :func:`bind_repository`; transient errors are retried by Prefect.
    """
    return bind_repository(cloud.cloud_clients(spec).cr, spec, repo)
