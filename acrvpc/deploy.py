"""Deployments that carry their spec: ``acrvpc deploy SPEC`` (:mod:`acrvpc.cli.commands.deploy`).

A deployed run needs no file on the worker. Each spec gets three deployments, named after it so
several specs live side by side on one server:

========================  ==========================  ===================================
deployment                flow (module entrypoint)     parameters
========================  ==========================  ===================================
``vpc-build/<name>``      ``flows.vpc_build.vpc_build``   ``spec``, ``start_builds``; a cron schedule when given
``build-on-push/<name>``  ``flows.on_push.build_on_push`` ``spec`` (the receiver adds project, ref, sha, event_id)
``teardown/<name>``       ``flows.teardown.teardown``     ``spec`` (run by hand)
========================  ==========================  ===================================

The spec is the deployments' ``spec`` parameter: the Prefect UI renders it as a form from the
pydantic model, every flow run records the exact spec it used, and editing it (in the UI, or by
running ``acrvpc deploy`` again) changes what the next run does on every worker at once. The
webhook receiver routes from the on-push deployment's spec (``acrvpc webhook serve --deployment
build-on-push/<name>``), so the receiver and the runs read one spec.

Why a typed parameter and not a block: a parameter is recorded on every flow run (an audit of
what each run did, and a UI Retry reruns the same spec even after the deployment was edited),
is validated against the model's schema when the run is created, and is edited in the UI as a
form; a block would be shared mutable state that a run reads when it starts, so two runs of one
deployment could use different specs with no record of which. The spec holds no secret.

Entrypoints are module paths (``flows.vpc_build.vpc_build``) with no pull step and no working
directory: a worker needs the ``acr-vpc-build`` package installed (a wheel in a container image,
or this checkout's venv), never a checkout or a spec file. The spec holds no secret (credentials
are named blocks), so it may be a flow-run parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from acrvpc.domain.spec import Spec, parse_spec

if TYPE_CHECKING:  # Prefect is imported when a deployment is made, not with this module
    from prefect import Flow
    from prefect.deployments.runner import RunnerDeployment

TAGS = ("acr-vpc-build",)


@dataclass(frozen=True)
class FlowDeployment:
    """One of the three deployments a spec gets."""

    flow_name: str
    entrypoint: str  # module path: package.module.function
    description: str
    tags: tuple[str, ...] = ()

    def name(self, spec: Spec) -> str:
        """``flow-name/deployment-name`` of this deployment for ``spec``."""
        return f"{self.flow_name}/{spec.name}"


VPC_BUILD = FlowDeployment(
    "vpc-build",
    "flows.vpc_build.vpc_build",
    "Converge the spec's VPC build setup and build every rule with build: true.",
)
ON_PUSH = FlowDeployment(
    "build-on-push",
    "flows.on_push.build_on_push",
    "Build the image a GitLab push is routed to (started by the webhook receiver).",
    ("on-push",),
)
TEARDOWN = FlowDeployment(
    "teardown",
    "flows.teardown.teardown",
    "Delete everything tagged for the spec's link (run it by hand).",
    ("teardown",),
)
ALL = (VPC_BUILD, ON_PUSH, TEARDOWN)


def spec_parameter(spec: Spec) -> dict[str, Any]:
    """The spec as a flow-run parameter (JSON), checked to read back as the same spec.

    Raises:
        SpecError: the JSON form does not validate (a bug: every spec must round-trip).
    """
    data = spec.model_dump(mode="json")
    if parse_spec(data, "spec parameter") != spec:  # pragma: no cover - guarded by tests/unit/test_deploy.py
        raise AssertionError(f"spec {spec.name} does not read back from its JSON form")
    return data


def spec_of(parameters: dict[str, Any] | None, where: str) -> Spec:
    """The spec a deployment carries (its ``spec`` parameter), validated.

    Args:
        parameters: the deployment's parameters.
        where: what to name in an error (``deployment build-on-push/demo``).

    Raises:
        SpecError: the deployment has no ``spec`` parameter, or it is invalid.
    """
    from acrvpc.domain.spec import SpecError

    data = (parameters or {}).get("spec")
    if data is None:
        raise SpecError(
            where,
            [
                (
                    "spec",
                    "this deployment carries no spec parameter (it reads a file on the worker, "
                    "spec_path); deploy the spec with `acrvpc deploy SPEC` and use the "
                    "deployment that names it",
                )
            ],
        )
    return parse_spec(data, f"{where} parameter spec")


def deploy_spec(
    spec: Spec,
    *,
    pool: str,
    cron: str | None = None,
    timezone: str = "UTC",
    image: str | None = None,
    job_variables: dict[str, Any] | None = None,
    work_queue: str | None = None,
) -> dict[str, str]:
    """Create or update the three deployments of ``spec`` on the Prefect server (idempotent).

    Args:
        spec: the validated spec.
        pool: the work pool whose workers run them.
        cron: a schedule for the ``vpc-build`` deployment (e.g. ``0 2 * * *``); none when omitted.
        timezone: the schedule's time zone.
        image: the container image (Docker or Kubernetes pools).
        job_variables: the pool's job variables (e.g. ``{"env": {...}}``).
        work_queue: a queue of the pool.

    Returns:
        ``{"vpc-build/<name>": deployment id, ...}``.
    """
    from prefect.deployments.runner import EntrypointType

    from flows.on_push import build_on_push
    from flows.teardown import teardown
    from flows.vpc_build import vpc_build

    flows: dict[FlowDeployment, Flow[..., Any]] = {VPC_BUILD: vpc_build, ON_PUSH: build_on_push, TEARDOWN: teardown}
    parameter = spec_parameter(spec)
    ids: dict[str, str] = {}
    for target, flow in flows.items():
        parameters: dict[str, Any] = {"spec": parameter}
        schedule: dict[str, Any] = {}
        if target is VPC_BUILD:
            parameters["start_builds"] = True
            if cron:
                schedule = {"cron": cron, "timezone": timezone}
        # a sync caller: Prefect's async_dispatch returns the deployment itself, not a coroutine
        deployment = cast(
            "RunnerDeployment",
            flow.to_deployment(
                name=spec.name,
                parameters=parameters,
                description=target.description,
                tags=[*TAGS, *target.tags, f"spec:{spec.name}"],
                entrypoint_type=EntrypointType.MODULE_PATH,
                job_variables=job_variables or {},
                work_queue_name=work_queue,
                **schedule,
            ),
        )
        ids[target.name(spec)] = str(deployment.apply(work_pool_name=pool, image=image))
    return ids
