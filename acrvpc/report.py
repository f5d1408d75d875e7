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
    why = any(b.get("why") for b in summary.get("builds", []))
    for col in ("repository", "ref", "status", "image", "digest", "build record", "seconds", "log lines",
                *(["why"] if why else [])):
        table.add_column(col, overflow="fold")
    for b in summary.get("builds", []):
        style = "green" if b["status"] == "SUCCESS" else "red"
        digest = b.get("digest") or "-"
        table.add_row(b["repository"], b.get("ref", ""), f"[{style}]{b['status']}[/]", b.get("image", ""),
                      digest[:19] + "…" if len(digest) > 20 else digest, b["build_record_id"],
                      f"{b.get('seconds', 0):.1f}", str(b.get("log_lines", 0)), *([why_text(b)] if why else []))
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


def build_rows(builds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per build (the table artifact and ``--json`` use the same keys)."""
    return [{"repository": b["repository"], "rule": b["build_rule_id"], "ref": b.get("ref", ""),
             "image": b.get("image", ""), "digest": b.get("digest", "") or "-", "status": b["status"],
             "seconds": round(float(b.get("seconds", 0)), 1), "build_record": b["build_record_id"],
             "log_lines": b.get("log_lines", 0)} for b in builds]


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def why_text(build: dict[str, Any]) -> str:
    """A failed build's "why" in one line (the CLI's build table): the broken hop, or the failure's kind."""
    why = build.get("why") or {}
    if not why:
        return "-"
    if why.get("hop"):
        hops = ", ".join(h["id"] for h in why.get("broken", []))
        return f"broken hop {hops}: {why['broken'][0]['fix']}"
    failure = why.get("failure") or {}
    if why.get("diagnosis"):
        return f"{failure.get('cause', '?')} failure in {failure.get('stage', '?')}: every hop checks out"
    return f"{failure.get('cause', '?').replace('_', ' ')} failure in the {failure.get('stage', '?')} stage"


def why_markdown(build: dict[str, Any]) -> list[str]:
    """The "Why it failed" part of a failed build's section in the build summary (tasks.diagnose)."""
    why = build.get("why") or {}
    if not why:
        return []
    failure = why.get("failure") or {}
    lines = ["", "### Why it failed", "",
             f"- **{failure.get('cause', '?').replace('_', ' ')}** failure in the **{failure.get('stage', '?')}** "
             f"stage (API stage `{_md(failure.get('api_stage') or '?')}`, status {_md(failure.get('status', ''))})"]
    if failure.get("hint"):
        lines.append(f"- log: `{_md(failure['hint'])}`")
    diagnosis = why.get("diagnosis")
    if diagnosis is None:
        return lines + ["- not a network or GitLab-auth failure: the path was not diagnosed"]
    if not why.get("broken"):
        return lines + ["- every hop checks out, the failure is likely elsewhere"]
    for hop in why["broken"]:
        lines += [f"- broken hop `{hop['id']}`: {_md(hop['detail'])}", f"  - **fix:** {_md(hop['fix'])}"]
    checked = ", ".join(f"`{h['id']}` {h['result']}" for h in diagnosis.get("hops", []))
    return lines + [f"- hops checked (read-only): {checked}"]


def build_markdown(spec_name: str, builds: list[dict[str, Any]], flow_run_id: str = "") -> str:
    """The run's build summary in markdown: a table, then the log tail of each build that failed."""
    ok = sum(1 for b in builds if b["status"] == "SUCCESS")
    lines = [f"# Builds of {spec_name}", ""]
    if flow_run_id:
        lines += [f"Flow run `{flow_run_id}`: {ok} of {len(builds)} build(s) succeeded.", ""]
    else:
        lines += [f"{ok} of {len(builds)} build(s) succeeded.", ""]
    if not builds:
        return "\n".join(lines + ["No build was started."]) + "\n"
    lines += ["| repository | rule | ref | image | digest | seconds | status |",
              "|---|---|---|---|---|---:|---|"]
    for row in build_rows(builds):
        status = row["status"] if row["status"] == "SUCCESS" else f"**{row['status']}**"
        lines.append(f"| {_md(row['repository'])} | {_md(row['rule'])} | {_md(row['ref'])} | `{_md(row['image'])}` | "
                     f"{_md(row['digest'])} | {row['seconds']:.1f} | {status} |")
    for b in builds:
        if b["status"] == "SUCCESS":
            continue
        lines += ["", f"## {b['repository']}: {b['status']} (build record `{b['build_record_id']}`)", ""]
        lines += [f"- {note}" for note in b.get("notes", [])]
        lines += why_markdown(b)
        tail = b.get("log_tail", [])[-30:]
        lines += ["", f"Last {len(tail)} log line(s):", "", "```", *tail, "```"] if tail else ["", "(no log lines)"]
    return "\n".join(lines) + "\n"
