"""The operator's runbooks for the console steps (Markdown), and what the link must admit.

Used by :mod:`flows.console_steps` for the run's logs, its ``console-*`` artifacts and the resume
form. The console path and field names follow the ACR procedure ("Step 1: manage the link",
"Step 2: bind the GitLab source code repository"). The GitLab token is never part of a runbook:
the operator types it into the console; the runbook only says where it is kept.
"""

from __future__ import annotations

from acrvpc.domain import netcheck
from acrvpc.domain.spec import Spec
from tasks.ecs_common import canonical_cidr


def _host(cidr: str) -> str:
    return cidr[:-3] if cidr.endswith("/32") else cidr


def link_targets(spec: Spec) -> list[tuple[str, str, int, int]]:
    """What the link's egress must admit: ``(label, cidr, first port, last port)``.

    Args:
        spec: the pipeline spec (gitlab.private_ip/port, link.allowed_ips).

    Returns:
        GitLab first, then each allowed target, labelled as people write them
        (``GitLab IP 192.168.1.20:80``, ``allowed IP 192.168.1.30:8081``).
    """
    port = spec.gitlab.port
    targets = [(f"GitLab IP {spec.gitlab.private_ip}:{port}", canonical_cidr(spec.gitlab.private_ip), port, port)]
    for t in spec.link.allowed_ips:
        lo, hi = netcheck.parse_port_range(t.port_range)
        where = (
            _host(t.cidr)
            if (lo, hi) == (1, 65535)
            else f"{_host(t.cidr)}:{lo}"
            if lo == hi
            else f"{_host(t.cidr)}:{lo}-{hi}"
        )
        targets.append((f"allowed IP {where}", canonical_cidr(t.cidr), lo, hi))
    return targets


def _console_path(spec: Spec, action: str) -> list[str]:
    return [
        f"1. Log on to the Container Registry console and select the region **{spec.region}** in the top "
        f"navigation bar.",
        f"2. In the left-side navigation pane click **Instances**, then the card of instance **{spec.instance_id}**.",
        "3. In the left-side navigation pane of the instance choose **Repository > Code Source**.",
        f"4. Find **GitLab** and click **{action}** in the Actions column.",
    ]


def _resume_hint(run_id: str) -> str:
    cli = f"`acrvpc resume {run_id}`" if run_id else "`acrvpc resume <flow run id>`"
    return (
        f"Then resume this flow run: **Resume** on the run's page in the Prefect UI (tick *done*), or {cli}. "
        f"The pipeline then verifies your work through the API."
    )


def link_instructions(spec: Spec, problem: str = "", run_id: str = "") -> str:
    """The operator's runbook for the console's "Manage Link", as Markdown.

    Args:
        spec: the pipeline spec.
        problem: what the pipeline found wrong (shown first), if anything.
        run_id: the paused flow run, for the resume command.

    Returns:
        The exact console path and values (GitLab private IP, other allowed IPs, VPC, vSwitch) and
        what the pipeline will check afterwards.
    """
    others = ", ".join(f"`{label.removeprefix('allowed IP ')}`" for label, *_ in link_targets(spec)[1:]) or "(none)"
    lines = [
        f"## Console step: manage the VPC build link ({spec.name})",
        "",
        "Container Registry has no API for this step: do it in the console, then resume the run.",
        "",
    ]
    if problem:
        lines += [f"**What the pipeline found:** {problem}", ""]
    lines += _console_path(spec, "Manage Link")
    lines += [
        "5. In the **Manage Link** dialog enter these values, then click **Create**:",
        "",
        "| field | value |",
        "|---|---|",
        f"| GitLab Server Private IP Address | `{spec.gitlab.private_ip}` (GitLab listens on port "
        f"{spec.gitlab.port}) |",
        f"| Allow Other IP Addresses | {others} |",
        f"| Existing VPC | `{spec.network.vpc_id}` |",
        f"| vSwitch | `{spec.network.vswitch_id}` |",
        "",
        _resume_hint(run_id),
        "",
        "The check (ECS, read only): a service-managed security group in the VPC with no inbound rule and egress "
        f"only to {', '.join(label for label, *_ in link_targets(spec))}, everything else dropped; and a "
        f"service-managed network interface in `{spec.network.vswitch_id}` with that group, `InUse`.",
    ]
    return "\n".join(lines) + "\n"


def account_instructions(spec: Spec, problem: str = "", run_id: str = "") -> str:
    """The operator's runbook for the console's "Bind Account", as Markdown. It never contains the token.

    Args:
        spec: the pipeline spec.
        problem: what the pipeline found (shown first), if anything.
        run_id: the paused flow run, for the resume command.

    Returns:
        The exact console path and values (endpoint, user name; where the operator finds the token).
    """
    lines = [
        f"## Console step: bind the GitLab account ({spec.name})",
        "",
        "Container Registry has no API for this step: do it in the console, then resume the run.",
        "",
    ]
    if problem:
        lines += [f"**What the pipeline found:** {problem}", ""]
    lines += _console_path(spec, "Bind Account")
    lines += [
        "5. In the **Private GitLab** dialog enter these values, then click **Confirm**:",
        "",
        "| field | value |",
        "|---|---|",
        "| Network Type | VPC |",
        f"| Link Information | the link made with Manage Link (VPC `{spec.network.vpc_id}`, vSwitch "
        f"`{spec.network.vswitch_id}`) |",
        f"| Endpoint | `{spec.gitlab.endpoint}` |",
        f"| User Name | `{spec.gitlab.username}` |",
        f"| Private Token | the personal access token of `{spec.gitlab.username}` (scopes: "
        f"{', '.join(spec.gitlab.required_scopes)}), the one kept in the token block "
        f"`{spec.gitlab.token_block}`. Type it into the console only, never into Prefect or the resume form. |",
        "",
        "The GitLab row's **Status** column shows *Bound* when it worked.",
        "",
        _resume_hint(run_id),
        "",
        f"The check (Container Registry API): a repository of the spec bound to GitLab reports "
        f"`CodeRepoDomain` `{spec.gitlab.endpoint}`.",
    ]
    return "\n".join(lines) + "\n"
