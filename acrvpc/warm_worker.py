"""A process worker whose flow runs are forked from an interpreter that has already imported everything.

Prefect's process worker starts a new Python for every flow run (a workspace supervisor that
``exec``s ``python -m prefect.engine``), and the run is Running only once that process has imported
Prefect, the flow module and its SDKs: ~4 CPU seconds per run here (docs/benchmarks.md, "trigger"
and "fleet"). This worker type, ``acrvpc-process``, is Prefect's :class:`~prefect.workers.process.ProcessWorker`
with one change, a fork server:

* **the zygote**: per base environment (the run's environment without Prefect's per-run ``PREFECT__*``
  variables; at most ``MAX_ENVIRONMENTS`` = 4), one ``python -m acrvpc.zygote SOCKET`` (:mod:`acrvpc.zygote`), the
  worker's child in a session of its own, imports ``prefect.flow_engine`` and the modules in
  ``ACRVPC_WARM_IMPORTS`` (default: the project's flows, the three SDK clients and python-gitlab,
  which the flows import lazily),
  then listens on a Unix socket in a private directory (mode 0700) and forks one child per run order.
* **the run's process**: the worker starts ``python -I -S acrvpc/_fork_stub.py SOCKET`` (standard library
  only, ~20 ms) exactly where the process worker starts the engine: Prefect's own
  :class:`EngineCommandStarter` (the run's environment, the control channel's port and token, output
  streamed, a session of its own, the group signalled on cancel). The stub sends the zygote its whole
  environment, working directory and stdin/stdout/stderr; the zygote forks; the child takes those fds,
  that environment and directory, makes itself a session leader (as the cold process is), and runs
  ``prefect.engine`` as ``__main__``, as ``python -m prefect.engine`` would. The stub forwards the
  signals it receives to the run's process group and exits with the run's status (dying of the same
  signal, if the run died of one). The zygote tells each stub its run's exit status; when a stub's
  connection closes while its run still runs (the worker SIGKILLed the stub), the zygote SIGKILLs the
  run's group: a kill never leaves an orphan.

Why forking the zygote is safe: forking a process that has threads (as the worker has, and as a
Prefect engine has once it runs) can leave locks held by threads that do not exist in the child. The
zygote has only imported modules: no event loop, no client, one thread; it checks before every
fork that it still has exactly one thread (Python's count and ``/proc/self/task``), and otherwise
refuses, logs why, and the run starts cold. ``random`` reseeds in a forked child by itself
(``os.register_at_fork``; tests/unit/test_warm_fork.py checks it), so retry jitter differs per run.

What stays as with the process worker:

* **one process per run**: a run that crashes (``os._exit``, a segfault, ``kill -9``) takes down only
  its own process; the stub exits with its status and the worker marks the run Crashed, as for a cold
  process. The zygote never runs a flow itself.
* **cancellation**: the run's process (the stub) is the worker's child with its own pid and session,
  driven by Prefect's own :class:`FlowRunExecutorContext` (cancellation observer, control channel, then
  SIGTERM, then SIGKILL), one for all the worker's runs, as Prefect's Runner keeps one (Prefect's process
  worker enters one per run: a client and an events subscription per run in flight); the control channel
  connects to the forked run directly, the SIGTERM is forwarded to it, so the UI's Cancel reaches
  ``flows.builds``' SIGTERM handler, which cancels the run's builds.
* **what a run sees**: exactly the environment variables and working directory of a cold start (the
  stub's, which Prefect computed). Modules the zygote imported read their environment at import time,
  hence one zygote per base environment: a run whose environment differs (a deployment's ``env`` job
  variable) gets its own zygote; beyond 4 environments it starts cold.
* **the run's end**: as the interpreter's exit (non-daemon threads joined, ``atexit`` functions, stdio
  flushed, the same exit status), less the teardown of the modules (``_run``); the zygote's objects
  are frozen for the collector (``gc.freeze()`` before each fork): neither the run's collector nor its
  exit copies the pages it shares with the zygote (issue 15: 1.66 -> 0.66 CPU s per run). The zygote
  logs each run's CPU when it reaps it.
* runs with a ``command`` job variable other than ``python -m prefect.engine`` start cold.
* **failures of the fork server**: a run waits up to ``ACRVPC_WARM_WAIT_SECONDS`` (60) for its zygote to
  finish importing (waiting costs less CPU than a cold start, which would import the same), else starts
  cold. A dead zygote is restarted by the next run (not twice within 10 s); a stub that finds no zygote
  (or a refusal) before its run was forked becomes ``python -m prefect.engine`` itself (``exec``: same
  pid), i.e. a cold start; a stub whose zygote died after the fork waits for its run to end and exits
  1 with a line on stderr. When the worker stops (or dies), its zygotes stop listening and exit once
  their runs have ended.

**The host's quota broker** (:mod:`acrvpc.cloud.quota_broker`): the worker starts a ``QuotaBroker`` (a
thread of its own, a unix socket in a private 0700 directory) when it starts, and sets
``ACRVPC_QUOTA_BROKER`` in its own environment before any zygote or run starts: every run of the worker
(forked or cold) takes its Alibaba Cloud turns from it (one reservation on the Prefect server per batch
of the host's waiting calls, the calls spaced locally), and reserves directly when the broker cannot be
asked. It stops (logging its counters) when the worker stops; it logs them too whenever it has been idle.

**The start gate** (:mod:`acrvpc.run_gate`): a zygote lets ``ACRVPC_WARM_START_SLOTS`` of its runs (default:
the host's CPU count) be *starting* at once, forked and not yet Running; the other orders wait, first come
first served. Each forked run holds a pipe that the project's flows close from an ``on_running`` hook; the
zygote frees the slot then, or when the run ends, or after ``ACRVPC_WARM_START_SECONDS`` (10) for a flow
without the hook. Why: 50 runs due at one instant, forked together on 2 cores, reached Running 7-21 s late
and then moved through the stages in lockstep (issue 15, docs/benchmarks.md "The production path").

``ACRVPC_WARM_POOL_SIZE``: 0 starts every run cold (Prefect's process worker); any other value (default 1)
enables the zygotes (one per environment; forking needs no pool of waiting interpreters). Start the
worker with ``prefect worker start --pool POOL --type acrvpc-process`` (registered through the
``prefect.collections`` entry point) or ``python -m acrvpc.warm_worker --pool POOL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from prefect.flows import load_flow_from_flow_run
from prefect.runner._flow_run_executor import FlowRunExecutorContext  # what ProcessWorker.run uses
from prefect.runner._process_manager import ProcessHandle
from prefect.runner._starter_engine import EngineCommandStarter
from prefect.settings import get_current_settings
from prefect.utilities.processutils import (
    command_from_string,
    command_to_string,
    get_sys_executable,
    sanitize_subprocess_env,
)
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker, ProcessWorkerResult

from acrvpc import pool_share
from acrvpc.pool_share import PoolMembers

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun
    from prefect.client.schemas.responses import WorkerFlowRunResponse

    from acrvpc.cloud.quota_broker import QuotaBroker

MAX_ENVIRONMENTS = 4
STUB = str(Path(__file__).resolve().with_name("_fork_stub.py"))

if __name__ == "__main__":
    # The worker: run the importable module's main, before this __main__ copy defines its own WarmProcessWorker:
    # Prefect registers worker types by class, and the prefect.collections entry point imports acrvpc.warm_worker,
    # whose class would replace __main__'s with a UserWarning.
    import importlib

    importlib.import_module("acrvpc.warm_worker").main()
    sys.exit(0)

QUOTA_BROKER_ENV = "ACRVPC_QUOTA_BROKER"  # acrvpc.settings.Settings.quota_broker
VERSION_CHECK_ENV = "PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED"  # off in the runs (WarmProcessWorker.setup)
CSRF_ENV = "PREFECT_CLIENT_CSRF_SUPPORT_ENABLED"  # off in the runs when the server has no CSRF protection (setup)


def _per_run(key: str) -> bool:
    """Prefect's per-run plumbing (``PREFECT__FLOW_RUN_ID``, ``PREFECT__CONTROL_PORT``...), read when the run starts."""
    return key.startswith("PREFECT__")


