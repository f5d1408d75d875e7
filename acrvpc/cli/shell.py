"""How to print a command so that it runs as printed in the user's shell.

``make demo`` installs the project into ``.venv`` without activating it: ``prefect`` and ``acrvpc``
are then in ``.venv/bin`` but not on ``PATH``, and a hint that says ``prefect flow-run ls`` fails
with "command not found". :func:`command` gives the bare name only when ``PATH`` finds this
interpreter's own script, and otherwise the script's path (relative to the working directory when it
is under it, e.g. ``.venv/bin/prefect``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


def command(name: str) -> str:
    """How to call console script ``name`` of this interpreter's environment from the current shell.

    Args:
        name: a console script installed next to ``sys.executable``, e.g. ``prefect`` or ``acrvpc``.

    Returns:
        ``name`` when ``PATH`` resolves it to this environment's script (an activated virtualenv, or
        a global install); else the script's path, relative to the working directory when it is under
        it (``.venv/bin/prefect``), absolute otherwise; ``<python> -m <name>`` when there is no script.
    """
    bindir = Path(sys.executable).parent  # not resolved: a virtualenv's python is a symlink out of it
    script = bindir / name
    if not script.is_file():
        return f"{_shown(Path(sys.executable))} -m {name}"
    found = shutil.which(name)
    if found and _same(Path(found), script):
        return name
    return _shown(script)


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _shown(path: Path) -> str:
    """``path`` as typed: relative (with a directory part, so the shell does not search PATH) or absolute."""
    try:
        rel = path.absolute().relative_to(Path.cwd())
        text = str(rel) if rel.parent != Path(".") else f"./{rel}"
    except ValueError:
        text = str(path.absolute())
    return shlex.quote(text)
