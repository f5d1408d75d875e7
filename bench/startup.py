"""How fast the CLI answers: read-only commands and the demo, each against a yardstick measured in the same run.

    python bench/startup.py            # 5 rounds of every command, then 2 demos on fresh PREFECT_HOMEs
    python bench/startup.py --quick    # 3 rounds, 1 demo (about a minute)

Per round, interleaved so a burst of load hits both alike: the floor of a preflight
(``python -c "import <the three Alibaba Cloud SDK clients>, gitlab"``), then ``acrvpc preflight``,
``plan``, ``policy`` and ``--help`` of examples/sandbox.yaml against an in-process sandbox. The
figure is ``preflight_ratio = median(preflight wall) / median(floor wall)`` (target <= 1.3). Then
``acrvpc demo --quiet`` on a fresh ``PREFECT_HOME`` (Prefect's embedded server creates its database),
timed to its first line of output (``acrvpc demo`` without --quiet) and to its end, next to the
yardstick ``python -c "import prefect"``, with the CPU seconds it used (its Prefect server's included: load
changes them little). Last line: the JSON (``preflight_ratio``, ``demo_fresh_s``, ``demo_first_output_s``,
``demo_cpu_s``, every sample, the load average before and after).

The project's modules are byte-compiled first (``compileall``), as an installed wheel's are: the warm-up run
writes no ``.pyc`` when ``PYTHONDONTWRITEBYTECODE`` is set, and every command then compiled some 40 modules
from source (issue 18). Informative, next to the floor: ``floor_gc_paused``, the same imports with Python's
cyclic collector paused and the loaded objects frozen before the exit, as ``acrvpc preflight`` runs them
(:mod:`acrvpc.cli.app`), and ``preflight_ratio_same_collector`` against it: what the CLI adds to the SDKs'
imports when both are loaded alike.
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a fresh clone
from bench import common

TARGET_RATIO = 1.3
TARGET_DEMO_S = 12.0
TARGET_FIRST_OUTPUT_S = 2.0
FLOOR = (
    "import alibabacloud_cr20181201.client, alibabacloud_ecs20140526.client, alibabacloud_vpc20160428.client, gitlab"
)
FLOOR_GC_PAUSED = f"import gc; gc.disable(); {FLOOR}; gc.freeze()"
SPEC = str(common.ROOT / "examples" / "sandbox.yaml")
PACKAGES = ("acrvpc", "tasks", "flows", "deployments")
ACRVPC = [sys.executable, "-m", "acrvpc"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(extra)
    return env


def wall(command: list[str], env: dict[str, str], cwd: Path) -> float:
    """Wall seconds of one run of ``command`` (its output discarded; a failure stops the benchmark)."""
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr[-1500:]}")
    return seconds


def demo(home: Path, cwd: Path) -> tuple[float, float, float]:
    """(seconds to the first line of output, seconds to the end, CPU seconds) of ``acrvpc demo`` on the fresh
    ``home``; the CPU seconds are the demo's and its Prefect server's (a child it waits for), user + system."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*ACRVPC, "demo", "--spec", SPEC],
        env=_env(PREFECT_HOME=str(home), COLUMNS="120"),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    first = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if first is None and line.strip():
            first = time.perf_counter() - started
    code = proc.wait()
    total = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"acrvpc demo exited {code}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return first if first is not None else total, total, cpu


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds and 1 demo")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of the CLI commands (default 5)")
    parser.add_argument("--demos", type=int, default=None, help="demos on fresh homes (default 2)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 5)
    demos = args.demos if args.demos is not None else (1 if args.quick else 2)

    from acrvpc.sandbox import SandboxServer

    figures: dict = {"benchmark": "startup", "machine": common.machine(), "load_before": os.getloadavg()}
    samples: dict[str, list[float]] = {
        k: []
        for k in (
            "floor",
            "floor_gc_paused",
            "preflight",
            "plan",
            "policy",
            "help",
            "import_prefect",
            "demo_first_output",
            "demo",
            "demo_cpu",
        )
    }
    for package in PACKAGES:
        compileall.compile_dir(str(common.ROOT / package), quiet=1)
    with tempfile.TemporaryDirectory(prefix="acrvpc-startup-") as tmp, SandboxServer() as sandbox:
        cwd = Path(tmp)  # no prefect.toml, .env or pyproject here: Prefect's settings come from the environment
        env = _env(ACRVPC_SANDBOX_URL=sandbox.url, PREFECT_HOME=str(cwd / "home"))
        wall([*ACRVPC, "preflight", SPEC], env, cwd)  # once first: .pyc files, the sandbox's first answers
        for _ in range(rounds):
            samples["floor"].append(wall([sys.executable, "-c", FLOOR], env, cwd))
            samples["floor_gc_paused"].append(wall([sys.executable, "-c", FLOOR_GC_PAUSED], env, cwd))
            samples["preflight"].append(wall([*ACRVPC, "preflight", SPEC], env, cwd))
            samples["plan"].append(wall([*ACRVPC, "plan", SPEC], env, cwd))
            samples["policy"].append(wall([*ACRVPC, "policy", SPEC], env, cwd))
            samples["help"].append(wall([*ACRVPC, "--help"], env, cwd))
        for i in range(demos):
            samples["import_prefect"].append(wall([sys.executable, "-c", "import prefect"], env, cwd))
            first, total, cpu = demo(cwd / f"fresh-home-{i}", cwd)
            samples["demo_first_output"].append(first)
            samples["demo"].append(total)
            samples["demo_cpu"].append(cpu)
    med = {k: round(common.median(v), 3) for k, v in samples.items() if v}
    figures.update(
        samples={k: [round(x, 3) for x in v] for k, v in samples.items()},
        medians=med,
        preflight_ratio=round(med["preflight"] / med["floor"], 3),
        preflight_ratio_same_collector=round(med["preflight"] / med["floor_gc_paused"], 3),
        plan_ratio=round(med["plan"] / med["floor"], 3),
        demo_fresh_s=med.get("demo"),
        demo_first_output_s=med.get("demo_first_output"),
        demo_cpu_s=med.get("demo_cpu"),
        demo_ratio=round(med["demo"] / med["import_prefect"], 2) if demos else None,
        load_after=os.getloadavg(),
        targets={
            "preflight_ratio": TARGET_RATIO,
            "demo_fresh_s": TARGET_DEMO_S,
            "demo_first_output_s": TARGET_FIRST_OUTPUT_S,
        },
    )
    figures["targets_met"] = {
        "preflight_ratio": figures["preflight_ratio"] <= TARGET_RATIO,
        "demo_fresh_s": demos > 0 and figures["demo_fresh_s"] <= TARGET_DEMO_S,
        "demo_first_output_s": demos > 0 and figures["demo_first_output_s"] <= TARGET_FIRST_OUTPUT_S,
    }
    rows = [
        {"command": name, "median s": med[key], "vs yardstick": round(med[key] / med[base], 2)}
        for name, key, base in [
            ("floor: import 3 SDK clients + gitlab", "floor", "floor"),
            ("the floor, collector paused (informative)", "floor_gc_paused", "floor"),
            ("acrvpc preflight", "preflight", "floor"),
            ("acrvpc plan", "plan", "floor"),
            ("acrvpc policy", "policy", "floor"),
            ("acrvpc --help", "help", "floor"),
        ]
    ]
    if demos:
        rows += [
            {"command": "yardstick: import prefect", "median s": med["import_prefect"], "vs yardstick": 1.0},
            {
                "command": "acrvpc demo (fresh home): first output",
                "median s": med["demo_first_output"],
                "vs yardstick": round(med["demo_first_output"] / med["import_prefect"], 2),
            },
            {
                "command": "acrvpc demo (fresh home): end",
                "median s": med["demo"],
                "vs yardstick": figures["demo_ratio"],
            },
            {
                "command": "acrvpc demo (fresh home): CPU s, its server's included",
                "median s": med["demo_cpu"],
                "vs yardstick": "",
            },
        ]
    common.say(
        f"startup: medians of {rounds} interleaved rounds, {demos} demo(s); load "
        f"{figures['load_before'][0]:.1f} -> {figures['load_after'][0]:.1f}"
    )
    common.say(common.table(rows))
    common.say(
        f"preflight_ratio {figures['preflight_ratio']} (target <= {TARGET_RATIO}; "
        f"{figures['preflight_ratio_same_collector']} against the floor with the collector paused); demo "
        f"{figures['demo_fresh_s']} s (target <= {TARGET_DEMO_S}), first output {figures['demo_first_output_s']} s "
        f"(target <= {TARGET_FIRST_OUTPUT_S})"
    )
    common.emit(figures)
    return figures


if __name__ == "__main__":
    main()
