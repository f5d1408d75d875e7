"""Subcommands of ``acrvpc`` that live in their own modules.

Every module in this package is imported by :mod:`acrvpc.cli.app` (:func:`load_all`) and registers its
commands on :data:`acrvpc.cli.common.app` with ``@app.command()``; add a module here to add a command.
The modules import what they share from :mod:`acrvpc.cli.common`, never from :mod:`acrvpc.cli.app`.
"""

from __future__ import annotations

import importlib
import pkgutil


def load_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
