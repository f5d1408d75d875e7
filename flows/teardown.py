"""The teardown flow: delete the build link's ECS resources tagged for a spec.

ENIs first (their InstanceAttach permissions revoked, Detaching waited out), then security
groups. Nothing untagged is touched, and the registry side (namespaces, repositories, build
rules, code-source bindings, images) is kept. A rerun after a finished teardown makes no write.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from acrvpc import run_gate, runlog
from acrvpc.domain.spec import Spec, resolve_spec
from flows.run_names import flow_run_name
from tasks import teardown as teardown_stage


@flow(name="teardown", flow_run_name=flow_run_name, validate_parameters=False, on_running=[run_gate.free_start_slot])
def teardown(spec: Spec | None = None, spec_path: str | None = None) -> dict[str, Any]:
    """Delete everything tagged for a spec's link, in dependency order.

    Args:
        spec: the spec (deployments made by ``acrvpc deploy`` carry it).
        spec_path: instead of ``spec``, a YAML spec file (relative to the working directory).

    Returns:
        The teardown :class:`~acrvpc.domain.outcomes.StageOutcome` as a dict: ``resources`` (what was
        found and deleted), ``changes`` (one line per write), ``notes``.

    Raises:
        SpecError: the spec is invalid (nothing is called).
        PipelineError: ``ENI_DELETE_TIMEOUT``, ``DependencyViolation`` or a fatal ECS error, with its fix.
    """
    runlog.ship_our_logs()  # acrvpc.*, tasks.*, flows.* records into this run's logs
    logger = get_run_logger()
    spec = resolve_spec(spec, spec_path)
    key, value = spec.tag
    logger.info("teardown of link %s: resources tagged %s=%s in %s", spec.name, key, value, spec.network.vpc_id)
    outcome = teardown_stage.teardown(spec)
    lines = [f"- `{change}`" for change in outcome.changes] or ["- nothing to delete"]
    create_markdown_artifact(
        markdown="\n".join([f"## Teardown of link `{spec.name}`", "", *lines, "", *outcome.notes]),
        key=f"teardown-{spec.name}",
        description=f"What teardown deleted for link {spec.name}",
    )
    logger.info(
        "teardown of link %s: %d write(s)%s; next: the artifact teardown-%s lists them",
        spec.name,
        len(outcome.changes),
        ": " + ", ".join(outcome.changes) if outcome.changes else " (nothing was left)",
        spec.name,
    )
    return outcome.model_dump()
