"""The command line's import graph: ``acrvpc.cli.app -> acrvpc.cli.commands.* -> acrvpc.cli.common``.

The command modules take ``app``, ``console``, ``err`` and ``load_spec_or_exit`` from
:mod:`acrvpc.cli.common`; none imports :mod:`acrvpc.cli.app` (the module that loads them), not even
inside a function (issue 19, import circles).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "acrvpc" / "cli"


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (``from a import b`` counts ``a`` and ``a.b``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def cli_import_cycles(cli: Path = CLI) -> list[str]:
    """``file: imported module`` for each import of ``acrvpc.cli.app`` by a module that app.py loads."""
    found = []
    for path in sorted([*cli.glob("commands/*.py"), cli / "common.py"]):
        if not path.exists():
            continue
        for name in sorted(imported_modules(path)):
            if name == "acrvpc.cli.app" or name.startswith("acrvpc.cli.app."):
                found.append(f"{path.relative_to(cli.parent.parent)}: {name}")
    return found


def test_no_command_module_imports_the_cli_module_that_loads_it():
    assert cli_import_cycles() == []


def test_the_shared_module_holds_what_the_commands_use():
    from acrvpc.cli import app as cli_app
    from acrvpc.cli import common

    assert cli_app.app is common.app and cli_app.console is common.console and cli_app.err is common.err
    assert callable(common.load_spec_or_exit) and not hasattr(cli_app, "_load_spec_or_exit")


def test_a_bad_spec_exits_2_naming_the_field(tmp_path):
    import pytest
    import typer

    from acrvpc.cli.common import load_spec_or_exit

    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "examples" / "sandbox.yaml").read_text().replace("region:", "regoin:", 1))
    with pytest.raises(typer.Exit) as exc:
        load_spec_or_exit(bad)
    assert exc.value.exit_code == 2
