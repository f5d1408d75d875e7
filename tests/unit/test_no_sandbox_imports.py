"""Product code imports nothing from the sandbox, except the CLI's ``demo`` and ``sandbox`` commands (issue 19).

The sandbox (``acrvpc/sandbox/``) is the cloud the fidelity tests compare the product against; product code
that imported it (its credentials, its RAM evaluator) would make those comparisons circular and would
ship the emulator's internals into the pipeline. Every module of ``acrvpc/`` outside the sandbox,
``flows/``, ``tasks/`` and ``deployments/`` is parsed with :mod:`ast`; every import (at any level) of
``acrvpc.sandbox`` must sit inside one of the allowed top-level functions below: the ``demo`` command
(which starts a sandbox) and the ``sandbox`` command (which serves one).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.unit.test_import_graph import ROOT, SCANNED, imported_names, module_files

# (file, top-level function): the only places product code may import the sandbox.
ALLOWED = {
    ("acrvpc/cli/app.py", "demo"),
    ("acrvpc/cli/app.py", "_demo"),  # the demo command's body
    ("acrvpc/cli/app.py", "sandbox"),
}
SANDBOX = "acrvpc.sandbox"


def _is_sandbox(name: str) -> bool:
    return name == SANDBOX or name.startswith(SANDBOX + ".")


def sandbox_imports(root: Path = ROOT) -> list[tuple[str, str, int, str]]:
    """``(file, enclosing top-level function or "<module>", line, imported name)`` for each sandbox import."""
    found = []
    for module, path in module_files(root).items():
        if _is_sandbox(module):
            continue
        sandbox_lines = {line: name for name, line in imported_names(module, path) if _is_sandbox(name)}
        if not sandbox_lines:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        spans = [
            (node.lineno, node.end_lineno or node.lineno, node.name)
            for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        ]
        for line, name in sorted(sandbox_lines.items()):
            where = next((fn for start, end, fn in spans if start <= line <= end), "<module>")
            found.append((path.relative_to(root).as_posix(), where, line, name))
    return found


class TestNoSandboxImports:
    def test_product_code_imports_the_sandbox_only_in_the_demo_and_sandbox_commands(self):
        """Given the product's modules, when their imports of acrvpc.sandbox are listed, then all are allowed."""
        bad = [
            f"{file}:{line} ({where}) imports {name}"
            for file, where, line, name in sandbox_imports()
            if (file, where) not in ALLOWED
        ]
        assert not bad, (
            "product code imports the sandbox (give the value another way, e.g. a setting, or "
            "implement it in the product):\n" + "\n".join(bad)
        )

    def test_the_scan_sees_a_sandbox_import(self, tmp_path):
        """Given a toy product module importing the sandbox lazily, the scan reports it with its function."""
        (tmp_path / "acrvpc" / "cloud").mkdir(parents=True)
        (tmp_path / "acrvpc" / "sandbox").mkdir()
        (tmp_path / "acrvpc" / "__init__.py").write_text("")
        (tmp_path / "acrvpc" / "sandbox" / "__init__.py").write_text("")
        (tmp_path / "acrvpc" / "sandbox" / "defaults.py").write_text("KEY = 'x'\n")
        (tmp_path / "acrvpc" / "cloud" / "clients.py").write_text(
            "def key():\n    from acrvpc.sandbox import defaults\n    return defaults.KEY\n"
        )
        for other in SCANNED[1:]:
            (tmp_path / other).mkdir()
        assert sandbox_imports(tmp_path) == [("acrvpc/cloud/clients.py", "key", 2, "acrvpc.sandbox.defaults")]


class TestSandboxCredentials:
    def test_the_products_copy_of_the_sandbox_credentials_is_what_the_default_world_accepts(self):
        """The client factory's sandbox pair and token (not imported from the sandbox) open the default world."""
        from acrvpc.cloud import clients
        from acrvpc.sandbox import defaults
        from acrvpc.sandbox.world import load_scenario

        scenario = load_scenario()
        pairs = {c["access_key_id"]: c["access_key_secret"] for c in scenario["credentials"]}
        assert pairs.get(clients.SANDBOX_ACCESS_KEY_ID) == clients.SANDBOX_ACCESS_KEY_SECRET
        tokens = {t["token"] for t in scenario["gitlab"]["tokens"]}
        assert clients.SANDBOX_GITLAB_TOKEN in tokens
        assert (defaults.ACCESS_KEY_ID, defaults.ACCESS_KEY_SECRET, defaults.GITLAB_TOKEN) == (
            clients.SANDBOX_ACCESS_KEY_ID,
            clients.SANDBOX_ACCESS_KEY_SECRET,
            clients.SANDBOX_GITLAB_TOKEN,
        )
