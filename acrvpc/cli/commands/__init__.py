"""Subcommands of ``acrvpc`` that live in their own modules.

Every module in this package is imported by :mod:`acrvpc.cli.app` and registers its commands on
:data:`acrvpc.cli.app.app` with ``@app.command()``; add a module here to add a command.
"""

from __future__ import annotations

import importlib
import pkgutil


def load_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
