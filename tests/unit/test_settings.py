"""The one settings model (acrvpc/settings.py, issue 19): what it reads, when, its errors, the README table,
and that no other product module reads an ``ACRVPC_*`` variable from the environment itself."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from acrvpc import settings as settings_mod
from acrvpc.cloud import callretry, clients, errors, ratelimit
from acrvpc.settings import Settings, SettingsError, env_name, markdown_table, settings

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_DIRS = ("acrvpc", "flows", "tasks", "deployments")
# acrvpc/sandbox/ is the test double (it keeps its own variables); acrvpc/settings.py is the one reader.
NOT_SCANNED = (ROOT / "acrvpc" / "sandbox", ROOT / "acrvpc" / "settings.py")
ALLOWED: set[str] = set()  # no exception: every product module reads its settings through acrvpc.settings


@pytest.fixture
def clean_env(monkeypatch):
    """No ACRVPC_* variable but the suite's ACRVPC_CALL_RETRIES=0 (tests/conftest.py) removed too."""
    for name in list(os.environ):
        if name.upper().startswith("ACRVPC_"):
            monkeypatch.delenv(name)
    return monkeypatch


class TestModel:
    def test_defaults_when_nothing_is_set(self, clean_env):
        current = settings()
        assert current.retry_delays == [1, 2, 4, 8] and current.call_retries == 3
        assert (current.qps_cr, current.qps_ecs, current.qps_vpc) == (20, 20, 20)
        assert current.burst_ecs is None and current.qps_limit_prefix == "acrvpc" and current.qps_lease == 5
        assert current.sandbox_url is None and current.gitlab_token is None and current.webhook_secret is None
        assert (current.warm_pool_size, current.warm_imports, current.warm_wait_seconds) == (1, None, 60)

    def test_every_field_has_a_description_type_and_default(self):
        for field, info in Settings.model_fields.items():
            assert info.description and len(info.description) > 20, field
            assert info.annotation is not None, field
            assert not info.is_required(), field

    def test_a_change_at_run_time_is_seen_by_the_next_read(self, clean_env):
        first = settings()
        assert settings() is first  # unchanged variables: the same model, not parsed again
        clean_env.setenv("ACRVPC_QPS_ECS", "7.5")
        assert settings().qps_ecs == 7.5 and ratelimit.quota("ecs") == (7.5, 3.75)
        clean_env.setenv("ACRVPC_CALL_RETRIES", "1")
        assert callretry.attempts_after_first() == 1
        clean_env.setenv("ACRVPC_SANDBOX_URL", " http://127.0.0.1:9/ ")
        assert clients.sandbox_url() == "http://127.0.0.1:9"
        clean_env.delenv("ACRVPC_SANDBOX_URL")
        assert clients.sandbox_url() is None
        clean_env.setenv("ACRVPC_RETRY_DELAYS", "0.2, 0.4,,")
        assert errors.retry_delays() == [0.2, 0.4]

    def test_empty_or_blank_is_unset(self, clean_env):
        clean_env.setenv("ACRVPC_QPS_LEASE", "")
        clean_env.setenv("ACRVPC_QPS_LIMIT_PREFIX", "  ")
        clean_env.setenv("ACRVPC_GITLAB_TOKEN", "")
        current = settings()
        assert current.qps_lease == 5 and current.qps_limit_prefix == "acrvpc" and current.gitlab_token is None

    @pytest.mark.parametrize(
        ("name", "value", "fix"),
        [
            ("ACRVPC_RETRY_DELAYS", "1,two", "comma-separated non-negative seconds, e.g. 1,2,4,8"),
            ("ACRVPC_RETRY_DELAYS", " , ", "comma-separated non-negative seconds"),
            ("ACRVPC_RETRY_DELAYS", "1,-2", "comma-separated non-negative seconds"),
            ("ACRVPC_CALL_RETRIES", "many", "whole number of retries"),
            ("ACRVPC_QPS_VPC", "-1", "number of calls per second (0 for no limit)"),
            ("ACRVPC_BURST_CR", "lots", "write a number of calls"),
            ("ACRVPC_QPS_LIMIT_PREFIX", "a b", "letters, digits"),
            ("ACRVPC_QPS_LEASE", "0", "whole number of calls >= 1"),
            ("ACRVPC_WARM_POOL_SIZE", "two", "whole number"),
            ("ACRVPC_WARM_WAIT_SECONDS", "soon", "number of seconds"),
        ],
    )
    def test_a_bad_value_names_the_variable_the_value_and_the_fix(self, clean_env, name, value, fix):
        clean_env.setenv(name, value)
        with pytest.raises(SettingsError) as caught:
            settings()
        assert str(caught.value).startswith(f"{name}={value.strip()!r}: ") and fix in str(caught.value)
        assert isinstance(caught.value, ValueError)

    def test_two_bad_values_are_both_named(self, clean_env):
        clean_env.setenv("ACRVPC_QPS_ECS", "x")
        clean_env.setenv("ACRVPC_QPS_LEASE", "y")
        with pytest.raises(SettingsError, match=r"ACRVPC_QPS_ECS='x'.*; ACRVPC_QPS_LEASE='y'"):
            settings()

    def test_a_bad_value_fails_the_import_of_the_tasks_before_anything_runs(self, tmp_path):
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("ACRVPC_", "PREFECT_"))}
        env.update(ACRVPC_RETRY_DELAYS="1,x", PYTHONPATH=str(ROOT), PREFECT_HOME=str(tmp_path))
        out = subprocess.run(
            [sys.executable, "-c", "import acrvpc.cloud.errors"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 1
        assert "SettingsError: ACRVPC_RETRY_DELAYS='1,x': write one or more comma-separated" in out.stderr

    def test_secrets_never_show(self, clean_env):
        secret = "glpat-very-secret-0001"
        clean_env.setenv("ACRVPC_GITLAB_TOKEN", secret)
        clean_env.setenv("ACRVPC_WEBHOOK_SECRET", secret)
        clean_env.setenv("ACRVPC_QPS_ECS", "bad")  # an error while secrets are set
        with pytest.raises(SettingsError) as caught:
            settings()
        assert secret not in str(caught.value)
        clean_env.delenv("ACRVPC_QPS_ECS")
        current = settings()
        assert secret not in repr(current) and secret not in str(current) and secret not in current.model_dump_json()
        assert settings_mod.secret_value(current.gitlab_token) == secret
        assert clients.resolve_gitlab_token("no-such-block") == secret

    def test_secrets_are_passed_on_as_given(self, clean_env):
        clean_env.setenv("ACRVPC_WEBHOOK_SECRET", "  spaced\n")
        assert settings().webhook_secret.get_secret_value() == "  spaced\n"

    def test_the_module_imports_neither_prefect_nor_an_sdk(self, tmp_path):
        probe = (
            "import sys, acrvpc.settings; acrvpc.settings.settings(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'gitlab', 'alibabacloud_cr20181201',"
            " 'alibabacloud_ecs20140526', 'alibabacloud_vpc20160428', 'alibabacloud_tea_openapi'}))"
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == "[]"


# -- the README's table ------------------------------------------------------------------------------
def readme_table() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Settings\n")
    end = text.index("\n## ", start + 1)
    return "".join(line + "\n" for line in text[start:end].splitlines() if line.startswith("|"))


class TestReadme:
    def test_the_readme_table_is_the_models(self):
        assert readme_table() == markdown_table(), (
            "README.md's Settings table differs from acrvpc/settings.py: paste `python -m acrvpc.settings`"
        )

    def test_every_field_has_a_row(self):
        rows = readme_table()
        for field in Settings.model_fields:
            assert f"| `{env_name(field)}` |" in rows, field

    def test_secrets_are_marked(self):
        for line in readme_table().splitlines():
            if "SECRET" in line.split("|")[1] or "TOKEN" in line.split("|")[1]:
                assert "| secret |" in line and "**Secret**" in line, line


# -- nobody else reads ACRVPC_* ------------------------------------------------------------------------
# Only reads count: a write may stay where it is (the demo sets ACRVPC_SANDBOX_URL in os.environ for its
# children and for the settings read after it, acrvpc/cli/app.py), as may handing the whole environment on
# ({**os.environ}, the warm worker's runs).
def _string_constants(trees: list[ast.Module]) -> dict[str, str]:
    """Module-level ``NAME = "ACRVPC_..."`` constants of the scanned modules (``SANDBOX_ENV``, ``QPS_ENV``)."""
    found = {}
    for tree in trees:
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        found[target.id] = node.value.value
    return found


def _names_acrvpc(node: ast.AST | None, constants: dict[str, str]) -> bool:
    """Whether the expression is (or builds) an ``ACRVPC_*`` variable name."""
    if node is None:
        return False
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.upper().startswith("ACRVPC_")
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = node.id if isinstance(node, ast.Name) else node.attr
        return constants.get(name, "").upper().startswith("ACRVPC_")
    if isinstance(node, ast.JoinedStr):
        return bool(node.values) and _names_acrvpc(node.values[0], constants)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):  # "ACRVPC_{x}".format(...)
        return _names_acrvpc(node.func.value, constants)
    if isinstance(node, ast.BinOp):  # "ACRVPC_" + x
        return _names_acrvpc(node.left, constants)
    return False


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def environ_reads(tree: ast.Module, constants: dict[str, str]) -> list[int]:
    """Lines of ``os.environ.get/[]/setdefault/pop``, ``os.getenv`` or ``in os.environ`` with an ACRVPC_ name."""
    lines = []
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            if node.func.attr in ("get", "setdefault", "pop") and _is_environ(node.func.value):
                key = node.args[0]
            elif node.func.attr == "getenv":
                key = node.args[0]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getenv" and node.args:
            key = node.args[0]
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_environ(node.value):
            key = node.slice
        elif (
            isinstance(node, ast.Compare)
            and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops)
            and any(_is_environ(c) for c in node.comparators)
        ):
            key = node.left
        if _names_acrvpc(key, constants):
            lines.append(node.lineno)
    return lines


def product_sources() -> dict[str, str]:
    sources = {}
    for folder in PRODUCT_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if any(path == skip or skip in path.parents for skip in NOT_SCANNED):
                continue
            sources[path.relative_to(ROOT).as_posix()] = path.read_text()
    return sources


def acrvpc_reads(sources: dict[str, str]) -> dict[str, list[int]]:
    trees = {name: ast.parse(text, name) for name, text in sources.items()}
    constants = _string_constants(list(trees.values()))
    return {name: lines for name, tree in trees.items() if (lines := environ_reads(tree, constants))}


class TestOneReader:
    def test_no_product_module_reads_an_acrvpc_variable_itself(self):
        reads = {name: lines for name, lines in acrvpc_reads(product_sources()).items() if name not in ALLOWED}
        assert not reads, f"read ACRVPC_* through acrvpc.settings.settings(), not os.environ: {reads}"

    def test_the_scan_sees_each_form_of_read(self):
        code = (
            'import os\nfrom os import environ, getenv\nNAME_ENV = "ACRVPC_X"\n'
            'a = os.environ.get("ACRVPC_A", "")\nb = os.environ["ACRVPC_B"]\nc = os.getenv("ACRVPC_C")\n'
            'd = os.environ.get(NAME_ENV)\ne = os.environ.get(f"ACRVPC_QPS_{p}")\n'
            'f = os.environ.get("ACRVPC_{p}".format(p=1))\ng = "ACRVPC_G" in os.environ\nh = environ.get("ACRVPC_H")\n'
            'i = getenv("ACRVPC_I")\n'
            'os.environ["ACRVPC_SANDBOX_URL"] = "w"\nok = os.environ.get("PREFECT_HOME")\n'
        )
        assert acrvpc_reads({"probe.py": code}) == {"probe.py": [4, 5, 6, 7, 8, 9, 10, 11, 12]}
