"""The namespace harness (tests/e2e/netns.py): hosts reach each other and nothing else, links cut and
restored, processes killed, and every namespace, veth and bridge removed, also when the test fails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import ROOT
from tests.e2e import netns

pytestmark = [
    pytest.mark.multihost,
    pytest.mark.skipif(netns.unavailable_reason() is not None, reason=str(netns.unavailable_reason())),
]

ENV = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
SERVE = (
    "import http.server, sys; http.server.ThreadingHTTPServer((sys.argv[1], 8000), "
    "http.server.SimpleHTTPRequestHandler).serve_forever()"
)
FETCH = (
    "import sys, urllib.request\ntry:\n    urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2]))\n"
    "    print('ok')\nexcept OSError as e:\n    print('error', e)"
)


def fetch(host: netns.Host, url: str, timeout: float = 2) -> str:
    return host.run([sys.executable, "-c", FETCH, url, str(timeout)], env=ENV, timeout=30).stdout.strip()


def serve(host: netns.Host, log) -> None:
    host.spawn([sys.executable, "-c", SERVE, host.address], env=ENV, log=log, cwd="/")
    deadline = time.monotonic() + 20
    while fetch(host, f"http://{host.address}:8000/", timeout=1) != "ok":
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def leftovers(topo: netns.Topology) -> list[str]:
    names = {h.ns for h in topo.hosts.values()} | {h.veth for h in topo.hosts.values()} | {topo.bridge}
    listed = netns.ip("netns", "list").stdout + netns.ip("-o", "link", "show").stdout
    return sorted(name for name in names if name in listed)


def test_hosts_reach_each_other_and_nothing_else(tmp_path):
    with netns.topology("a", "b") as topo:
        a, b = topo["a"], topo["b"]
        assert a.address != b.address and topo.subnet.overlaps(netns.ipaddress.ip_network(f"{a.address}/32"))
        serve(a, tmp_path / "a.log")
        assert fetch(b, f"http://{a.address}:8000/") == "ok"  # host to host, over the bridge
        assert fetch(a, "http://127.0.0.1:8000/").startswith("error")  # bound to its address, not loopback
        routes = netns.ip("-n", b.ns, "route", "show").stdout
        assert "default" not in routes and routes.strip().startswith(str(topo.subnet)), routes
        # a host has no way out: an address outside the topology is unreachable at once
        answer = fetch(b, "http://203.0.113.77:9/", timeout=2)
        assert answer.startswith("error") and "unreachable" in answer.lower(), answer


def test_cut_link_and_restore(tmp_path):
    with netns.topology("a", "b") as topo:
        a, b = topo["a"], topo["b"]
        serve(a, tmp_path / "a.log")
        a.cut_link()
        assert fetch(b, f"http://{a.address}:8000/", timeout=1).startswith("error")
        assert a.pids(), "cutting the link leaves the host's processes running"
        a.restore_link()
        deadline = time.monotonic() + 10
        while fetch(b, f"http://{a.address}:8000/", timeout=1) != "ok":
            assert time.monotonic() < deadline
            time.sleep(0.2)


def test_kill_all_kills_children_too(tmp_path):
    with netns.topology("a") as topo:
        a = topo["a"]
        parent = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); time.sleep(600)"
        a.spawn([sys.executable, "-c", parent], env=ENV, log=tmp_path / "p.log")
        deadline = time.monotonic() + 10
        while len(a.pids()) < 2:
            assert time.monotonic() < deadline, a.pids()
            time.sleep(0.05)
        a.kill_all()
        assert a.pids() == []


def test_cleanup_when_the_test_fails(tmp_path):
    seen: list[netns.Topology] = []
    with pytest.raises(RuntimeError, match="boom"):
        with netns.topology("server", "worker-a") as topo:
            seen.append(topo)
            topo["server"].spawn(
                [sys.executable, "-c", "import time; time.sleep(600)"], env=ENV, log=tmp_path / "s.log"
            )
            assert leftovers(topo)  # everything is there while the block runs
            raise RuntimeError("boom")
    assert leftovers(seen[0]) == []
    assert not any(seen[0].sid in ns for ns in netns.ip("netns", "list").stdout.split())


def test_cleanup_when_interrupted_by_sigterm(tmp_path):
    script = textwrap.dedent("""
        import sys, time
        from tests.e2e import netns
        with netns.topology("a", "b") as topo:
            print(topo.sid, topo.bridge, *(h.ns for h in topo.hosts.values()), flush=True)
            time.sleep(600)
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**ENV, "PYTHONPATH": str(ROOT)},
    )
    try:
        names = proc.stdout.readline().split()
        assert len(names) == 4, names
        assert all(ns in netns.ip("netns", "list").stdout for ns in names[2:])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    listed = netns.ip("netns", "list").stdout + netns.ip("-o", "link", "show").stdout
    assert not [n for n in names[1:] if n in listed], listed


def test_stale_sweep_removes_only_dead_owners_leftovers():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale_ns = f"{netns.NS_PREFIX}{dead.pid}-dead00-x"
    stale_br = f"{netns.LINK_PREFIX}dead00br"
    live_ns = f"{netns.NS_PREFIX}{os.getpid()}-live00-x"
    try:
        netns.ip("netns", "add", stale_ns)
        netns.ip("netns", "add", live_ns)
        netns.ip("link", "add", stale_br, "type", "bridge")
        netns.ip("link", "set", stale_br, "alias", f"{netns.ALIAS_PREFIX}{dead.pid} sid=dead00")
        with netns.topology("a"):  # entering sweeps
            listed = netns.ip("netns", "list").stdout
            assert stale_ns not in listed and live_ns in listed
            assert stale_br not in netns.ip("-o", "link", "show").stdout
    finally:
        for ns in (stale_ns, live_ns):
            netns.ip("netns", "del", ns, check=False)
        netns.ip("link", "del", stale_br, check=False)
