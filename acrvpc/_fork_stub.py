"""The flow-run process of the acrvpc-process worker: a stand-in for a run forked by a zygote.

Run by path as ``python -I -S _fork_stub.py SOCKET`` (standard library only, ~20 ms): the worker
starts it exactly where Prefect's process worker starts ``python -m prefect.engine`` (same
environment, working directory, stdio, its own session), so the worker's cancellation, crash
detection and output streaming apply to it unchanged. It hands its order (its whole environment,
its working directory and its stdin/stdout/stderr as file descriptors) to the zygote listening on
SOCKET (acrvpc/zygote.py), which forks the run; then it

* forwards the signals it receives (SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2) to the
  run's process group (the forked run is a session leader, as the cold run's process is);
* exits with the run's exit status: ``n`` for ``exit(n)``; for death by signal S it dies of S
  itself, so the worker sees the same negative return code;
* if it is killed (SIGKILL), the zygote sees its connection close and kills the run: no orphan.

When the zygote is unavailable (not listening, or it refuses to fork, e.g. because it is no longer
single-threaded) before the run was forked, the stub replaces itself with ``python -m prefect.engine``
(``exec``, same pid): the run starts cold. When the zygote vanishes after the fork, the stub waits
for the run's process to end and exits 1 with a line on stderr saying the exit status is unknown.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
PREFIX = "acrvpc fork stub:"

_child: int | None = None
_pending: list[int] = []


def _forward(signum: int, _frame: object) -> None:
    if _child is None:
        _pending.append(signum)
        return
    _signal_run(_child, signum)


def _signal_run(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)  # the run's session: its own subprocesses too, as for a cold run's group
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signum)  # not a group leader yet (just forked)
        except ProcessLookupError:
            pass


def _die(code: int) -> None:
    """Exit as the run did: ``exit(code)``, or by the signal ``-code``."""
    sys.stdout.flush()
    sys.stderr.flush()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [-code])
        os.kill(os.getpid(), -code)
        time.sleep(1)
        code = 128 - code
    os._exit(code)


def _cold(reason: str) -> None:
    """Become ``python -m prefect.engine`` (same pid, environment, cwd and stdio): the run starts cold."""
    for signum in FORWARDED:
        signal.signal(signum, signal.SIG_DFL)
    if _pending:  # cancelled before it started: end as the signal would have ended the run
        _die(-_pending[0])
    print(f"{PREFIX} {reason}; starting the run cold", file=sys.stderr, flush=True)
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine"])


def _wait_gone(pid: int) -> None:
    """Wait until ``pid`` (not our child) has ended."""
    try:
        fd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.5)
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)


def main(path: str) -> None:
    global _child
    for signum in FORWARDED:
        signal.signal(signum, _forward)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        _cold(f"no zygote at {path} ({exc.strerror or exc})")
    order = (json.dumps({"env": dict(os.environ), "cwd": os.getcwd()}) + "\n").encode()
    try:
        sent = socket.send_fds(sock, [order], [0, 1, 2])
        if sent < len(order):
            sock.sendall(order[sent:])
    except OSError:
        pass  # the zygote closed the connection: its answer (a refusal) or the end of the stream says why
    buffer = b""
    while True:
        while b"\n" not in buffer:
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                if _child is None:  # (both branches end the process: _cold execs, _die exits)
                    _cold(f"the zygote at {path} closed the connection before forking the run")
                else:
                    print(
                        f"{PREFIX} the zygote at {path} vanished while the run ran as pid {_child}; waiting for it "
                        f"to end; its exit status is unknown",
                        file=sys.stderr,
                        flush=True,
                    )
                    _wait_gone(_child)
                    _die(1)
            buffer += chunk
        line, buffer = buffer.split(b"\n", 1)
        message = json.loads(line)
        if "refused" in message:
            _cold(f"the zygote refused to fork: {message['refused']}")
        if "pid" in message:
            _child = int(message["pid"])
            while _pending:
                _signal_run(_child, _pending.pop(0))
        if "exit" in message:
            _die(int(message["exit"]))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(f"usage: python -I -S {sys.argv[0]} SOCKET", file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1])
