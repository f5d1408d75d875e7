"""A process worker whose flow runs start in an interpreter that has already imported everything.

Prefect's process worker starts a new Python for every flow run (two, in Prefect 3.9: a workspace
supervisor, then ``python -m prefect.engine``), and the run is Running only once that process has
imported Prefect, the flow module and its SDKs: 4 CPU seconds per run here (docs/benchmarks.md,
"trigger"). This worker type, ``acrvpc-process``, is Prefect's :class:`~prefect.workers.process.ProcessWorker`
with one change: it keeps ``ACRVPC_WARM_POOL_SIZE`` (default 2) interpreters started ahead, each of
which has imported ``prefect.flow_engine`` and the modules in ``ACRVPC_WARM_IMPORTS`` (default: the
project's flows, hence Prefect, acrvpc and the three SDKs) and then waits on its stdin. A flow run is
handed to one of them as its per-run environment (Prefect's ``PREFECT__*`` variables: the flow run id,
the control channel's port and token...) and working directory; the interpreter then runs
``prefect.engine`` as ``__main__``, exactly as ``python -m prefect.engine`` would, and exits. The used
interpreter is replaced at once.

What stays as with the process worker:

* **one process per run**: a run that crashes (``os._exit``, a segfault, ``kill -9``) takes down only
  its own process; the worker sees its exit code and marks it Crashed, as for a cold process.
* **cancellation**: the run's process is the worker's child with its own pid, driven by Prefect's own
  :class:`FlowRunExecutorContext` (cancellation observer, control channel, SIGTERM then SIGKILL), so
  the UI's Cancel reaches ``flows.builds``' SIGTERM handler, which cancels the run's builds.
* **what a run sees**: the same environment variables as the cold start would give it. A run whose
  environment differs from the pool's (a deployment's ``env`` job variable, another working setup)
  starts cold, as Prefect's process worker starts it, and the pool then warms an interpreter for
  that environment too (at most ``ACRVPC_WARM_POOL_SIZE`` per environment, 4 environments).
* runs with a ``command`` job variable other than ``python -m prefect.engine`` start cold.

No fork: each pooled interpreter is a fresh ``python -m acrvpc.warm_worker child`` (forking a
process with threads, as Prefect's is, is unsafe). Start it with
``prefect worker start --pool POOL --type acrvpc-process`` (registered through the
``prefect.collections`` entry point) or ``python -m acrvpc.warm_worker --pool POOL``.
"""

from __future__ import annotations

import json
import os
import sys

CHILD_ARG = "child"
DEFAULT_IMPORTS = "flows.on_push,flows.vpc_build,flows.teardown"
MAX_ENVIRONMENTS = 4


def _child_main() -> None:
    """A pooled interpreter: import everything, wait for one run on stdin, run it as ``python -m prefect.engine``."""
    import importlib
    import runpy

    imports = ["prefect.flow_engine"]  # not prefect.engine itself: run_module runs it afresh as __main__
    imports += [m.strip() for m in os.environ.get("ACRVPC_WARM_IMPORTS", DEFAULT_IMPORTS).split(",") if m.strip()]
    for module in imports:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - a module that fails here fails (and says why) in the run itself
            print(f"acrvpc warm worker: preloading {module} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    line = sys.stdin.readline()
    if not line.strip():  # the worker closed the pipe without a run: it is stopping
        return
    order = json.loads(line)
    os.environ.update(order["env"])
    os.chdir(order["cwd"])
    sys.path[0] = order["cwd"]  # as `python -m` in that directory would have it
    sys.argv = [sys.argv[0]]
    import warnings

    with warnings.catch_warnings():  # prefect.engine is loaded already (by the flows' imports); it runs afresh
        warnings.filterwarnings("ignore", message=".*'prefect.engine' found in sys.modules", category=RuntimeWarning)
        runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)


if __name__ == "__main__" and sys.argv[1:2] == [CHILD_ARG]:
    _child_main()
    sys.exit(0)

# ---------------------------------------------------------------------------------------------------------------
# The worker side (everything below imports Prefect).

import contextlib  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Any, Optional  # noqa: E402

import anyio  # noqa: E402
import anyio.abc  # noqa: E402
from prefect.flows import load_flow_from_flow_run  # noqa: E402
from prefect.runner._flow_run_executor import FlowRunExecutorContext  # noqa: E402 - what ProcessWorker.run uses
from prefect.runner._process_manager import ProcessHandle  # noqa: E402
from prefect.runner._starter_engine import EngineCommandStarter  # noqa: E402
from prefect.settings import get_current_settings  # noqa: E402
from prefect.utilities.processutils import command_from_string, get_sys_executable, sanitize_subprocess_env  # noqa: E402
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker, ProcessWorkerResult  # noqa: E402

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun


