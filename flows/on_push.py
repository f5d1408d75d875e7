"""The on-push build: only what a GitLab push needs.

Started by the webhook receiver (:mod:`deployments.webhook`) through the ``build-on-push/webhook``
deployment, one flow run per delivery. The run looks the push up in the spec's
``webhook.routes`` (project + ref glob -> repository + build rule), verifies the repository's
binding without writing (:mod:`tasks.on_push`; when it is not converged the run fails and says
to run the full pipeline), then starts the rule's build and follows it to the end
(:func:`tasks.build.build`: log lines stream into this run's logs).

ACR builds a rule's branch or tag as GitLab has it when the build starts; ``sha`` is the commit
the push reported, recorded with the result for reference.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from acrvpc import monitor, run_gate, runlog
from acrvpc.cloud.errors import PipelineError
from acrvpc.domain.spec import Spec, resolve_spec, route_target
from flows.builds import fail_if_any_failed, reported_run, run_builds
from flows.run_names import flow_run_name
from tasks.on_push import verify_binding_task


@flow(
    name="build-on-push", flow_run_name=flow_run_name, validate_parameters=False, on_running=[run_gate.free_start_slot]
)
def build_on_push(
    project: str, ref: str, sha: str = "", event_id: str = "", spec: Spec | None = None, spec_path: str | None = None
) -> dict[str, Any]:
    """Build the image a push to ``project`` at ``ref`` is routed to.

    Args:
        project: the GitLab project path the push came from (``project.path_with_namespace``).
        ref: the pushed ref, ``refs/heads/<branch>`` or ``refs/tags/<tag>``.
        sha: the commit the push reported (``checkout_sha``), kept in the result.
        event_id: the delivery's idempotency key (``Idempotency-Key`` or ``X-Gitlab-Event-UUID``).
        spec: the spec (the deployment made by ``acrvpc deploy`` carries it; the receiver routes from
            the same deployment, so both read one spec).
        spec_path: instead of ``spec``, a YAML spec file (relative to the working directory).

    Returns:
        ``{"spec", "flow_run_id", "project", "ref", "sha", "event_id", "repository", "rule", "build"}``
        where ``build`` is the :class:`~acrvpc.domain.outcomes.BuildOutcome` as a dict.

    Raises:
        SpecError: the spec is invalid.
        PipelineError: ``WEBHOOK_NO_ROUTE`` (no route for the push), ``BINDING_NOT_CONVERGED``, or
            the build's codes (``BUILD_FAILED`` when the image was not built).
    """
    runlog.ship_our_logs()  # acrvpc.*, tasks.*, flows.* records into this run's logs
    logger = get_run_logger()
    spec = resolve_spec(spec, spec_path)
    route = spec.webhook.route_for(project, ref)
    if route is None:
        raise PipelineError(
            f"spec {spec.name} routes no push of {ref} to {project}",
            code="WEBHOOK_NO_ROUTE",
            fix=f"add a route for {project} whose ref pattern matches {ref} to webhook.routes in "
            + (spec_path or "the spec and redeploy it (acrvpc deploy SPEC)"),
        )
    repo, rule = route_target(spec, route)
    logger.info(
        "push of %s to %s %s (event %s): building %s rule %s:%s -> %s",
        sha[:12] or "?",
        project,
        ref,
        event_id or "-",
        repo.full_name,
        rule.push_type.value,
        rule.push_name,
        rule.image_tag,
    )
    logger.info("stages: verify-binding %s (no write) -> build %s", repo.full_name, rule.image_tag)
    run_id = str(flow_run.get_id() or "")
    summary: dict[str, Any] = {"spec": spec.name, "flow_run_id": run_id, "stages": [], "builds": []}
    with reported_run(summary, run_id, logger):
        binding, bound = verify_binding_task(spec, repo, rule)
        [outcome] = run_builds(spec, [(binding, bound)], run_id)
        summary["builds"] = [outcome.model_dump()]
        monitor.publish("run.finished", summary=summary)
        fail_if_any_failed([outcome])
    return {
        "spec": spec.name,
        "flow_run_id": run_id,
        "project": project,
        "ref": ref,
        "sha": sha,
        "event_id": event_id,
        "repository": repo.full_name,
        "rule": bound.build_rule_id,
        "build": outcome.model_dump(),
    }
