"""The zygote / fork-stub protocol of the acrvpc-process worker (acrvpc/zygote.py, acrvpc/_fork_stub.py).

Real processes: a zygote that imports a tiny module (not Prefect) and runs ``probe_run`` as
``__main__`` in each forked child, and stubs started as the worker starts them
(``python -I -S _fork_stub.py SOCKET``, in a session of their own).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from acrvpc import warm_worker
from tests.conftest import ROOT

PRELOADED = """
import random, time
LOADED_AT = time.time()
"""
RUN = """
import gc, json, os, random, sys, time
import probe_preloaded  # imported by the zygote already: not imported again
mode = os.environ["PROBE_MODE"]
print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "sid": os.getsid(0), "random": random.random(),
                  "cwd": os.getcwd(), "mode": mode, "preloaded_at": probe_preloaded.LOADED_AT,
                  "frozen": gc.get_freeze_count(), "gc_enabled": gc.isenabled()}), flush=True)
if mode == "exit3":
    sys.exit(3)
if mode == "exit-message":
    sys.exit("stopped: a message")
if mode == "atexit":
    import atexit, threading
    atexit.register(lambda: print("atexit ran"))
    threading.Thread(target=lambda: (time.sleep(0.3), print("thread ended"))).start()  # not a daemon: waited for
    sys.stdout.write("unflushed")
if mode == "raise":
    raise RuntimeError("boom")
if mode == "interrupt":
    raise KeyboardInterrupt
if mode == "sleep":
    time.sleep(60)
if mode == "running-then-sleep":  # what the project's flows do from their on_running hook
    from acrvpc import run_gate
    run_gate.free_start_slot()
    time.sleep(60)