def _base_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not _per_run(k)}


def _env_key(env: dict[str, str]) -> str:
    return json.dumps(sorted(_base_env(env).items()))


class _TaskStatusSpy:
    """Forwards ``started(handle)`` and remembers the handle (for the worker's log line)."""

    def __init__(self, task_status: anyio.abc.TaskStatus[ProcessHandle], on_started: Any) -> None:
        self._task_status, self._on_started = task_status, on_started

    def started(self, value: Any = None) -> None:
        self._on_started(value)
        self._task_status.started(value)


class ZygotePool:
    """One zygote (fork server) per base environment, at most ``MAX_ENVIRONMENTS`` (see the module's docstring)."""

    def __init__(self, enabled: bool, wait_seconds: float = 60.0) -> None:
        self.enabled, self.wait_seconds = enabled, wait_seconds
        self._dir: str | None = None
        self._zygotes: dict[str, tuple[anyio.abc.Process, str]] = {}
        self._started: dict[str, float] = {}
        self.handed = 0  # runs forked by a zygote, for the log and the tests
        self.cold = 0

    async def ensure(self, env: dict[str, str], logger: Any = None) -> tuple[anyio.abc.Process, str] | None:
        """The zygote for ``env``'s base environment, started (or restarted, if it died) when needed."""
        if not self.enabled:
            return None
        key = _env_key(env)
        found = self._zygotes.get(key)
        if found is not None and found[0].returncode is None:
            return found
        if found is None and len(self._zygotes) >= MAX_ENVIRONMENTS:
            return None
        if found is not None:
            if time.monotonic() - self._started[key] < 10:  # it died young: do not restart it in a loop
                return None
            if logger is not None:
                logger.warning("the zygote pid %s exited with %s; starting another", found[0].pid, found[0].returncode)
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="acrvpc-zygote-")  # mode 0700: only this user may order a fork
        path = os.path.join(self._dir, f"{len(self._started)}-{int(time.monotonic() * 1000)}.sock")
        process = await anyio.open_process(
            [get_sys_executable(), "-m", "acrvpc.zygote", path],
            stdin=-1,
            stdout=None,
            stderr=None,
            env=_base_env(env),
            start_new_session=True,
        )
        self._zygotes[key], self._started[key] = (process, path), time.monotonic()
        return process, path

    async def ready(self, zygote: tuple[anyio.abc.Process, str]) -> bool:
        """Wait (up to ``wait_seconds``) until the zygote listens: waiting costs less than a cold start's imports."""
        process, path = zygote
        deadline = time.monotonic() + self.wait_seconds
        while process.returncode is None and not os.path.exists(path):
            if time.monotonic() > deadline:
                return False
            await anyio.sleep(0.05)
        return process.returncode is None

    async def close(self) -> None:
        """Close the zygotes' stdin: each stops listening and exits once its runs have ended."""
        for process, _ in self._zygotes.values():
            with contextlib.suppress(Exception):
                if process.stdin is not None:  # always a pipe (stdin=-1: a pipe); None only to the type
                    await process.stdin.aclose()
        with contextlib.suppress(Exception), anyio.move_on_after(2):
            for process, _ in self._zygotes.values():
                await process.wait()
        self._zygotes.clear()
        if self._dir is not None:  # a zygote still draining has unlinked its socket already
            shutil.rmtree(self._dir, ignore_errors=True)


