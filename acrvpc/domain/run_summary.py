"""The run's and its builds' summaries as plain text and markdown: pure functions over outcome data.

Both the pipeline (the build and run summary artifacts, a run's first and last log lines) and the command
line (:mod:`acrvpc.cli.report`, which adds the rich tables) render from here; it imports neither, nor
Prefect, nor the cloud clients. Durations are wall seconds: how long the pipeline waited. A build record's
own duration (its ``StartTime``/``EndTime``) is the service's clock; it is shown next to the wall time only
where it differs, labelled (with the sandbox, whose clock runs faster than the wall's, as sandbox time).
"""

from __future__ import annotations

import re
from typing import Any

ACR_CLOCK, SANDBOX_CLOCK = "ACR record time", "sandbox time"


def slug(*parts: str) -> str:
    """An artifact key from parts: lower-case letters, digits and dashes (Prefect's rule)."""
    text = "-".join(p for p in parts if p)
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")[:120] or "acrvpc"


def record_clock_label(sandbox: bool) -> str:
    """What a build record's duration is measured in: the sandbox's clock, or ACR's."""
    return SANDBOX_CLOCK if sandbox else ACR_CLOCK


DIGEST_CHARS = 12  # hex characters of a digest shown in markdown and tables (the table artifact has all)


def short_digest(digest: str) -> str:
    """``sha256:0123456789ab…`` for a digest; the full value is in the build table artifact and ``--json``."""
    if not digest or digest == "-":
        return "-"
    algo, _, hexpart = digest.partition(":")
    if not hexpart:
        return digest[:DIGEST_CHARS] + ("…" if len(digest) > DIGEST_CHARS else "")
    return f"{algo}:{hexpart[:DIGEST_CHARS]}" + ("…" if len(hexpart) > DIGEST_CHARS else "")


def wall_seconds(build: dict[str, Any]) -> float:
    """How long the pipeline followed a build (wall clock); its record's duration for older outcomes."""
    return float(build.get("wall_seconds") or build.get("seconds") or 0.0)


def record_seconds_differ(builds: list[dict[str, Any]]) -> bool:
    """Whether any build record's own duration differs from the wall time (by more than 1 s and 25 %)."""
    for b in builds:
        wall, record = wall_seconds(b), float(b.get("seconds") or 0.0)
        if b.get("wall_seconds") and abs(record - wall) > max(1.0, 0.25 * wall):
            return True
    return False


