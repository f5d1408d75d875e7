"""A forked run tells its zygote it is Running, so the zygote may start the next one (the start gate).

The ``acrvpc-process`` worker's zygote (:mod:`acrvpc.zygote`) lets only a few of its runs be
*starting* at once (forked, not yet Running: loading the flow run, the engine's clients and settings,
about 0.3 CPU s each): 50 runs due at one instant no longer start together on a few cores and then
move through the stages in lockstep (issue 15). Each forked run holds the write end of a pipe; this
module's :func:`free_start_slot`, an ``on_running`` hook of the project's flows, closes it, and the zygote lets
the next run start. A run that never gets there (it failed before Running, or a flow without the hook)
frees its place when it ends or after ``ACRVPC_WARM_START_SECONDS`` at most. Outside a forked run,
:func:`free_start_slot` does nothing. No import here: the flows import it.
"""

from __future__ import annotations

import os
from typing import Any

_fd: int | None = None


def hold(fd: int) -> None:
    """In a forked run: ``fd`` is the pipe to close once the run is Running (set by the zygote)."""
    global _fd
    _fd = fd


def free_start_slot(flow: Any = None, flow_run: Any = None, state: Any = None) -> None:
    """The run is Running: let the zygote start the next one (a flow's ``on_running`` hook; idempotent)."""
    global _fd
    fd, _fd = _fd, None
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