class WarmStarter:
    """Prefect's process starter contract (``start(flow_run, task_status)``): start the run's process as the
    fork stub talking to the zygote of its environment, else cold with :class:`EngineCommandStarter`."""

    def __init__(
        self, pool: ZygotePool, *, cwd: Path, env: dict[str, str | None], control_channel: Any, logger: Any
    ) -> None:
        self._pool, self._cwd, self._env, self._control_channel, self._logger = pool, cwd, env, control_channel, logger

    def _run_env(self, flow_run: FlowRun) -> dict[str, str]:
        """The environment EngineCommandStarter gives the run's process (same order of precedence)."""
        env: dict[str, str | None] = {
            **os.environ,
            **self._env,
            **get_current_settings().to_environment_variables(exclude_unset=True),
        }
        env.update(
            {
                "PREFECT__FLOW_RUN_ID": str(flow_run.id),
                "PREFECT__ENABLE_CANCELLATION_AND_CRASHED_HOOKS": "false",
                "PREFECT__DEPLOYMENT_NAME": self._env.get("PREFECT__DEPLOYMENT_NAME"),
            }
        )
        return sanitize_subprocess_env(env)

    async def start(
        self, flow_run: FlowRun, task_status: anyio.abc.TaskStatus[ProcessHandle] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        zygote = await self._pool.ensure(self._run_env(flow_run), self._logger)
        command = None
        if zygote is not None and await self._pool.ready(zygote):
            command = command_to_string([get_sys_executable(), "-I", "-S", STUB, zygote[1]])
            self._pool.handed += 1

            def log(handle: ProcessHandle) -> None:
                self._logger.info(
                    "flow run %s: started warm: process pid %s, forked by zygote pid %s",
                    flow_run.id,
                    handle.pid,
                    zygote[0].pid,
                )

            task_status = _TaskStatusSpy(task_status, log)
        else:
            self._pool.cold += 1
            self._logger.info("flow run %s: no zygote ready for its environment; starting it cold", flow_run.id)
        # The stub is started as Prefect starts a run's process (environment, control channel, stdio streamed,
        # a session of its own, the group signalled on cancel); the cold run as the process worker starts it.
        await EngineCommandStarter(
            command=command,
            cwd=self._cwd,
            env=self._env,
            stream_output=True,
            control_channel=self._control_channel,
            isolate_process_group=True,
        ).start(flow_run, task_status=task_status)


async def _server_wants_csrf(client: Any) -> bool:
    """Whether the server behind ``client`` (a ``PrefectClient``) hands out CSRF tokens.

    Asks as Prefect's client asks before its first write (``GET /csrf-token``), with the same reading
    (``prefect.client.base``): a 404 (an older server) or a 422 saying the protection is disabled is
    False. Anything else, a failure included, is True: the runs then ask for themselves, as by default.
    """
    from prefect.exceptions import PrefectHTTPStatusError

    try:
        await client.request("GET", "/csrf-token", params={"client": str(uuid.uuid4())})
    except PrefectHTTPStatusError as exc:
        status, text = exc.response.status_code, exc.response.text
        return not (status == 404 or (status == 422 and "CSRF protection is disabled" in text))
    except Exception:  # noqa: BLE001 - unknown: keep Prefect's default
        return True
    return True


def _engine_command(configuration: ProcessJobConfiguration) -> bool:
    """True when the run would start as ``python -m prefect.engine`` (no ``command`` job variable, or that one)."""
    if not configuration._command_configured:
        return True
    return command_from_string(configuration.command or "")[1:] == ["-m", "prefect.engine"]


class WarmProcessWorker(ProcessWorker):
    """Prefect's process worker, with flow runs started in pre-imported interpreters (see the module docstring)."""

    type = "acrvpc-process"
    _display_name = "Process (pre-imported interpreters)"
    _description = (
        "Execute flow runs as subprocesses, each started from an interpreter that has already imported "
        "Prefect and the flows (acr-vpc-build): one process per run, without the import time."
    )

    def __init__(self, *args: Any, pool_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from acrvpc.settings import settings

        configured = settings()
        size = pool_size if pool_size is not None else configured.warm_pool_size
        self.warm_pool = ZygotePool(size > 0, configured.warm_wait_seconds)
        self.quota_broker: QuotaBroker | None = None
        self._executor_context: FlowRunExecutorContext | None = None
        self._members = PoolMembers()
        # A worker polling some queues only would leave the others' share of the rest waiting (pool_share docstring).
        self._share = configured.worker_share and not self._work_queues

    async def setup(self) -> None:
        from acrvpc.prefect_api import share_client_ssl_contexts

        share_client_ssl_contexts()  # the worker's clients too
        # One executor context for every run of the worker, as Prefect's Runner keeps its own: one client, one
        # cancellation observer (one events subscription on the server), one control channel and process
        # manager. ProcessWorker.run enters one per run: with 50 runs in flight, 50 clients and 50
        # subscriptions that the server matches every event against. Entered before the base setup, so it is
        # left after the runs' task group has ended every run (teardown leaves the exit stack in reverse).
        if self.warm_pool.enabled:  # (the cold path is ProcessWorker.run's own)
            self._executor_context = await self._exit_stack.enter_async_context(FlowRunExecutorContext())
        try:
            await super().setup()
        except BaseException:
            await self._exit_stack.aclose()
            raise
        # The host's quota broker (acrvpc/cloud/quota_broker.py): set in os.environ before any zygote or run
        # starts, so every run of this worker (forked or cold) inherits ACRVPC_QUOTA_BROKER.
        from acrvpc.cloud.quota_broker import QuotaBroker

        self.quota_broker = QuotaBroker(log=self._logger)
        os.environ[QUOTA_BROKER_ENV] = self.quota_broker.start()
        self._logger.info("quota broker listening on %s", self.quota_broker.path)
        # This worker's client checked the server's API version when it started (Prefect's client does on
        # entering); its runs report to the same server: they need not ask again (2 requests per run at its
        # start). Prefect's setting for this case; one the user set (environment or profile) is kept.
        user_set = get_current_settings().to_environment_variables(exclude_unset=True)
        if VERSION_CHECK_ENV not in user_set:
            os.environ[VERSION_CHECK_ENV] = "false"
        # Likewise CSRF: each client of a run asks for a token before its first write, to learn that the server
        # has none to give (2 requests per run). The worker asks once; Prefect's client, once told, never asks
        # again in its process, and neither do the worker's runs.
        if CSRF_ENV not in user_set and not await _server_wants_csrf(self._client):
            os.environ[CSRF_ENV] = "false"
        # The environment of a run with no env job variable: os.environ and the settings (what a cold start gets).
        await self.warm_pool.ensure(
            sanitize_subprocess_env(
                {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True)}
            )
        )

    async def teardown(self, *exc_info: Any) -> None:
        try:
            await self.warm_pool.close()
        finally:
            if self.quota_broker is not None:  # logs its counters; runs still going reserve directly from now on
                self.quota_broker.stop()
                from acrvpc.settings import settings

                if settings().quota_broker == self.quota_broker.path:
                    del os.environ[QUOTA_BROKER_ENV]
                self.quota_broker = None
            await super().teardown(*exc_info)
            self._executor_context = None

    async def _get_scheduled_flow_runs(self) -> list[WorkerFlowRunResponse]:
        """The pool's scheduled runs this worker tries: its share, and the overdue (:mod:`acrvpc.pool_share`)."""
        responses = await super()._get_scheduled_flow_runs()
        if not responses or not self._share:
            return responses
        members = await self._members.names(self.client, self._work_pool_name, self.heartbeat_interval_seconds)
        now = datetime.datetime.now(datetime.UTC)
        grace = pool_share.grace_seconds(get_current_settings().worker.query_seconds)  # the base worker's poll
        return pool_share.mine(responses, self.name, members, now, grace)

    async def run(
        self,
        flow_run: FlowRun,
        configuration: ProcessJobConfiguration,
        task_status: anyio.abc.TaskStatus[int] | None = None,
    ) -> ProcessWorkerResult:
        if not _engine_command(configuration) or not configuration.stream_output or not self.warm_pool.enabled:
            return await super().run(flow_run, configuration, task_status)
        if task_status is None:
            task_status = anyio.TASK_STATUS_IGNORED
        working_dir_ctx = (
            tempfile.TemporaryDirectory(suffix="prefect")
            if not configuration.working_dir
            else contextlib.nullcontext(configuration.working_dir)
        )
        execution = None
        shared = self._executor_context
        with working_dir_ctx as working_dir, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            async with contextlib.nullcontext(shared) if shared is not None else FlowRunExecutorContext() as ctx:
                starter = WarmStarter(
                    self.warm_pool,
                    cwd=Path(working_dir).resolve(),
                    env=configuration.env,
                    control_channel=ctx.control_channel,
                    logger=self.get_flow_run_logger(flow_run),
                )
                executor = ctx.create_executor(
                    flow_run, starter, resolve_flow=load_flow_from_flow_run, propose_submitting=False
                )

                async def execute(
                    *, task_status: anyio.abc.TaskStatus[ProcessHandle] = anyio.TASK_STATUS_IGNORED
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
    parser.add_argument(
        "--pool-size",
        type=int,
        default=None,
        help="0: every run starts cold; otherwise runs are "
        "forked by one zygote per environment (default ACRVPC_WARM_POOL_SIZE or 1)",
    )
    parser.add_argument("--limit", type=int, default=None, help="flow runs at once (default: no limit)")
    args = parser.parse_args(argv)

    stopping: dict[str, Any] = {}  # the main task, for SIGTERM

    async def serve() -> None:
        stopping["task"] = asyncio.current_task()
        # start() enters the worker's context itself (setup, then teardown however it ends): entering it here
        # too set the worker up twice (two quota brokers, one never stopped), as `prefect worker start` does not.
        worker = WarmProcessWorker(work_pool_name=args.pool, name=args.name, limit=args.limit, pool_size=args.pool_size)
        await worker.start()

    def on_sigterm(*_: Any) -> None:
        """A first SIGTERM (a container stopping, systemd, Kubernetes) cancels the worker, whose teardown stops
        its zygotes and its quota broker and says so; a second one interrupts at once. As a first Ctrl-C does
        under asyncio's runner, but without sending SIGINT: a worker started with SIGINT ignored (a background
        job of a shell without job control, some supervisors) would never stop. (Prefect's own handlers
        re-send SIGINT from a signal handler, which raised KeyboardInterrupt inside the loop and skipped the
        teardown.)"""
        task = stopping.get("task")
        if task is None or stopping.get("cancelled") or task.done():
            raise KeyboardInterrupt
        stopping["cancelled"] = True
        task.get_loop().call_soon_threadsafe(task.cancel)

    signal.signal(signal.SIGTERM, on_sigterm)
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        anyio.run(serve)