def _per_run(key: str) -> bool:
    """Prefect's per-run plumbing (``PREFECT__FLOW_RUN_ID``, ``PREFECT__CONTROL_PORT``...), read when the run starts."""
    return key.startswith("PREFECT__")


def _base_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not _per_run(k)}


def _env_key(env: dict[str, str]) -> str:
    return json.dumps(sorted(_base_env(env).items()))


class WarmPool:
    """Interpreters started ahead, per base environment (see the module's docstring)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._idle: dict[str, list[anyio.abc.Process]] = {}
        self._envs: dict[str, dict[str, str]] = {}
        self.handed = 0  # runs started warm, for the log and the tests
        self.cold = 0

    async def fill(self, env: dict[str, str]) -> None:
        """Start interpreters for ``env`` until ``size`` are waiting."""
        if self.size <= 0:
            return
        key = _env_key(env)
        if key not in self._envs and len(self._envs) >= MAX_ENVIRONMENTS:
            return
        self._envs[key] = _base_env(env)
        idle = [p for p in self._idle.get(key, []) if p.returncode is None]
        while len(idle) < self.size:
            idle.append(await anyio.open_process([get_sys_executable(), "-m", "acrvpc.warm_worker", CHILD_ARG],
                                                 stdin=-1, stdout=None, stderr=None, env=self._envs[key]))
        self._idle[key] = idle

    def take(self, env: dict[str, str]) -> anyio.abc.Process | None:
        """A waiting interpreter started with exactly ``env``'s base environment, or None."""
        idle = self._idle.get(_env_key(env), [])
        while idle:
            process = idle.pop(0)
            if process.returncode is None:
                return process
        return None

    async def close(self) -> None:
        for idle in self._idle.values():
            for process in idle:
                with contextlib.suppress(Exception):
                    await process.stdin.aclose()  # the child sees EOF and exits
                with contextlib.suppress(Exception):
                    with anyio.fail_after(5):
                        await process.wait()
                if process.returncode is None:
                    process.kill()
        self._idle.clear()


class WarmStarter:
    """Prefect's process starter contract (``start(flow_run, task_status)``): hand the run to a pooled
    interpreter when one matches its environment, else start it cold with :class:`EngineCommandStarter`."""

    def __init__(self, pool: WarmPool, *, cwd: Path, env: dict[str, str | None], control_channel: Any,
                 logger: Any) -> None:
        self._pool, self._cwd, self._env, self._control_channel, self._logger = pool, cwd, env, control_channel, logger

    def _run_env(self, flow_run: "FlowRun", control_env: dict[str, str]) -> dict[str, str]:
        """The environment EngineCommandStarter would give the run's process (same order of precedence)."""
        env: dict[str, str | None] = {**os.environ, **self._env,
                                      **get_current_settings().to_environment_variables(exclude_unset=True)}
        env.update({"PREFECT__FLOW_RUN_ID": str(flow_run.id), "PREFECT__ENABLE_CANCELLATION_AND_CRASHED_HOOKS": "false",
                    **control_env, "PREFECT__DEPLOYMENT_NAME": self._env.get("PREFECT__DEPLOYMENT_NAME")})
        return sanitize_subprocess_env(env)

    async def start(self, flow_run: "FlowRun",
                    task_status: anyio.abc.TaskStatus[ProcessHandle] = anyio.TASK_STATUS_IGNORED) -> None:
        env = self._run_env(flow_run, {})
        process = self._pool.take(env)
        if process is None:
            self._pool.cold += 1
            self._logger.info("flow run %s: no warm interpreter for its environment; starting it cold", flow_run.id)
            try:
                await EngineCommandStarter(command=None, cwd=self._cwd, env=self._env, stream_output=True,
                                           control_channel=self._control_channel).start(flow_run, task_status=task_status)
            finally:
                await self._pool.fill(env)
            return
        await self._pool.fill(env)  # replace it now: a run arriving meanwhile gets an interpreter already starting
        control_env: dict[str, str] = {}
        registered = False
        if self._control_channel is not None:
            try:
                port, token = self._control_channel.register(flow_run.id)
                control_env = {"PREFECT__CONTROL_PORT": str(port), "PREFECT__CONTROL_TOKEN": token}
                registered = True
            except RuntimeError:  # the channel is disabled: kill-only cancellation, as EngineCommandStarter does
                pass
        run_env = self._run_env(flow_run, control_env)
        order = {"env": {k: v for k, v in run_env.items() if _per_run(k)}, "cwd": str(self._cwd)}
        try:
            await process.stdin.send((json.dumps(order) + "\n").encode())
            await process.stdin.aclose()
        except BaseException:
            if registered:
                self._control_channel.unregister(flow_run.id)
            process.kill()
            raise
        self._pool.handed += 1
        self._logger.info("flow run %s: started in warm interpreter pid %s", flow_run.id, process.pid)
        task_status.started(ProcessHandle(process))
        try:
            await process.wait()
        finally:
            if process.returncode is None:  # the worker is being cancelled: do not leave the run orphaned
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()


