"""Prefect's ``@task``, ``get_run_logger`` and ``create_table_artifact`` without importing Prefect at import time.

``import prefect`` costs 1.5 s of CPU (more than the three Alibaba Cloud SDKs together). The stage
modules under ``tasks/`` hold plain functions that ``acrvpc preflight`` and ``acrvpc plan`` call
without any Prefect machinery, plus a thin ``@task`` over them for the flows. With::

    from acrvpc.lazy_prefect import task

the decorator returns a :class:`LazyTask`: the real :class:`prefect.Task` is built (same function,
same options) the first time the task is called or any of its attributes is read (``.submit``,
``.with_options``, ``.fn``, ``.name``...), so a CLI command that only uses the plain functions never
loads Prefect, and a flow that calls the task gets exactly the Prefect task it always had.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

_lock = threading.Lock()


class LazyTask:
    """A Prefect task built on first use (see the module's docstring)."""

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        object.__setattr__(self, "_fn", fn)
        object.__setattr__(self, "_options", options)
        object.__setattr__(self, "_task", None)
        functools.update_wrapper(self, fn)

    def prefect_task(self) -> Any:
        """The real :class:`prefect.Task` (built once, under a lock: two threads get the same one)."""
        built = self._task
        if built is None:
            with _lock:
                built = self._task
                if built is None:
                    from prefect import task as prefect_task

                    built = prefect_task(**self._options)(self._fn)
                    object.__setattr__(self, "_task", built)
        return built

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.prefect_task()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # only for names not set on the proxy itself
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return getattr(self.prefect_task(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("__") and name.endswith("__"):  # update_wrapper's __name__, __doc__, __wrapped__...
            object.__setattr__(self, name, value)
        else:  # a test's monkeypatch of .retries and the like: on the Prefect task
            setattr(self.prefect_task(), name, value)

    def __repr__(self) -> str:
        return f"LazyTask({self._fn.__module__}.{self._fn.__qualname__}, built={self._task is not None})"


def task(__fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """``@task`` or ``@task(name=..., retries=...)``, as :func:`prefect.task` takes them."""
    if __fn is not None:
        return LazyTask(__fn, options)
    return lambda fn: LazyTask(fn, options)


def get_run_logger(*args: Any, **kwargs: Any) -> Any:
    """:func:`prefect.get_run_logger`, imported when called (inside a run Prefect is loaded anyway)."""
    from prefect import get_run_logger as prefect_get_run_logger

    return prefect_get_run_logger(*args, **kwargs)


def create_table_artifact(*args: Any, **kwargs: Any) -> Any:
    """:func:`prefect.artifacts.create_table_artifact`, imported when called."""
    from prefect.artifacts import create_table_artifact as prefect_create_table_artifact

    return prefect_create_table_artifact(*args, **kwargs)


def api_url_surely_unset() -> bool:
    """True when no Prefect setting source can name an API URL, found without importing Prefect.

    ``prefect.settings`` loads all of Prefect (1.5 s of CPU); a preflight without a Prefect API
    (the usual case on a laptop) should not pay it just to learn that there is none. Prefect's
    sources are the environment, the profiles file, ``.env``, ``prefect.toml`` and
    ``pyproject.toml``'s ``[tool.prefect]`` in the working directory. False whenever any of them
    might hold one (or Prefect is loaded already, when a ``temporary_settings`` may be in force):
    the caller then asks Prefect. A false "unsure" costs time, never a wrong answer.
    """
    import os
    import sys
    from pathlib import Path

    if "prefect" in sys.modules or os.environ.get("PREFECT_API_URL"):
        return False
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    profiles = [Path(p).expanduser() for p in (os.environ.get("PREFECT_PROFILES_PATH"),) if p]
    profiles += [home / "profiles.toml", Path.home() / ".prefect" / "profiles.toml"]
    checks = [(p, "API_URL") for p in profiles] + [
        (Path(".env"), "PREFECT_"),
        (Path("prefect.toml"), ""),
        (Path("pyproject.toml"), "tool.prefect"),
    ]
    for path, marker in checks:
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            continue
        except OSError:
            return False
        if marker.lower() in text.lower():
            return False
    return True