"""
THREADED = """
import threading, time
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
"""


def wait_for(predicate, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def probe_dir(tmp_path: Path) -> Path:
    (tmp_path / "probe_preloaded.py").write_text(PRELOADED)
    (tmp_path / "probe_run.py").write_text(RUN)
    (tmp_path / "probe_threaded.py").write_text(THREADED)
    return tmp_path


def start_zygote(
    probe_dir: Path, imports: str = "probe_preloaded", extra_env: dict[str, str] | None = None, **popen: Any
) -> tuple[subprocess.Popen, str]:
    path = str(probe_dir / "z.sock")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{probe_dir}", **(extra_env or {})}
    zygote = subprocess.Popen(
        [sys.executable, "-m", "acrvpc.zygote", path, "--imports", imports, "--run-module", "probe_run"],
        stdin=subprocess.PIPE,
        env=env,
        cwd=ROOT,
        start_new_session=True,
        **popen,
    )
    wait_for(lambda: os.path.exists(path) or zygote.poll() is not None, what="the zygote to listen")
    assert zygote.poll() is None
    return zygote, path


def stop_zygote(process: subprocess.Popen) -> None:
    """End of input: the zygote stops listening and exits once its runs have ended (killed after 10 s)."""
    process.stdin.close()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def zygote(probe_dir: Path):
    process, path = start_zygote(probe_dir)
    yield process, path
    stop_zygote(process)


def stub(path: str, cwd: Path, mode: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-I", "-S", warm_worker.STUB, path],
        cwd=cwd,
        env={**os.environ, "PROBE_MODE": mode},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def first_line(process: subprocess.Popen) -> dict:
    return json.loads(process.stdout.readline())


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_run_is_forked_with_the_stubs_stdio_environment_and_exit_code(zygote, probe_dir):
    process, path = zygote
    run = stub(path, probe_dir, "exit3")
    seen = first_line(run)  # the forked run wrote into the stub's stdout pipe
    assert run.wait(10) == 3
    assert seen["mode"] == "exit3" and seen["cwd"] == str(probe_dir)
    assert seen["ppid"] == process.pid and seen["pid"] not in (run.pid, process.pid)
    assert seen["sid"] == seen["pid"]  # a session of its own, as Prefect starts a run's process


def test_forked_runs_share_the_zygotes_imports_but_not_its_random_state(zygote, probe_dir):
    _, path = zygote
    seen = []
    for _ in range(2):
        run = stub(path, probe_dir, "ok")
        seen.append(first_line(run))
        assert run.wait(10) == 0
    assert seen[0]["preloaded_at"] == seen[1]["preloaded_at"]  # imported once, by the zygote
    assert (
        seen[0]["random"] != seen[1]["random"]
    )  # random reseeds in a forked child (os.register_at_fork): jitter differs


def test_a_run_finds_the_zygotes_objects_frozen_and_the_zygote_logs_its_cpu(probe_dir):
    # frozen: neither the run's collector nor its exit scans (and so copies) the pages it shares with the zygote
    process, path = start_zygote(probe_dir, stderr=subprocess.PIPE, text=True)
    run = stub(path, probe_dir, "ok")
    seen = first_line(run)
    assert run.wait(10) == 0
    assert seen["frozen"] > 1000 and seen["gc_enabled"]
    process.stdin.close()  # the zygote stops listening and exits once its runs have ended
    assert process.wait(10) == 0
    err = process.stderr.read()
    assert re.search(rf"run pid {seen['pid']} exited with 0: \d+\.\d+ CPU s", err), err


@pytest.mark.parametrize(
    ("mode", "status", "out", "err"),
    [
        ("atexit", 0, ["thread ended", "unflushed", "atexit ran"], []),
        ("raise", 1, [], ["Traceback", "RuntimeError: boom"]),
        ("exit-message", 1, [], ["stopped: a message"]),
        ("interrupt", -signal.SIGINT, [], ["KeyboardInterrupt"]),
    ],
)
def test_a_run_ends_as_the_interpreter_would(zygote, probe_dir, mode, status, out, err):
    # the forked run skips only the interpreter's module teardown: threads, atexit, flushes and status as a cold one
    _, path = zygote
    run = stub(path, probe_dir, mode)
    stdout, stderr = run.communicate(timeout=20)
    assert run.returncode == status, stderr
    assert all(text in stdout for text in out), stdout
    assert stdout.index("thread ended") < stdout.index("atexit ran") if out else True
    assert all(text in stderr for text in err), stderr


def test_sigterm_to_the_stub_ends_the_run_by_sigterm(zygote, probe_dir):
    _, path = zygote
    run = stub(path, probe_dir, "sleep")
    pid = first_line(run)["pid"]
    os.killpg(run.pid, signal.SIGTERM)  # what Prefect's cancellation does to the run's process group
    assert run.wait(10) == -signal.SIGTERM
    wait_for(lambda: gone(pid), what="the forked run to end")


def test_a_killed_stub_leaves_no_orphan(zygote, probe_dir):
    _, path = zygote
    run = stub(path, probe_dir, "sleep")
    pid = first_line(run)["pid"]
    os.killpg(run.pid, signal.SIGKILL)  # the worker's escalation after SIGTERM
    assert run.wait(10) == -signal.SIGKILL
    wait_for(lambda: gone(pid), what="the zygote to kill the run whose stub died")


def test_a_zygote_that_vanishes_after_the_fork_makes_the_stub_fail_clearly(probe_dir):
    process, path = start_zygote(probe_dir)
    run = stub(path, probe_dir, "sleep")
    pid = first_line(run)["pid"]
    process.kill()
    process.wait()
    os.kill(pid, signal.SIGKILL)
    assert run.wait(10) == 1
    assert "vanished while the run ran" in run.stderr.read()


def test_a_zygote_with_threads_refuses_to_fork_and_the_run_starts_cold(probe_dir):
    process, path = start_zygote(probe_dir, imports="probe_preloaded,probe_threaded")
    try:
        run = stub(path, probe_dir, "ok")
        _, err = run.communicate(timeout=60)  # the cold `python -m prefect.engine` then fails: no flow run id
        assert "the zygote refused to fork: 2 threads in the zygote" in err
        assert "starting the run cold" in err
        assert run.returncode != 0
    finally:
        process.kill()
        process.wait()


def test_no_zygote_means_a_cold_start(probe_dir):
    run = stub(str(probe_dir / "absent.sock"), probe_dir, "ok")
    _, err = run.communicate(timeout=60)
    assert "no zygote at" in err and "starting the run cold" in err


@pytest.fixture
def gated(probe_dir: Path, request):
    """A zygote that lets one run be starting at a time (``ACRVPC_WARM_START_SLOTS=1``)."""
    seconds = getattr(request, "param", "60")
    process, path = start_zygote(
        probe_dir, extra_env={"ACRVPC_WARM_START_SLOTS": "1", "ACRVPC_WARM_START_SECONDS": seconds}
    )
    yield process, path
    stop_zygote(process)


def test_the_start_gate_forks_the_next_run_once_the_first_is_running(gated, probe_dir):
    _, path = gated
    first = stub(path, probe_dir, "running-then-sleep")
    seen = first_line(first)  # forked, and it has said it is Running (acrvpc.run_gate.free_start_slot)
    second = stub(path, probe_dir, "exit3")
    assert second.wait(20) == 3  # forked although the first run still runs
    assert not gone(seen["pid"])
    first.send_signal(signal.SIGTERM)
    first.wait(10)


def test_a_run_that_never_says_it_is_running_holds_its_slot_until_it_ends(gated, probe_dir):
    _, path = gated
    first = stub(path, probe_dir, "sleep")  # a flow without the hook
    seen = first_line(first)
    second = stub(path, probe_dir, "exit3")
    time.sleep(1.5)
    assert second.poll() is None and not second.stdout.closed  # waiting: not forked while the first is starting
    first.send_signal(signal.SIGTERM)  # the first run ends: its slot is free
    first.wait(10)
    assert second.wait(20) == 3 and first_line(second)["mode"] == "exit3"
    assert gone(seen["pid"])


@pytest.mark.parametrize("gated", ["1"], indirect=True)
def test_a_starting_run_keeps_its_slot_at_most_the_start_seconds(gated, probe_dir):
    _, path = gated
    first = stub(path, probe_dir, "sleep")  # never says it is Running; ACRVPC_WARM_START_SECONDS=1
    seen = first_line(first)
    second = stub(path, probe_dir, "exit3")
    assert second.wait(20) == 3  # forked after the first run's second, while it still runs
    assert not gone(seen["pid"])
    first.send_signal(signal.SIGTERM)
    first.wait(10)


def test_a_stub_that_leaves_while_its_run_waits_is_never_forked(probe_dir):
    process, path = start_zygote(
        probe_dir, extra_env={"ACRVPC_WARM_START_SLOTS": "1"}, stderr=subprocess.PIPE, text=True
    )
    first = stub(path, probe_dir, "sleep")
    first_line(first)
    waiting = stub(path, probe_dir, "exit3")
    time.sleep(1.0)  # its order reached the zygote and waits for the slot
    os.killpg(waiting.pid, signal.SIGKILL)
    waiting.wait(10)
    first.send_signal(signal.SIGTERM)
    first.wait(10)
    third = stub(path, probe_dir, "exit3")  # the zygote still serves
    assert third.wait(20) == 3
    process.stdin.close()
    assert process.wait(20) == 0
    err = process.stderr.read()
    assert len(re.findall(r"run pid \d+ exited", err)) == 2, err  # the first and the third: none for the one that left