def _engine_command(configuration: ProcessJobConfiguration) -> bool:
    """True when the run would start as ``python -m prefect.engine`` (no ``command`` job variable, or that one)."""
    if not configuration._command_configured:
        return True
    return command_from_string(configuration.command or "")[1:] == ["-m", "prefect.engine"]


class WarmProcessWorker(ProcessWorker):
    """Prefect's process worker, with flow runs started in pre-imported interpreters (see the module docstring)."""

    type = "acrvpc-process"
    _display_name = "Process (pre-imported interpreters)"
    _description = ("Execute flow runs as subprocesses, each started from an interpreter that has already imported "
                    "Prefect and the flows (acr-vpc-build): one process per run, without the import time.")

    def __init__(self, *args: Any, pool_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        size = pool_size if pool_size is not None else int(os.environ.get("ACRVPC_WARM_POOL_SIZE", "2"))
        self.warm_pool = WarmPool(size)

    async def setup(self) -> None:
        await super().setup()
        # The environment of a run with no env job variable: os.environ and the settings (what a cold start gets).
        await self.warm_pool.fill(sanitize_subprocess_env(
            {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True)}))

    async def teardown(self, *exc_info: Any) -> None:
        await self.warm_pool.close()
        await super().teardown(*exc_info)

    async def run(self, flow_run: "FlowRun", configuration: ProcessJobConfiguration,
                  task_status: Optional[anyio.abc.TaskStatus[int]] = None) -> ProcessWorkerResult:
        if not _engine_command(configuration) or not configuration.stream_output or self.warm_pool.size <= 0:
            return await super().run(flow_run, configuration, task_status)
        if task_status is None:
            task_status = anyio.TASK_STATUS_IGNORED
        working_dir_ctx = (tempfile.TemporaryDirectory(suffix="prefect") if not configuration.working_dir
                           else contextlib.nullcontext(configuration.working_dir))
        execution = None
        with working_dir_ctx as working_dir, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            async with FlowRunExecutorContext() as ctx:
                starter = WarmStarter(self.warm_pool, cwd=Path(working_dir).resolve(), env=configuration.env,
                                      control_channel=ctx.control_channel, logger=self.get_flow_run_logger(flow_run))
                executor = ctx.create_executor(flow_run, starter, resolve_flow=load_flow_from_flow_run,
                                               propose_submitting=False)

                async def execute(*, task_status: anyio.abc.TaskStatus[ProcessHandle] = anyio.TASK_STATUS_IGNORED
                                  ) -> None:
                    nonlocal execution
                    execution = await executor.submit(task_status=task_status)

                async with anyio.create_task_group() as task_group:
                    handle = await task_group.start(execute)
                    if handle.pid is None:
                        raise RuntimeError("Flow run process has no PID")
                    task_status.started(handle.pid)
        if execution is None or execution.status_code is None:
            raise RuntimeError("Failed to start flow run process.")
        return ProcessWorkerResult(status_code=execution.status_code, identifier=str(execution.handle.pid))


def main(argv: list[str] | None = None) -> None:
    """``python -m acrvpc.warm_worker --pool POOL [--pool-size N] [--limit N]``: the worker without the entry point."""
    import argparse

    parser = argparse.ArgumentParser(description="Run an acrvpc-process worker (pre-imported flow run interpreters).")
    parser.add_argument("--pool", required=True, help="work pool to poll")
    parser.add_argument("--name", default=None, help="worker name (default: Prefect's)")
    parser.add_argument("--pool-size", type=int, default=None, help="interpreters kept ready per environment "
                                                                    "(default ACRVPC_WARM_POOL_SIZE or 2; 0: all cold)")
    parser.add_argument("--limit", type=int, default=None, help="flow runs at once (default: no limit)")
    args = parser.parse_args(argv)

    async def serve() -> None:
        async with WarmProcessWorker(work_pool_name=args.pool, name=args.name, limit=args.limit,
                                     pool_size=args.pool_size) as worker:
            await worker.start()

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve)


if __name__ == "__main__":
    main()
