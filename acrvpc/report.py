"""Rendering a run summary for people (rich tables) and scripts (JSON)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

_STYLE = {"completed": "green", "failed": "red", "skipped": "yellow"}


def stage_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"acr-vpc-build: {summary.get('spec', '')}", show_lines=False)
    table.add_column("stage")
    table.add_column("result")
    table.add_column("resources")
    table.add_column("changes", justify="right")
    table.add_column("seconds", justify="right")
    for row in summary.get("stages", []):
        style = _STYLE.get(row["result"], "")
        resources = "\n".join(f"{k}: {v}" for k, v in row.get("resources", {}).items()) or "-"
        table.add_row(row["stage"], f"[{style}]{row['result']}[/]", resources, str(len(row.get("changes", []))),
                      f"{row['seconds']:.1f}")
    return table


def build_table(summary: dict[str, Any]) -> Table:
    table = Table(title="builds")
    for col in ("repository", "rule", "status", "image", "build record", "seconds", "log lines"):
        table.add_column(col, overflow="fold")
    for b in summary.get("builds", []):
        style = "green" if b["status"] == "SUCCESS" else "red"
        table.add_row(b["repository"], b["build_rule_id"], f"[{style}]{b['status']}[/]", b.get("image", ""),
                      b["build_record_id"], f"{b.get('seconds', 0):.1f}", str(b.get("log_lines", 0)))
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
