"""The pipeline as a bare script: the same SDK calls as ``flows/vpc_build.py``, one after another, no Prefect.

It calls the plain stage functions the tasks wrap (they take clients and return outcomes), in
the flow's order, in one thread: preflight's reads (which the flow makes concurrently) one by
one, then link, ENI, the GitLab check, each binding, each build. No flow or task run is created
(the task modules are imported for their plain functions only); :func:`run_bare` is what
``bench/overhead.py`` compares the flow against, and the benchmark checks that both made the same
calls (same count of every product/action).
"""

from __future__ import annotations

from typing import Any

from alibabacloud_cr20181201 import models as cr_models
from alibabacloud_vpc20160428 import models as vpc_models

from acrvpc.cloud import clients as cloud
from acrvpc.cloud.errors import check_cr
from acrvpc.domain.outcomes import BuildOutcome
from acrvpc.domain.spec import GitLabAccess, Spec
from tasks.binding import bind_repository
from tasks.build import run_build
from tasks.eni import ensure_network_interface
from tasks.gitlab_token import validate_token
from tasks.link import ensure_security_group
from tasks.preflight import (  # the same reads observe() makes, in order
    Observation,
    Read,
    _read,
    _repository,
    evaluate,
    preflight_error,
    read_gitlab_host,
)


def observe_sequentially(clients: cloud.CloudClients, spec: Spec) -> Observation:
    """Preflight's reads (:func:`tasks.preflight.observe`), made one after another.

    Args:
        clients: the CR, ECS and VPC clients.
        spec: the pipeline spec (without ``network.vbr_id``: the bench specs have none).

    Returns:
        The :class:`~tasks.preflight.Observation`, as ``observe`` would return it.
    """
    if spec.network.vbr_id:
        raise NotImplementedError("the bare pipeline covers specs without network.vbr_id")
    net, region = spec.network, spec.region
    instance = _read(
        lambda: check_cr(
            clients.cr.get_instance(cr_models.GetInstanceRequest(instance_id=spec.instance_id)), "GetInstance"
        ).to_map()
    )
    vpc = _read(
        lambda: clients.vpc.describe_vpc_attribute(
            vpc_models.DescribeVpcAttributeRequest(region_id=region, vpc_id=net.vpc_id)
        ).body.to_map()
    )
    vswitch = _read(
        lambda: clients.vpc.describe_vswitch_attributes(
            vpc_models.DescribeVSwitchAttributesRequest(region_id=region, v_switch_id=net.vswitch_id)
        ).body.to_map()
    )
    host = _read(read_gitlab_host, clients.ecs, spec) if spec.gitlab.access == GitLabAccess.ECS else None
    repos: dict[str, Read] = {
        r.full_name: _read(_repository, clients.cr, spec, r.namespace, r.name) for r in spec.repositories
    }
    token = _read(lambda: validate_token(cloud.gitlab_for(spec), spec))
    return Observation(instance, vpc, vswitch, host, None, repos, token)


def run_bare(spec: Spec, *, start_builds: bool = True) -> dict[str, Any]:
    """Converge a spec and run its builds with plain function calls, in sequence.

    Args:
        spec: the pipeline spec.
        start_builds: start a build per rule with ``build: true`` (as the flow's default).

    Returns:
        ``{"writes": [...], "builds": [BuildOutcome, ...]}``.

    Raises:
        PipelineError: a stage failed, as in the flow.
    """
    clients = cloud.cloud_clients(spec)
    outcome = evaluate(spec, observe_sequentially(clients, spec))
    if not outcome.passed:
        raise preflight_error(spec, outcome)
    link = ensure_security_group(clients.ecs, spec)
    eni = ensure_network_interface(clients.ecs, spec, link.security_group_id)
    gitlab = validate_token(cloud.gitlab_for(spec), spec)
    bindings = [bind_repository(clients.cr, spec, repo) for repo in spec.repositories]
    builds: list[BuildOutcome] = []
    if start_builds:
        builds = [run_build(clients.cr, spec, b, rule) for b in bindings for rule in b.rules if rule.build]
    writes = [c for o in (link, eni, gitlab, *bindings, *builds) for c in o.changes]
    return {"writes": writes, "builds": builds}
