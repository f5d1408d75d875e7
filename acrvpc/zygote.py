"""The acrvpc-process worker's fork server: imports once, then forks one process per run order.

``python -m acrvpc.zygote SOCKET [--imports M,M] [--run-module M]``, started by the worker
(:mod:`acrvpc.warm_worker`, whose docstring has the whole design: the stub protocol, why forking is
safe, what a run sees, failures) as its child in a session of its own, one per base environment. It
imports ``prefect.flow_engine`` and ``ACRVPC_WARM_IMPORTS`` (default :data:`DEFAULT_IMPORTS`), listens on
``SOCKET`` and, for each stub that connects (``acrvpc/_fork_stub.py``), forks a child that becomes the
run: the stub's fds, environment and directory, ``prefect.engine`` run as ``__main__`` (:func:`_run`).
It lets ``ACRVPC_WARM_START_SLOTS`` runs be starting at once (the start gate, :mod:`acrvpc.run_gate`).

Standard library only at import: what it preloads is named on its command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time

# The flows import the SDKs and python-gitlab lazily (a preflight needs few of them); a run needs them all.
DEFAULT_IMPORTS = (
    "flows.on_push,flows.vpc_build,flows.teardown,acrvpc.cloud.clients,alibabacloud_cr20181201.client,"
    "alibabacloud_ecs20140526.client,alibabacloud_vpc20160428.client,gitlab.v4.objects,"
    "anyio._backends._asyncio,"
    # what every run imported at run time (the modules a forked run added to sys.modules, issue 15): Prefect's
    # task engine, runner (the deployment's pull steps, flow loading), concurrency and visualization modules
    "prefect.task_engine,prefect.runner,prefect.deployments.steps.pull,prefect.concurrency.sync,"
    "prefect.utilities.visualization,prefect._internal.installation,tasks.diagnose,tasks.drift"
)


def _threads() -> int:
    """Threads of this process: Python's, and (on Linux) the kernel's count, which sees threads C code started."""
    import threading

    count = threading.active_count()
    with contextlib.suppress(OSError):
        count = max(count, len(os.listdir("/proc/self/task")))
    return count


class _Zygote:
    """The fork server: imports, then forks one process per run order received on a Unix socket.

    One thread, no event loop: a selector serves the listening socket, the stubs' connections, a
    self-pipe woken by SIGCHLD (``signal.set_wakeup_fd``) and stdin (the worker's pipe: EOF means the
    worker is gone or stopping; the zygote then stops listening and exits once its runs have ended).
    """

    def __init__(self, path: str, imports: list[str], start_slots: int = 0, start_seconds: float = 10.0) -> None:
        import gc
        import importlib

        self.path, self.pid = path, os.getpid()
        # the start gate (acrvpc.run_gate): runs forked and not yet Running, {pid: (pipe's read end, deadline)}
        self.start_slots, self.start_seconds = start_slots, start_seconds
        self.starting: dict[int, tuple[int, float]] = {}
        self.waiting: list[socket.socket] = []  # stubs whose order waits for a start slot
        gc.disable()  # the collector would scan the imports' objects again and again (see _fork)
        try:
            for module in imports:
                try:
                    importlib.import_module(module)
                except Exception as exc:  # noqa: BLE001 - a module that fails here fails (and says why) in the run
                    self.say(f"preloading {module} failed: {type(exc).__name__}: {exc}")
            try:  # every run's Prefect clients share one SSL context, built here once (acrvpc.prefect_api)
                if "prefect.client.orchestration" in sys.modules:  # what the zygote imported uses Prefect's clients
                    from acrvpc.prefect_api import share_client_ssl_contexts

                    share_client_ssl_contexts(warm=True)
            except Exception as exc:  # noqa: BLE001 - runs then build their own, as without the zygote
                self.say(f"sharing Prefect's SSL context failed: {type(exc).__name__}: {exc}")
        finally:
            gc.freeze()
            gc.enable()
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.sigchld = signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path + ".new")
        self.listener.listen(128)
        os.rename(path + ".new", path)  # the path appears when connections are served: the worker's "ready"
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "reap")
        self.selector.register(0, selectors.EVENT_READ, "stdin")
        self.conns: dict[socket.socket, dict] = {}  # connection -> {"buffer", "fds", "pid", "peer"}
        self.runs: dict[int, socket.socket | None] = {}  # forked pid -> its stub's connection (None: gone)
        self.draining = False

    def say(self, text: str) -> None:
        print(f"acrvpc zygote {os.getpid()}: {text}", file=sys.stderr, flush=True)

    def serve(self) -> dict | None:
        """Serve until stopped (returns None) or, in a forked child, return the child's order."""
        while not (self.draining and not self.runs and not self.waiting):
            timeout = None
            if self.starting:
                timeout = max(0.0, min(deadline for _, deadline in self.starting.values()) - time.monotonic())
            events = self.selector.select(timeout)
            now = time.monotonic()
            for pid in [pid for pid, (_, deadline) in self.starting.items() if deadline <= now]:
                self.free_slot(pid)  # it never said it is Running (a flow without the hook): its slot is freed
            for key, _ in events:
                if isinstance(key.data, tuple):  # ("started", pid): the run is Running (closed) or gone
                    self.free_slot(key.data[1])
                elif key.data == "accept":
                    with contextlib.suppress(BlockingIOError, InterruptedError):
                        conn, _ = self.listener.accept()
                        peer = struct.unpack(
                            "3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                        )[0]
                        self.conns[conn] = {"buffer": b"", "fds": [], "pid": None, "peer": peer}
                        self.selector.register(conn, selectors.EVENT_READ, "conn")
                elif key.data == "reap":
                    with contextlib.suppress(OSError):
                        while os.read(self.wake_r, 512):
                            pass
                    self.reap()
                elif key.data == "stdin":
                    if not os.read(0, 512):
                        self.stop_listening()
                else:
                    accepted = key.fileobj
                    assert isinstance(accepted, socket.socket)  # registered as "conn": an accepted connection
                    order = self.on_conn(accepted)
                    if order is not None:
                        return order
            order = self.admit()
            if order is not None:
                return order
        self.stop_listening()
        return None

    def stop_listening(self) -> None:
        if self.draining:
            return
        self.draining = True
        for fileobj in (self.listener, 0):
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(fileobj)
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def drop(self, conn: socket.socket) -> None:
        if conn in self.waiting:  # its stub went away while the run waited for a start slot
            self.waiting.remove(conn)
        state = self.conns.pop(conn)
        for fd in state["fds"]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.selector.unregister(conn)
        conn.close()
        pid = state["pid"]
        if pid is not None and pid in self.runs:  # the stub is gone (killed) while its run runs: kill the run
            self.runs[pid] = None
            self.say(f"the stub (pid {state['peer']}) of run pid {pid} is gone; killing the run")
            for kill in (os.killpg, os.kill):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(pid, signal.SIGKILL)

    def on_conn(self, conn: socket.socket) -> dict | None:
        state = self.conns[conn]
        try:
            data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        except OSError:
            data, fds = b"", []
        state["fds"] += fds
        if not data:
            self.drop(conn)
            return None
        if state["pid"] is not None:
            return None  # nothing more is expected from a stub whose run was forked
        state["buffer"] += data
        if b"\n" not in state["buffer"]:
            return None
        order = json.loads(state["buffer"].split(b"\n", 1)[0])
        threads = _threads()
        if len(state["fds"]) != 3 or threads != 1:
            reason = (
                f"{threads} threads in the zygote (forking is safe only with one)"
                if threads != 1
                else f"{len(state['fds'])} file descriptors received, 3 expected"
            )
            self.say(f"refusing the run of stub pid {state['peer']}: {reason}")
            with contextlib.suppress(OSError):
                conn.sendall((json.dumps({"refused": reason}) + "\n").encode())
            self.drop(conn)
            return None
        state["order"] = order
        self.waiting.append(conn)
        return self.admit()

    def admit(self) -> dict | None:
        """Fork the waiting orders while start slots are free (in the forked child: return its order)."""
        while self.waiting and not (self.start_slots and len(self.starting) >= self.start_slots):
            conn = self.waiting.pop(0)
            state = self.conns[conn]
            order = state.pop("order")
            read_end, write_end = os.pipe() if self.start_slots else (-1, -1)
            pid = self._fork()
            if pid == 0:
                from acrvpc import run_gate

                if write_end >= 0:
                    os.close(read_end)
                    run_gate.hold(write_end)
                self.become_run(state["fds"])
                return order
            if write_end >= 0:
                os.close(write_end)
                self.starting[pid] = (read_end, time.monotonic() + self.start_seconds)
                self.selector.register(read_end, selectors.EVENT_READ, ("started", pid))
            for fd in state["fds"]:
                os.close(fd)
            state["fds"], state["pid"] = [], pid
            self.runs[pid] = conn
            try:
                conn.sendall((json.dumps({"pid": pid}) + "\n").encode())
            except OSError:
                self.drop(conn)
        return None

    def free_slot(self, pid: int) -> None:
        """Run ``pid`` is Running, gone, or took too long: free its start slot."""
        entry = self.starting.pop(pid, None)
        if entry is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(entry[0])
            os.close(entry[0])

    @staticmethod
    def _fork() -> int:
        """``os.fork()``, the zygote's objects frozen first: the run's collector never scans them.

        Python's cyclic collector and reference counting write to every object they visit; in a forked
        child each such write copies the page it is on (copy-on-write). Unfrozen, a run's first full
        collection scans the zygote's 4,000 modules' objects (about 0.15 CPU s), and so does the
        interpreter's exit (about 0.5 CPU s per run); frozen (``gc.freeze()``: moved to a generation the
        collector ignores, as CPython's documentation advises before a fork), the exit costs about
        0.07 s. A cold process differs only in memory: cycles among the zygote's objects that a run
        makes garbage are not collected before the run ends.
        """
        import gc

        gc.freeze()
        return os.fork()

    def become_run(self, fds: list[int]) -> None:
        """In the forked child: drop the zygote's sockets and handlers, take the stub's stdio, a session of its own."""
        os.setsid()  # as Prefect's process worker starts a run's process (start_new_session)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, self.sigchld)
        for conn in self.conns:
            conn.close()
        for read_end, _ in self.starting.values():  # the other runs' start pipes are the zygote's
            os.close(read_end)
        self.selector.close()
        for fd in (self.wake_r, self.wake_w):
            os.close(fd)
        if not self.draining:
            self.listener.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)

    def reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            # what the run cost, its exit included (bench/fleet.py sums these lines)
            self.say(f"run pid {pid} exited with {code}: {usage.ru_utime + usage.ru_stime:.3f} CPU s")
            self.free_slot(pid)
            conn = self.runs.pop(pid, None)
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.sendall((json.dumps({"exit": code}) + "\n").encode())
                self.conns[conn]["pid"] = None
                self.drop(conn)


