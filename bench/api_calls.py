"""API calls per stage, for a fresh run and for a rerun of the converged spec, against the least each stage needs.

    python bench/api_calls.py                      # examples/sandbox.yaml (2 repositories, 3 rules, 2 builds)
    python bench/api_calls.py --quick              # the same (it takes seconds)
    python bench/api_calls.py --spec my-spec.yaml  # another spec for the default sandbox world

The stages run as the flow runs them (the same plain stage functions, ``bench.bare``), one after
another against an in-process sandbox (default world; ENIs attach and builds finish in zero
sandbox time, so every poll loop reads once), and the sandbox's call log is cut per stage. The
flow makes the same calls (``bench/overhead.py`` checks it call for call), except that its
concurrent bindings may race to create a shared namespace (one extra GetNamespace and a refused
CreateNamespace per loser).

The minimum per stage (:func:`minimum_calls`) is the least the APIs allow for what the stage must
establish, from the spec alone: e.g. a fresh link needs to look for the group, create it, set its
policy and authorize every egress rule in one call (4); a rerun only reads the group and its rules
(2). ``excess`` is actual - minimum; a rerun must make no write but the builds it starts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a fresh clone
from bench import common  # first, before Prefect is imported

if __name__ == "__main__":  # not when the unit tests import minimum_calls: setup() changes os.environ
    common.setup()

STAGES = ("preflight", "link", "eni", "gitlab", "binding", "build")


def minimum_calls(spec: Any, *, fresh: bool, gitlab_groups: int = 1) -> dict[str, tuple[int, str]]:
    """The least calls each stage needs, with the reason, for a fresh world or a converged one.

    Args:
        spec: the :class:`~acrvpc.domain.spec.Spec` (repositories, rules, builds).
        fresh: nothing exists yet (True) or everything is converged (False).
        gitlab_groups: security groups of the GitLab ECS instance (one ingress read each).

    Returns:
        ``{stage: (calls, why)}`` for :data:`STAGES`.
    """
    repos = len(spec.repositories)
    projects = len({r.gitlab_project for r in spec.repositories})
    namespaces = len({r.namespace for r in spec.repositories})
    rules = sum(len(r.build_rules) for r in spec.repositories)
    builds = sum(1 for r in spec.repositories for rule in r.build_rules if rule.build)
    gitlab = 2 + projects
    pre = 4 + gitlab_groups + repos * (1 if fresh else 2) + gitlab
    out = {
        "preflight": (
            pre,
            f"GetInstance, DescribeVpcAttribute, DescribeVSwitchAttributes, DescribeInstances, "
            f"{gitlab_groups} DescribeSecurityGroupAttribute, {repos} GetRepository"
            f"{'' if fresh else f' + {repos} GetRepoSourceCodeRepo'}, GitLab /user, token, "
            f"{projects} project(s)",
        ),
        "gitlab": (gitlab, f"GET /user, /personal_access_tokens/self, {projects} GET /projects/:id"),
        "build": (
            builds * 5,
            f"{builds} x (CreateBuildRecordByRule, one status read, one log page, GetRepoBuildRecord, GetRepoTag)",
        ),
    }
    if fresh:
        out["link"] = (
            4,
            "DescribeSecurityGroups, CreateSecurityGroup, ModifySecurityGroupPolicy, "
            "one AuthorizeSecurityGroupEgress with every rule",
        )
        out["eni"] = (
            4,
            "DescribeNetworkInterfaces, CreateNetworkInterface, CreateNetworkInterfacePermission, "
            "one DescribeNetworkInterfaces seeing InUse",
        )
        out["binding"] = (
            2 * namespaces + 3 * repos + rules,
            f"{namespaces} x (GetNamespace, CreateNamespace), {repos} x (GetRepository, "
            f"CreateRepository, CreateRepoSourceCodeRepo), {rules} CreateRepoBuildRule",
        )
    else:
        out["link"] = (2, "DescribeSecurityGroups, DescribeSecurityGroupAttribute")
        out["eni"] = (2, "DescribeNetworkInterfaces, DescribeNetworkInterfacePermissions")
        out["binding"] = (3 * repos, f"{repos} x (GetRepository, GetRepoSourceCodeRepo, ListRepoBuildRule)")
    return out


def _stages(world: Any, spec: Any) -> dict[str, list[dict]]:
    """Run the stages in order with the plain functions; each stage's slice of the call log."""
    from acrvpc.cloud import clients as cloud
    from bench.bare import observe_sequentially
    from tasks.binding import bind_repository
    from tasks.build import run_build
    from tasks.eni import ensure_network_interface
    from tasks.gitlab_token import validate_token
    from tasks.link import ensure_security_group
    from tasks.preflight import evaluate, preflight_error

    clients = cloud.cloud_clients(spec)
    calls: dict[str, list[dict]] = {}
    state: dict[str, Any] = {}

    def stage(name: str, fn) -> Any:
        start = len(world.calls.list())
        out = fn()
        calls[name] = world.calls.list(start)
        return out

    outcome = stage("preflight", lambda: evaluate(spec, observe_sequentially(clients, spec)))
    if not outcome.passed:
        raise preflight_error(spec, outcome)
    state["link"] = stage("link", lambda: ensure_security_group(clients.ecs, spec))
    stage("eni", lambda: ensure_network_interface(clients.ecs, spec, state["link"].security_group_id))
    stage("gitlab", lambda: validate_token(cloud.gitlab_for(spec), spec))
    bindings = stage("binding", lambda: [bind_repository(clients.cr, spec, r) for r in spec.repositories])
    stage("build", lambda: [run_build(clients.cr, spec, b, rule) for b in bindings for rule in b.rules if rule.build])
    return calls


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the same run (it takes seconds)")
    parser.add_argument(
        "--spec", default=str(common.ROOT / "examples" / "sandbox.yaml"), help="a spec for the default sandbox world"
    )
    args = parser.parse_args(argv)

    from acrvpc.domain.spec import load_spec
    from acrvpc.sandbox import SandboxServer

    spec = load_spec(args.spec)
    figures: dict = {
        "benchmark": "api_calls",
        "spec": spec.name,
        "repositories": len(spec.repositories),
        "machine": common.machine(),
    }
    rows = []
    t0 = time.perf_counter()
    with SandboxServer(common.bench_scenario(0)) as sandbox:
        os.environ["ACRVPC_SANDBOX_URL"] = sandbox.url
        for run, fresh in (("fresh", True), ("rerun", False)):
            calls = _stages(sandbox.world, spec)
            minimum = minimum_calls(spec, fresh=fresh)
            per_stage = {}
            for name in STAGES:
                made = calls[name]
                writes = [c["action"] for c in made if c["writes"]]
                least, why = minimum[name]
                per_stage[name] = {
                    "calls": len(made),
                    "writes": len(writes),
                    "minimum": least,
                    "excess": len(made) - least,
                    "minimum_is": why,
                    "actions": dict(common.action_counts(made)),
                }
                rows.append(
                    {
                        "run": run,
                        "stage": name,
                        "calls": len(made),
                        "writes": len(writes),
                        "minimum": least,
                        "excess": len(made) - least,
                        "by product": ", ".join(f"{p} {n}" for p, n in sorted(common.product_counts(made).items())),
                    }
                )
            figures[run] = {
                "stages": {k: {kk: vv for kk, vv in v.items() if kk != "actions"} for k, v in per_stage.items()},
                "calls": sum(v["calls"] for v in per_stage.values()),
                "minimum": sum(v["minimum"] for v in per_stage.values()),
                "writes": sum(v["writes"] for v in per_stage.values()),
                "actions": {k: {f"{p} {a}": n for (p, a), n in v["actions"].items()} for k, v in per_stage.items()},
            }
            if not fresh:
                other = [
                    c["action"]
                    for made in calls.values()
                    for c in made
                    if c["writes"] and c["action"] != "CreateBuildRecordByRule"
                ]
                figures["rerun_writes_other_than_builds"] = len(other)
                figures["rerun_build_starts"] = sum(
                    1 for c in calls["build"] if c["action"] == "CreateBuildRecordByRule"
                )
    figures["seconds"] = round(time.perf_counter() - t0, 2)
    figures["target_met"] = figures["rerun_writes_other_than_builds"] == 0
    common.say(
        f"API calls per stage, spec {spec.name} ({len(spec.repositories)} repositories), "
        f"sandbox (zero-time ENI attach and builds)"
    )
    common.say(common.table(rows))
    for run in ("fresh", "rerun"):
        f = figures[run]
        common.say(
            f"{run}: {f['calls']} calls (minimum {f['minimum']}, excess {f['calls'] - f['minimum']}), "
            f"{f['writes']} writes"
        )
    common.say(
        f"rerun writes other than the {figures['rerun_build_starts']} build start(s): "
        f"{figures['rerun_writes_other_than_builds']} (must be 0: "
        f"{'met' if figures['target_met'] else 'MISSED'})"
    )
    common.emit(figures)
    return figures


if __name__ == "__main__":
    main()
