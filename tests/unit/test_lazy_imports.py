"""What a module or a read-only command imports: only what it uses (issue 18, "fast from the first keystroke").

Each case runs in a fresh interpreter (``sys.modules`` of this one holds everything the suite loaded)
and prints the top-level packages it ended with. ``import prefect`` costs 1.5 s of CPU, each Alibaba
Cloud SDK 0.3-0.7 s: a command that does not call them must not load them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("prefect", "alibabacloud_cr20181201", "alibabacloud_ecs20140526", "alibabacloud_vpc20160428", "gitlab")


def loaded_after(code: str, tmp_path: Path, **env: str) -> set[str]:
    """The heavy packages a fresh Python has loaded after running ``code`` (cwd: an empty directory)."""
    probe = textwrap.dedent(code) + textwrap.dedent(f"""
        import json, sys
        print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))
    """)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ACRVPC_"))}
    clean.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PYTHONPATH=str(ROOT), **env)
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def cli(*args: str) -> str:
    return f"""
        import sys
        sys.argv = ["acrvpc", *{list(args)!r}]
        from acrvpc.cli.app import app
        try:
            app()
        except SystemExit:
            pass
    """


class TestFlowModules:
    def test_on_push_flow_loads_neither_the_ecs_nor_the_vpc_sdk(self, tmp_path):
        loaded = loaded_after("import flows.on_push", tmp_path)
        assert "alibabacloud_cr20181201" in loaded  # the one SDK it calls
        assert not loaded & {"alibabacloud_ecs20140526", "alibabacloud_vpc20160428", "gitlab"}


class TestReadOnlyCommands:
    def test_help_loads_no_sdk_and_no_prefect(self, tmp_path):
        assert loaded_after(cli("--help"), tmp_path) == set()

    def test_policy_loads_no_sdk_and_no_prefect(self, tmp_path):
        assert loaded_after(cli("policy", str(ROOT / "examples" / "sandbox.yaml")), tmp_path) == set()

    def test_preflight_modules_load_the_sdks_but_not_prefect(self, tmp_path):
        loaded = loaded_after(
            """
            import acrvpc.cli.app, acrvpc.cli.commands.preflight, acrvpc.cloud.clients, tasks.preflight
            from acrvpc.cloud import ratelimit
            assert ratelimit.api_url() is None  # no API URL anywhere: known without importing Prefect
        """,
            tmp_path,
        )
        assert "prefect" not in loaded
        assert {"alibabacloud_cr20181201", "alibabacloud_ecs20140526", "alibabacloud_vpc20160428"} <= loaded

    @pytest.mark.parametrize("where", ["env", "profile", "prefect.toml"])
    def test_an_api_url_in_any_settings_source_is_still_read_through_prefect(self, tmp_path, where):
        env = {}
        if where == "env":
            env["PREFECT_API_URL"] = "http://127.0.0.1:9/api"
        elif where == "profile":
            (tmp_path / "prefect-home").mkdir()
            (tmp_path / "prefect-home" / "profiles.toml").write_text(
                'active = "x"\n[profiles.x]\nPREFECT_API_URL = "http://127.0.0.1:9/api"\n'
            )
        else:
            (tmp_path / "prefect.toml").write_text('[api]\nurl = "http://127.0.0.1:9/api"\n')
        loaded = loaded_after(
            """
            from acrvpc.cloud import ratelimit
            assert ratelimit.api_url() == "http://127.0.0.1:9/api", ratelimit.api_url()
        """,
            tmp_path,
            **env,
        )
        assert "prefect" in loaded


class TestLazyTask:
    def test_the_task_is_built_on_first_use_with_its_options(self, tmp_path):
        loaded = loaded_after(
            """
            import sys
            import tasks.preflight as pf
            assert "prefect" not in sys.modules
            from prefect import Task
            real = pf.preflight.prefect_task()
            assert isinstance(real, Task) and real.name == "preflight" and real.retries >= 1
            assert pf.preflight.fn is real.fn and pf.preflight.with_options(retries=0).retries == 0
            assert pf.preflight.__name__ == "preflight" and pf.preflight.__doc__ == real.fn.__doc__
        """,
            tmp_path,
        )
        assert "prefect" in loaded
