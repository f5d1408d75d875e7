"""What a push needs before its build: the routed repository's binding, verified without writing.

:func:`verify_binding` runs the binding stage's reads in plan mode
(:func:`tasks.binding.bind_repository` with ``plan=True``): namespace, repository, GitLab source
binding (and its endpoint) and build rules. A push does not set anything up: if the full
pipeline would still make any write for this repository, the binding is not converged and the
push fails with ``BINDING_NOT_CONVERGED``, naming what is missing and how to converge it.
"""

from __future__ import annotations

from alibabacloud_cr20181201.client import Client as CrClient
from prefect import task

from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import RETRY, PipelineError
from acrvpc.domain.outcomes import BindingOutcome, BoundRule
from acrvpc.domain.spec import BuildRuleSpec, RepositorySpec, Spec
from tasks.binding import bind_repository

FULL_PIPELINE = "vpc-build/nightly"


def verify_binding(
    cr: CrClient, spec: Spec, repo: RepositorySpec, rule: BuildRuleSpec
) -> tuple[BindingOutcome, BoundRule]:
    """Check that ``repo`` is bound to its GitLab project with all its build rules, making no write.

    Args:
        cr: a Container Registry client (from :mod:`acrvpc.cloud.clients`).
        spec: the pipeline spec.
        repo: the repository a push is routed to.
        rule: the build rule the push builds (one of ``repo.build_rules``).

    Returns:
        The repository's binding (ids of the repository and its rules, no changes) and the bound rule
        for ``rule``.

    Raises:
        PipelineError: ``BINDING_NOT_CONVERGED`` when the full pipeline would still create or repair
            something for this repository; the binding stage's codes (``GITLAB_ENDPOINT_MISMATCH``, CR
            codes) as they come.
    """
    outcome = bind_repository(cr, spec, repo, plan=True)
    if outcome.changes:
        raise PipelineError(
            f"{repo.full_name} is not set up for builds from {repo.gitlab_project}: the full pipeline would still "
            f"make {len(outcome.changes)} change(s): {', '.join(outcome.changes)}",
            code="BINDING_NOT_CONVERGED",
            fix=(
                f"run the full pipeline once for spec {spec.name} (the {FULL_PIPELINE} deployment: `prefect "
                f"deployment run {FULL_PIPELINE}`, or `acrvpc run SPEC`), then push again or resend the webhook"
            ),
        )
    return outcome, outcome.rules[repo.build_rules.index(rule)]


@task(name="verify-binding", task_run_name="verify-binding {repo.namespace}/{repo.name}", **RETRY)
def verify_binding_task(spec: Spec, repo: RepositorySpec, rule: BuildRuleSpec) -> tuple[BindingOutcome, BoundRule]:
    """Prefect task: :func:`verify_binding` with the spec's CR client.

    Args:
        spec: the pipeline spec.
        repo: the routed repository.
        rule: the routed build rule.

    Returns:
        The binding and the bound rule, as :func:`verify_binding`.

    Raises:
        PipelineError: see :func:`verify_binding`.
    """
    return verify_binding(cloud.cloud_clients(spec).cr, spec, repo, rule)
