"""Rendering a run summary for people on a terminal (rich tables) and scripts (JSON).

The text and markdown (artifacts, log lines) are :mod:`acrvpc.domain.run_summary`'s, shared with the
pipeline; this module adds the rich tables the command line prints.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from acrvpc.domain.run_summary import record_clock_label as _clock_label
from acrvpc.domain.run_summary import (  # wall_seconds: acrvpc.cli.live imports it from here
    record_seconds_differ,
    short_digest,
    wall_seconds,
    why_text,
)

_STYLE = {"completed": "green", "failed": "red", "skipped": "yellow"}


def record_clock_label() -> str:
    """What a build record's duration is measured in: the sandbox's clock, or ACR's."""
    from acrvpc.cloud.clients import sandbox_url

    return _clock_label(bool(sandbox_url()))


def stage_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"acr-vpc-build: {summary.get('spec', '')}", show_lines=False)
    table.add_column("stage")
    table.add_column("result")
    table.add_column("resources")
    table.add_column("changes", justify="right")
    table.add_column("wall s", justify="right")
    for row in summary.get("stages", []):
        style = _STYLE.get(row["result"], "")
        resources = "\n".join(f"{k}: {v}" for k, v in row.get("resources", {}).items()) or "-"
        table.add_row(
            row["stage"],
            f"[{style}]{row['result']}[/]",
            resources,
            str(len(row.get("changes", []))),
            f"{row['seconds']:.1f}",
        )
    return table


def build_table(summary: dict[str, Any]) -> Table:
    builds = summary.get("builds", [])
    record = record_seconds_differ(builds)
    table = Table(title="builds")
    columns = ["repository", "ref", "status", "image", "digest", "build record", "wall s"]
    columns += [f"{record_clock_label()} s"] if record else []
    why = any(b.get("why") for b in builds)
    for col in (*columns, "log lines", *(["why"] if why else [])):
        table.add_column(col, overflow="fold")
    for b in builds:
        style = "green" if b["status"] == "SUCCESS" else "red"
        cells = [
            b["repository"],
            b.get("ref", ""),
            f"[{style}]{b['status']}[/]",
            b.get("image", ""),
            short_digest(b.get("digest") or "-"),
            b["build_record_id"],
            f"{wall_seconds(b):.1f}",
        ]
        cells += [f"{float(b.get('seconds') or 0):.1f}"] if record else []
        table.add_row(*cells, str(b.get("log_lines", 0)), *([why_text(b)] if why else []))
    return table


def console_for_output() -> Console:
    """A console that does not squeeze tables to 80 columns when output is piped or logged."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    return console


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    console = console or console_for_output()
    console.print(stage_table(summary))
    if summary.get("builds"):
        console.print(build_table(summary))