def _zygote_main(argv: list[str]) -> None:
    """``python -m acrvpc.zygote SOCKET [--imports M,M] [--run-module M]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m acrvpc.zygote")
    parser.add_argument("socket")
    parser.add_argument(
        "--imports",
        default=None,
        help="modules to import before serving (default: prefect.flow_engine and ACRVPC_WARM_IMPORTS)",
    )
    parser.add_argument("--run-module", default="prefect.engine", help="what a forked run runs as __main__")
    args = parser.parse_args(argv)
    from acrvpc.settings import settings

    configured = settings()
    if args.imports is None:
        # not prefect.engine itself: a run runs it afresh as __main__
        modules = configured.warm_imports or DEFAULT_IMPORTS
        imports = ["prefect.flow_engine"] + [m.strip() for m in modules.split(",") if m.strip()]
    else:
        imports = [m.strip() for m in args.imports.split(",") if m.strip()]
    slots = configured.warm_start_slots
    zygote = _Zygote(
        args.socket,
        imports,
        start_slots=(os.cpu_count() or 2) if slots is None else slots,
        start_seconds=configured.warm_start_seconds,
    )
    zygote.say(f"ready: {', '.join(imports) or 'nothing'} imported; {_threads()} thread(s)")
    order = zygote.serve()
    if order is None:
        return
    # The forked run: what `python -m <run-module>` started cold in that environment and directory would do.
    os.environ.clear()
    os.environ.update(order["env"])
    os.chdir(order["cwd"])
    sys.path[0] = order["cwd"]
    sys.argv = [sys.argv[0]]
    _run(args.run_module)


def _run(run_module: str) -> None:
    """Run ``run_module`` as ``__main__``, then end the process as the interpreter's exit would, less its teardown.

    The interpreter's exit waits for the non-daemon threads, runs the ``atexit`` functions (Prefect's
    services drain there, ``logging`` flushes, ``weakref.finalize`` runs), flushes stdout and stderr,
    and ends with the exit status (``sys.exit``'s, 1 after printing an uncaught exception, death by
    SIGINT after an uncaught KeyboardInterrupt). Those steps run here in that order; then
    ``os._exit``, which skips only the teardown of the modules: it drops the reference of every
    object the run inherited, which writes to (and so copies) each page shared with the zygote,
    about 0.07 CPU s per run even with the zygote's objects frozen (issue 15). Python does not
    promise ``__del__`` for objects alive at exit either.
    """
    import atexit
    import runpy
    import threading
    import traceback
    import warnings

    code, interrupted = 0, False
    try:
        with warnings.catch_warnings():  # prefect.engine is loaded already (by the flows' imports); it runs afresh
            warnings.filterwarnings("ignore", message=".*found in sys.modules", category=RuntimeWarning)
            runpy.run_module(run_module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:  # as the interpreter: the object printed, status 1
            with contextlib.suppress(Exception):
                print(exc.code, file=sys.stderr)
            code = 1
    except BaseException as exc:  # noqa: BLE001 - reported as the interpreter reports an uncaught exception
        interrupted = isinstance(exc, KeyboardInterrupt)
        try:
            sys.excepthook(type(exc), exc, exc.__traceback__)
        except Exception:  # noqa: BLE001 - a broken hook: the default report
            traceback.print_exception(exc)
        code = 1
    threading._shutdown()  # type: ignore[attr-defined]  # the interpreter's own first step of exiting
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if interrupted:  # as the interpreter: killed by SIGINT, so the parent sees the interrupt
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code & 0xFF)


if __name__ == "__main__":
    _zygote_main(sys.argv[1:])
    sys.exit(0)
