"""``acrvpc plan`` loads no Prefect: the stages it calls (tasks/link.py, tasks/eni.py, tasks/binding.py) take
``@task`` from :mod:`acrvpc.lazy_prefect` (issue 18). Runs the real command against an in-process sandbox
in a fresh interpreter, like tests/unit/test_lazy_imports.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_probe(code: str, tmp_path: Path) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ACRVPC_"))}
    clean.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PYTHONPATH=str(ROOT), COLUMNS="200")
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_plan_against_the_sandbox_loads_no_prefect(tmp_path):
    result = run_probe(
        f"""
        import json, os, sys
        from acrvpc.sandbox import SandboxServer

        with SandboxServer() as sandbox:
            os.environ["ACRVPC_SANDBOX_URL"] = sandbox.url
            before = "prefect" in sys.modules
            sys.argv = ["acrvpc", "plan", {str(ROOT / "examples" / "sandbox.yaml")!r}]
            from acrvpc.cli.app import app
            try:
                app()
            except SystemExit as exc:
                code = exc.code
        print(json.dumps({{"code": code, "before": before, "prefect": "prefect" in sys.modules,
                          "stages": [m for m in ("tasks.link", "tasks.eni", "tasks.binding") if m in sys.modules]}}))
    """,
        tmp_path,
    )
    assert result["before"] is False  # the sandbox itself loads no Prefect
    assert result["code"] in (0, None)
    assert sorted(result["stages"]) == ["tasks.binding", "tasks.eni", "tasks.link"]  # the plan did use them
    assert result["prefect"] is False


def test_the_stage_tasks_are_still_prefect_tasks_in_a_flow(tmp_path):
    result = run_probe(
        """
        import json, sys
        import tasks.binding, tasks.eni, tasks.link
        assert "prefect" not in sys.modules
        from prefect import Task
        names = {}
        for module in (tasks.binding, tasks.eni, tasks.link):
            for value in vars(module).values():
                if type(value).__name__ == "LazyTask" and value.__module__ == module.__name__:
                    names[value.__name__] = isinstance(value.prefect_task(), Task)
        print(json.dumps(names))
    """,
        tmp_path,
    )
    assert result and all(result.values()), result


GC_PROBE = """
import atexit, gc, json, os, sys
from acrvpc.sandbox import SandboxServer

sandbox = SandboxServer().__enter__()
os.environ["ACRVPC_SANDBOX_URL"] = sandbox.url
sys.argv = ["acrvpc", *{argv!r}]
collections, running = [0, 0, 0], [True]
gc.callbacks.append(lambda phase, info: running[0] and phase == "start" and collections.__setitem__(
    info["generation"], collections[info["generation"]] + 1))


@atexit.register
def _said():
    print(json.dumps({{"collections": collections, "frozen": gc.get_freeze_count(), "enabled": gc.isenabled(),
                      "prefect": sorted(m for m in sys.modules if m == "prefect" or m.startswith("prefect.")),
                      "checked": "tasks.preflight" in sys.modules,
                      "sdk_models": len([m for m in sys.modules if m.startswith("alibabacloud_") and ".models._" in m])}}))


try:
    from acrvpc.cli.app import main

    main()
finally:
    running[0] = False
"""


def test_a_preflight_runs_without_the_cyclic_collector_and_freezes_what_it_loaded(tmp_path):
    """The collector is paused while `acrvpc preflight` loads the CLI and the SDKs and runs, and what it loaded is
    frozen so the interpreter's last collection skips it (issue 18)."""
    spec = str(ROOT / "examples" / "sandbox.yaml")
    result = probe_exit(GC_PROBE.format(argv=["preflight", spec]), tmp_path)
    # none of the older generations, where the loaded objects go (a few young-generation passes may run between
    # the end of the CLI module's import and main())
    assert result["collections"][1:] == [0, 0], result
    assert result["frozen"] > 100_000  # the SDKs' modules, classes and functions
    assert result["enabled"] is True


def test_a_preflight_through_the_console_entry_point_loads_no_prefect(tmp_path):
    """`acrvpc preflight` needs neither Prefect's engine nor its settings: they cost more than the SDKs' floor.
    Of the SDKs' 4259 model classes it loads the modules of those it reads (acrvpc.cloud.sdk_models)."""
    spec = str(ROOT / "examples" / "sandbox.yaml")
    result = probe_exit(GC_PROBE.format(argv=["preflight", "--json", spec]), tmp_path)
    assert result["checked"] is True  # the checks did run
    assert result["prefect"] == []
    assert 0 < result["sdk_models"] < 100, result


def test_other_commands_run_with_the_collector(tmp_path):
    result = probe_exit(GC_PROBE.format(argv=["sandbox", "--port", "-1"]), tmp_path)
    assert result["frozen"] == 0 and result["enabled"] is True


def probe_exit(code: str, tmp_path: Path) -> dict:
    """The JSON line a probe prints at its exit (after the command's own exit code)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ACRVPC_"))}
    clean.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PYTHONPATH=str(ROOT), COLUMNS="200")
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=180
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_plain_http_clients_build_no_ssl_context_and_https_ones_still_do(tmp_path):
    """The SDKs' runtime built an SSL context (the system's CA store, 17 ms) for every new session, even for a
    sandbox's http:// (issue 18). A real GetInstance through the pipeline's clients against the sandbox now builds
    none; an HTTPS session is built as before, with certifi's CAs."""
    result = run_probe(
        f"""
        import json, os, ssl
        from acrvpc.sandbox import SandboxServer

        made = []
        original = ssl.create_default_context
        ssl.create_default_context = lambda *a, **k: made.append(1) or original(*a, **k)
        with SandboxServer() as sandbox:
            os.environ["ACRVPC_SANDBOX_URL"] = sandbox.url
            import alibabacloud_cr20181201.client  # aiohttp, under the SDK, builds its own at import
            from alibabacloud_cr20181201 import models
            from acrvpc.cloud.clients import cloud_clients
            from acrvpc.domain.spec import load_spec

            spec = load_spec({str(ROOT / "examples" / "sandbox.yaml")!r})
            imported = len(made)
            body = cloud_clients(spec).cr.get_instance(models.GetInstanceRequest(instance_id=spec.instance_id)).body
            http = len(made) - imported
            made.clear()
            from darabonba.core import DaraCore

            https = DaraCore.get_adapter("HTTPS", "TLSv1.2").ssl_context
        print(json.dumps({{"ok": body.is_success, "http": http, "https": len(made),
                          "cas": https.cert_store_stats()["x509_ca"], "tls": https.minimum_version.name}}))
        """,
        tmp_path,
    )
    assert result["ok"] is True
    assert result["http"] == 0
    assert result["https"] == 1 and result["cas"] > 0 and result["tls"] == "TLSv1_2"