def build_rows(builds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per build, for the table artifact: what a person looks for first, the full digest early."""
    return [
        {
            "image": b.get("image", ""),
            "status": b["status"],
            "wall_seconds": round(wall_seconds(b), 1),
            "digest": b.get("digest", "") or "-",
            "ref": b.get("ref", ""),
            "repository": b["repository"],
            "rule": b["build_rule_id"],
            "build_record": b["build_record_id"],
            "record_seconds": round(float(b.get("seconds", 0)), 1),
            "log_lines": b.get("log_lines", 0),
        }
        for b in builds
    ]


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
    lines = [
        "",
        "### Why it failed",
        "",
        (
            f"- **{failure.get('cause', '?').replace('_', ' ')}** failure in the **{failure.get('stage', '?')}** "
            f"stage (API stage `{_md(failure.get('api_stage') or '?')}`, status {_md(failure.get('status', ''))})"
        ),
    ]
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


def build_markdown(
    spec_name: str, builds: list[dict[str, Any]], flow_run_id: str = "", record_clock: str = ACR_CLOCK
) -> str:
    """The run's build summary in markdown: a table, then the log tail of each build that failed.

    Args:
        spec_name: the spec's name (the heading).
        builds: the builds' outcomes as dicts (``BuildOutcome.model_dump()``).
        flow_run_id: the run, named in the first line when given.
        record_clock: what a build record's own duration is measured in (:func:`record_clock_label`).
    """
    ok = sum(1 for b in builds if b["status"] == "SUCCESS")
    lines = [f"# Builds of {spec_name}", ""]
    if flow_run_id:
        lines += [f"Flow run `{flow_run_id}`: {ok} of {len(builds)} build(s) succeeded.", ""]
    else:
        lines += [f"{ok} of {len(builds)} build(s) succeeded.", ""]
    if not builds:
        return "\n".join(lines + ["No build was started."]) + "\n"
    record = record_seconds_differ(builds)
    head = ["image", "ref", "digest", "wall s", *(["record s¹"] if record else []), "status"]
    align = ["---", "---", "---", "---:", *(["---:"] if record else []), "---"]
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for row in build_rows(builds):
        status = row["status"] if row["status"] == "SUCCESS" else f"**{row['status']}**"
        cells = [
            f"`{_md(row['image'])}`",
            _md(row["ref"]),
            f"`{_md(short_digest(row['digest']))}`" if row["digest"] != "-" else "-",
            f"{row['wall_seconds']:.1f}",
        ]
        cells += [f"{row['record_seconds']:.1f}"] if record else []
        lines.append("| " + " | ".join([*cells, status]) + " |")
    lines += ["", "Digests are shortened; the build table artifact has them in full."]
    if record:
        lines += [
            "",
            (
                f"¹ the build record's own StartTime/EndTime, in {record_clock} "
                "(wall s is how long the run followed the build)."
            ),
        ]
    for b in builds:
        if b["status"] == "SUCCESS":
            continue
        lines += ["", f"## {b['repository']}: {b['status']} (build record `{b['build_record_id']}`)", ""]
        lines += [f"- {note}" for note in b.get("notes", [])]
        lines += why_markdown(b)
        tail = b.get("log_tail", [])[-30:]
        lines += ["", f"Last {len(tail)} log line(s):", "", "```", *tail, "```"] if tail else ["", "(no log lines)"]
    return "\n".join(lines) + "\n"


def run_markdown(
    summary: dict[str, Any],
    links: dict[str, list[tuple[str, str]]] | None = None,
    failure: dict[str, str] | None = None,
) -> str:
    """The run's summary artifact: what failed and its fix first, then the CLI's stage table with links.

    Args:
        summary: the run summary (``spec``, ``stages`` rows, ``builds``), complete or as far as the run got.
        links: stage -> (label, url) of the artifacts that stage published in this run.
        failure: ``stage``, ``code``, ``message``, ``fix`` of the error that ended the run, if it failed.

    Returns:
        Markdown: a heading with the outcome, the failure (code, what happened, fix), the stage table
        (stage, result, resources, changes, wall seconds, artifacts) and one line on the builds.
    """
    links = links or {}
    spec = summary.get("spec", "")
    builds = summary.get("builds", [])
    lines = [f"# {spec}: {'failed' if failure else 'completed'}", ""]
    if failure:
        where = f" at {_md(failure['stage'])}" if failure.get("stage") else ""
        code = f"`{_md(failure['code'])}` " if failure.get("code") else ""
        lines += [f"**Failed{where}:** {code}{_md(failure.get('message', ''))}", ""]
        if failure.get("fix"):
            lines += [f"**Fix:** {_md(failure['fix'])}", ""]
    lines += ["| stage | result | resources | changes | wall s | artifacts |", "|---|---|---|---:|---:|---|"]
    seen: set[str] = set()
    for row in summary.get("stages", []):
        seen.add(row["stage"])
        result = row["result"] if row["result"] == "completed" else f"**{row['result']}**"
        resources = "<br>".join(f"{_md(k)}: `{_md(v)}`" for k, v in row.get("resources", {}).items()) or "-"
        artifacts = ", ".join(f"[{_md(label)}]({url})" for label, url in links.get(row["stage"], [])) or "-"
        lines.append(
            f"| {row['stage']} | {result} | {resources} | {len(row.get('changes', []))} | "
            f"{float(row.get('seconds', 0)):.1f} | {artifacts} |"
        )
    failed_stage = (failure or {}).get("stage", "").split(" ")[0]
    if failed_stage and failed_stage not in seen:
        artifacts = ", ".join(f"[{_md(label)}]({url})" for label, url in links.get(failed_stage, [])) or "-"
        lines.append(f"| {failed_stage} | **failed** | - | - | - | {artifacts} |")
    for stage, entries in links.items():
        if stage not in seen and stage != failed_stage and entries:
            lines.append(
                f"| {stage} | - | - | - | - | " + ", ".join(f"[{_md(label)}]({url})" for label, url in entries) + " |"
            )
    if builds:
        ok = sum(1 for b in builds if b["status"] == "SUCCESS")
        lines += ["", f"{ok} of {len(builds)} build(s) succeeded."]
    writes = sum(len(r.get("changes", [])) for r in summary.get("stages", []))
    lines += ["", f"{writes} write(s). Durations are wall seconds. The run's logs have every write and build log line."]
    return "\n".join(lines) + "\n"


def plan_lines(spec: Any, start_builds: bool = True) -> list[str]:
    """A full run's first log lines: the spec, the mode, the stages in order and the builds it will start."""
    wanted = [
        f"{r.namespace}/{r.name}:{rule.image_tag}" for r in spec.repositories for rule in r.build_rules if rule.build
    ]
    mode = spec.link.mode.value
    link = "console steps (link, account)" if mode == "console" else "link -> eni"
    stages = f"preflight -> [{link}] + [gitlab -> binding x{len(spec.repositories)}]"
    stages += " -> webhook" if spec.gitlab.register_webhook else ""
    stages += " -> build" if start_builds else " (builds skipped: start_builds is false)"
    builds = (
        (f"{len(wanted)} build(s): {', '.join(wanted)}" if wanted else "no rule has build: true")
        if start_builds
        else "no build (start_builds is false)"
    )
    return [
        (
            f"run of spec {spec.name}: instance {spec.instance_id} in {spec.region}, link mode {mode}, "
            f"{len(spec.repositories)} repositories"
        ),
        f"stages: {stages}",
        f"builds: {builds}",
    ]


def _writes(stages: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for row in stages:
        for change in row.get("changes", []):
            action = str(change).split(" ", 1)[0]
            counts[action] = counts.get(action, 0) + 1
    total = sum(counts.values())
    if not total:
        return "0 writes (converged)"
    return f"{total} write(s): " + ", ".join(f"{action} x{n}" if n > 1 else action for action, n in counts.items())


def _builds(builds: list[dict[str, Any]]) -> str:
    if not builds:
        return "no build"
    ok = sum(1 for b in builds if b["status"] == "SUCCESS")
    each = ", ".join(
        f"{b.get('image') or b['repository']} {b['status']}"
        + (f" {short_digest(b['digest'])}" if b.get("digest") else "")
        + f" ({wall_seconds(b):.1f} s)"
        for b in builds
    )
    return f"{ok} of {len(builds)} build(s) succeeded: {each}"


def done_lines(summary: dict[str, Any], failure: dict[str, str] | None = None) -> list[str]:
    """A run's last log lines: what it wrote and built (or what failed and its fix), and where to look next."""
    spec = summary.get("spec", "")
    key = slug(spec, "run")
    builds = summary.get("builds", [])
    done = f"{_writes(summary.get('stages', []))}; {_builds(builds)}"
    if failure:
        code = f"[{failure['code']}] " if failure.get("code") else ""
        lines = [
            f"failed at {failure.get('stage') or 'an unknown stage'}: {code}{failure.get('message', '')}",
            f"fix: {failure.get('fix') or 'see the error above'}",
            f"before it failed: {done}",
            (
                f"next: apply the fix, then Retry this run (stages that completed come back Cached); the stage "
                f"table with links is the artifact {key}"
            ),
        ]
        return lines
    lines = [f"done: {len(summary.get('stages', []))} stage(s), {done}"]
    next_ = f"next: the stage table with links is the artifact {key}"
    if builds:
        next_ += f"; builds in {slug(spec, 'builds')} (full digests in {slug(spec, 'build-table')})"
    return lines + [next_]
