"""Every direct import is declared in pyproject.toml (issue 19): the product's in ``dependencies`` (or the
optional extra it belongs to), the tests' in ``dependencies`` or the ``test`` extra. The import's
distribution is what ``importlib.metadata.packages_distributions()`` says provides it."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_DIRS = ("acrvpc", "flows", "tasks", "deployments")
LOCAL = {"acrvpc", "flows", "tasks", "deployments", "tests", "bench"}
# Product imports that belong to an optional extra (imported only when that feature is used).
OPTIONAL = {"prefect_aws": "s3"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str]) -> set[str]:
    return {canonical(re.match(r"[A-Za-z0-9._-]+", req.strip()).group(0)) for req in requirements}


def top_level_imports(folders: tuple[str, ...]) -> dict[str, str]:
    """Each imported top-level module outside the standard library and this project, with one file importing it."""
    found: dict[str, str] = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in LOCAL and top != "__future__":
                        found.setdefault(top, path.relative_to(ROOT).as_posix())
    return found


def undeclared(imports: dict[str, str], declared: set[str]) -> list[str]:
    providers = importlib.metadata.packages_distributions()
    problems = []
    for module, where in sorted(imports.items()):
        dists = {canonical(d) for d in providers.get(module, [])}
        if not dists:
            problems.append(
                f"{module} (imported by {where}) is not installed: declare its distribution in pyproject.toml"
            )
        elif not dists & declared:
            problems.append(f"{module} (imported by {where}): add {' or '.join(sorted(dists))} to pyproject.toml")
    return problems


PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUNTIME = requirement_names(PROJECT["dependencies"])
EXTRAS = {name: requirement_names(reqs) for name, reqs in PROJECT["optional-dependencies"].items()}


def test_product_imports_are_runtime_dependencies():
    imports = top_level_imports(PRODUCT_DIRS)
    required = {m: w for m, w in imports.items() if m not in OPTIONAL}
    assert not undeclared(required, RUNTIME), undeclared(required, RUNTIME)
    for module, extra in OPTIONAL.items():
        if module in imports:
            assert not undeclared({module: imports[module]}, EXTRAS[extra])


def test_test_imports_are_declared_for_the_tests():
    problems = undeclared(top_level_imports(("tests",)), RUNTIME | EXTRAS["test"] | EXTRAS["s3"])
    assert not problems, problems


def test_the_check_catches_an_undeclared_import():
    assert undeclared({"yaml": "x.py"}, {"prefect"}) == ["yaml (imported by x.py): add pyyaml to pyproject.toml"]
    assert undeclared({"yaml": "x.py"}, {"pyyaml"}) == []
