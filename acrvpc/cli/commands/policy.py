"""``acrvpc policy SPEC``: print the least-privilege RAM policy for running SPEC.

The policy (:func:`acrvpc.domain.policy.policy_for`) allows exactly the actions the stages of the spec's
link mode call (declared in :mod:`acrvpc.domain.actions`, which the pipeline's clients enforce), each on the
narrowest resource the service authorizes. Stdout carries the JSON and nothing else, so
``acrvpc policy spec.yaml > policy.json`` is ready for ``aliyun ram CreatePolicy --PolicyDocument``
or the RAM console. Exit 2 on an invalid spec (the error names the field) or an unwritable --output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from acrvpc.cli.common import app, err, load_spec_or_exit

HELP = (
    "Print the least-privilege RAM policy (JSON, Version 1) for running SPEC: the exact cr:, ecs: and vpc: "
    "actions its link mode calls, scoped to its instance, repositories, VPC, vSwitch and region. "
    "--with-fix adds `preflight --fix`'s write, --with-teardown `acrvpc teardown`'s deletes."
)


def read_ram_policy_or_exit(path: Path | None) -> dict[str, Any] | None:
    """The RAM policy document in a JSON file (``acrvpc sandbox --ram-policy``), or ``None`` without one.

    Args:
        path: the file, or ``None``.

    Returns:
        The parsed policy, checked by the product's RAM reader (:mod:`acrvpc.domain.ram`; the sandbox reads
        it again with its own evaluator when it loads it).

    Raises:
        typer.Exit: code 2 when the file is missing, not JSON, or not a RAM policy (the field is named).
    """
    if path is None:
        return None
    from acrvpc.domain.ram import RamPolicyError, read_policy

    try:
        document = json.loads(path.read_text())
        read_policy(document)
    except OSError as exc:
        err.print(f"[red]--ram-policy {path}: {exc.strerror}[/]", highlight=False)
        raise typer.Exit(2) from None
    except (ValueError, RamPolicyError) as exc:
        err.print(f"[red]--ram-policy {path}: {exc}[/]", highlight=False)
        raise typer.Exit(2) from None
    return document


@app.command(name="policy", help=HELP)
def policy_command(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="The YAML spec the AccessKey will run."),
    with_fix: bool = typer.Option(
        False, "--with-fix", help="Also allow `acrvpc preflight --fix` (ecs:AuthorizeSecurityGroup on GitLab's group)."
    ),
    with_teardown: bool = typer.Option(
        False, "--with-teardown", help="Also allow `acrvpc teardown` (ENI and security group deletes)."
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the JSON to this file instead of stdout."),
) -> None:
    """Print the least-privilege RAM policy for SPEC (see :data:`HELP`)."""
    from acrvpc.domain.policy import policy_for, to_json

    spec = load_spec_or_exit(spec_path)
    text = to_json(policy_for(spec, with_fix=with_fix, with_teardown=with_teardown))
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text)
    except OSError as exc:
        err.print(f"[red]--output {output}: {exc.strerror}[/]", highlight=False)
        raise typer.Exit(2) from None
