"""The Alibaba Cloud SDKs' ``models`` packages, loaded class by class (issue 18).

Each SDK's ``<package>.models/__init__.py`` imports every request, response and body class of the product,
one module each: 441 for CR, 2085 for ECS, 1733 for VPC, about half of the CPU time of importing the three
SDK clients. A preflight uses some twenty of them. :func:`lazy_models` puts in place of such a package a
module that holds the same names (its ``__all__`` is the package's own) and imports each class's module the
first time the name is read, so ``models.DescribeVpcAttributeRequest``, ``from <package>.models import X``
and the SDK client's own ``main_models.X`` give exactly the class the package would have given.

It is installed only where the caller asks (the CLI commands that build clients: ``preflight``, ``plan``,
``diagnose``, ``teardown``, before they build them), only for a package whose models are not imported yet, and only when the package's ``__init__.py``
is the generated one (a ``from ._module import Name`` line per name and ``__all__``): anything else leaves the
package to load as usual.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import types
from pathlib import Path
from typing import Any

SDK_PACKAGES = ("alibabacloud_cr20181201", "alibabacloud_ecs20140526", "alibabacloud_vpc20160428")

_IMPORT = re.compile(r"^from \.(_\w+) import (\w+)$", re.M)
_ALL = re.compile(r"^__all__ = \[(.*?)^\]$", re.M | re.S)
_OTHER = ("#", "from __future__ import annotations")


def generated_exports(source: str) -> dict[str, str] | None:
    """``{name: submodule}`` from a generated models ``__init__.py``, or ``None`` when it holds anything else
    (then the package is left to load as usual)."""
    found = _ALL.search(source)
    if found is None or source[found.end() :].strip():
        return None
    head = source[: found.start()]
    pairs = _IMPORT.findall(head)
    where = {name: module for module, name in pairs}
    if not where or len(where) != len(pairs):
        return None
    if [n.strip() for n in found.group(1).split(",") if n.strip()] != list(where):
        return None
    statements = sum(1 for line in head.splitlines() if line.strip() and not line.startswith(_OTHER))
    return where if statements == len(pairs) else None


class LazyModels(types.ModuleType):
    """A models package whose names are imported on first read (see the module's docstring)."""

    _acrvpc_where: dict[str, str]

    def __getattr__(self, name: str) -> Any:  # only for names not loaded yet
        where = self.__dict__.get("_acrvpc_where", {})
        if name not in where:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{self.__name__}.{where[name]}"), name)
        setattr(self, name, value)
        return value

    def __dir__(self) -> list[str]:
        return sorted({*self.__dict__, *self._acrvpc_where})


def lazy_models(packages: tuple[str, ...] = SDK_PACKAGES) -> list[str]:
    """Install :class:`LazyModels` for each of ``packages`` whose ``models`` are not imported yet.

    Returns:
        The packages whose models are now lazy (those already imported, or not generated as expected, are not).
    """
    done = []
    for package in packages:
        name = f"{package}.models"
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)  # imports the package itself (its version only)
        if spec is None or spec.origin is None or spec.loader is None or not spec.submodule_search_locations:
            continue
        where = generated_exports(Path(spec.origin).read_text(encoding="utf-8"))
        if where is None:
            continue
        module = importlib.util.module_from_spec(spec)
        module.__class__ = LazyModels
        module.__dict__["_acrvpc_where"] = where
        module.__dict__["__all__"] = list(where)
        sys.modules[name] = module
        setattr(sys.modules[package], "models", module)  # noqa: B010 - a module, not a typed object
        done.append(package)
    return done
