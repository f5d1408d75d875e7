"""Hosts of their own for end-to-end tests: Linux network namespaces on a private bridge.

:func:`topology` builds, for the duration of a ``with`` block, one network namespace per host name,
each with loopback up and one veth pair into a bridge in the root namespace, and gives every host
its own address in a private ``/24`` (``10.213.X.0/24``, ``X`` picked so that no route or address
of the machine is in it). The bridge itself holds ``.1``: the root namespace, where the test
process runs, is the "control" host (it talks to the servers and may serve the sandbox there).
No namespace gets a default route, so a process in a host can reach the other hosts, the control
address and its own loopback, and nothing else::

                        root namespace (test process, control address 10.213.X.1)
                                    |
                          bridge avb<sid>br
          ______________________|__________________________ ...
         |                 |                |               |
      server (.2)     worker-a (.3)    worker-b (.4)   storage (.5)  ...

Processes run inside a host through ``ip netns exec`` (:meth:`Host.spawn`, :meth:`Host.run`), each
with the environment and working directory the caller gives. :meth:`Host.cut_link` takes the
host's veth down (its network is cut, its processes live on), :meth:`Host.kill_all` SIGKILLs every
process in the namespace (also grandchildren such as a worker's flow-run processes).

Cleanup: leaving the ``with`` block (normally, on an exception, on KeyboardInterrupt, or on SIGTERM,
which the block turns into SystemExit) kills every process in the hosts and deletes every
namespace, veth and the bridge; an ``atexit`` hook does the same if the block never got to.
Names carry a per-topology id (and the namespaces the owning pid), and every link an alias naming
its owner: :func:`sweep_stale` (run before each new topology) removes leftovers of an earlier run
whose process is gone, and never touches a live run's.

Needs root and iproute2. The tests run under ``env -i PATH=/usr/local/bin:/usr/bin:/bin``, so ``ip``
is looked up in the sbin directories explicitly (:data:`IP`).
"""

from __future__ import annotations

import atexit
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

IP = shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
NS_PREFIX = "acrvpc-"  # namespaces: acrvpc-<pid>-<sid>-<host>
LINK_PREFIX = "avb"  # links: avb<sid>br (bridge), avb<sid><n> (the root side of host n's veth); <= 15 chars
ALIAS_PREFIX = "acrvpc-netns pid="  # every link's alias: owner pid, for the stale sweep
SUBNET_BASE = "10.213"  # 10.213.X.0/24, on these veths only


class NetnsUnavailable(RuntimeError):
    """The machine cannot build namespaces (not root, no iproute2): the caller skips."""


def unavailable_reason() -> str | None:
    """Why :func:`topology` cannot work here, or None when it can."""
    if IP is None:
        return "iproute2's ip not found in /usr/sbin, /sbin, /usr/bin or /bin (apt-get install iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    return None


def ip(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run ``ip ARGS``; a failure raises with its stderr (``check``)."""
    proc = subprocess.run([IP, *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _namespaces() -> list[str]:
    out = ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _ns_pids(ns: str) -> list[int]:
    out = ip("netns", "pids", ns, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def _kill_ns_processes(ns: str, rounds: int = 20) -> None:
    """SIGKILL every process in namespace ``ns`` until none is left (children may fork meanwhile)."""
    for _ in range(rounds):
        pids = _ns_pids(ns)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def _delete_namespace(ns: str) -> None:
    _kill_ns_processes(ns)
    ip("netns", "del", ns, check=False)


def _links() -> list[dict]:
    out = ip("-j", "link", "show", check=False).stdout
    try:
        return json.loads(out or "[]")
    except json.JSONDecodeError:
        return []


def sweep_stale() -> list[str]:
    """Remove namespaces and links of earlier topologies whose owning process is gone; names removed."""
    removed: list[str] = []
    for ns in _namespaces():
        if not ns.startswith(NS_PREFIX):
            continue
        owner = ns[len(NS_PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not _alive(int(owner)):
            _delete_namespace(ns)
            removed.append(ns)
    # Bridges first: the root side of a veth goes with its namespace, a bridge does not.
    links = sorted(_links(), key=lambda link: link.get("ifname", "").endswith("br"), reverse=True)
    for link in links:
        name, alias = link.get("ifname", ""), link.get("ifalias", "")
        if not name.startswith(LINK_PREFIX) or not alias.startswith(ALIAS_PREFIX):
            continue
        owner = alias[len(ALIAS_PREFIX) :].split()[0]
        if owner.isdigit() and not _alive(int(owner)):
            ip("link", "del", name, check=False)
            removed.append(name)
    return removed


def _used_networks() -> list[ipaddress.IPv4Network]:
    nets = []
    for args in (("-j", "-4", "route", "show", "table", "all"), ("-j", "-4", "addr", "show")):
        try:
            entries = json.loads(ip(*args, check=False).stdout or "[]")
        except json.JSONDecodeError:
            continue
        for entry in entries:
            for dst in [entry.get("dst")] + [f"{a['local']}/{a['prefixlen']}" for a in entry.get("addr_info", [])]:
                if dst and dst != "default" and ":" not in dst:
                    try:
                        nets.append(ipaddress.ip_network(dst, strict=False))
                    except ValueError:
                        pass
    return nets


def _pick_subnet() -> ipaddress.IPv4Network:
    used = _used_networks()
    candidates = list(range(1, 255))
    random.shuffle(candidates)
    for third in candidates:
        net = ipaddress.ip_network(f"{SUBNET_BASE}.{third}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError(f"no free /24 in {SUBNET_BASE}.0.0/16 for a test topology")


@dataclass
class Host:
    """One host of a :class:`Topology`: a network namespace with one address."""

    name: str
    ns: str
    address: str
    veth: str  # the root-namespace side of the host's veth pair
    procs: list[subprocess.Popen] = field(default_factory=list)

    def command(self, args: Sequence[str]) -> list[str]:
        """``args`` prefixed to run inside this host."""
        return [*self.launcher, *args]

    @property
    def launcher(self) -> tuple[str, ...]:
        """The prefix that runs a command inside this host (``ip netns exec NS``)."""
        return (IP, "netns", "exec", self.ns)

    def spawn(
        self, args: Sequence[str], env: Mapping[str, str], log: Path, cwd: str | Path | None = None
    ) -> subprocess.Popen:
        """Start ``args`` in this host, in a session of its own, output to ``log``."""
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                self.command(args),
                env=dict(env),
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def run(
        self,
        args: Sequence[str],
        env: Mapping[str, str],
        cwd: str | Path | None = None,
        timeout: float = 120,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess:
        """Run ``args`` in this host to the end; a non-zero exit raises with its output (``check``)."""
        proc = subprocess.run(
            self.command(args),
            env=dict(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"[{self.name}] {' '.join(args)} failed ({proc.returncode}): {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
            )
        return proc

    def pids(self) -> list[int]:
        """Every process in this host's namespace (the ones spawned here and their children)."""
        return _ns_pids(self.ns)

    def kill_all(self) -> None:
        """SIGKILL every process in this host (a host that dies), and reap the ones spawned here."""
        _kill_ns_processes(self.ns)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def cut_link(self) -> None:
        """Take the host's veth down: its processes live on, but nothing reaches it nor leaves it."""
        ip("link", "set", self.veth, "down")

    def restore_link(self) -> None:
        ip("link", "set", self.veth, "up")


@dataclass
class Topology:
    """Hosts on one bridge; build with :func:`topology`."""

    sid: str
    subnet: ipaddress.IPv4Network
    bridge: str
    hosts: dict[str, Host] = field(default_factory=dict)
    _closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def control_address(self) -> str:
        """The bridge's address in the root namespace, where the test process runs."""
        return str(self.subnet.network_address + 1)

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    @property
    def addresses(self) -> list[str]:
        return [self.control_address, *(h.address for h in self.hosts.values())]

    def env(self, base: Mapping[str, str], **extra: str) -> dict[str, str]:
        """``base`` for a process in a host: proxies dropped (none is reachable) and NO_PROXY naming the hosts."""
        env = {k: v for k, v in base.items() if k.lower() not in {"http_proxy", "https_proxy", "all_proxy"}}
        no_proxy = ",".join(["127.0.0.1", "localhost", *self.addresses])
        env.update(NO_PROXY=no_proxy, no_proxy=no_proxy, **extra)
        return env

    def _build(self, names: Sequence[str]) -> None:
        alias = f"{ALIAS_PREFIX}{os.getpid()} sid={self.sid}"
        ip("link", "add", self.bridge, "type", "bridge")
        ip("link", "set", self.bridge, "alias", alias)
        ip("addr", "add", f"{self.control_address}/{self.subnet.prefixlen}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for index, name in enumerate(names):
            ns = f"{NS_PREFIX}{os.getpid()}-{self.sid}-{name}"
            veth = f"{LINK_PREFIX}{self.sid}{index}"
            address = str(self.subnet.network_address + 2 + index)
            ip("netns", "add", ns)
            host = Host(name=name, ns=ns, address=address, veth=veth)
            self.hosts[name] = host
            ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("link", "set", veth, "alias", alias)
            ip("link", "set", veth, "master", self.bridge)
            ip("link", "set", veth, "up")
            ip("-n", ns, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", "eth0", "up")

    def close(self) -> None:
        """Kill every process in the hosts and delete the namespaces, veths and bridge (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for host in self.hosts.values():
            _delete_namespace(host.ns)  # the veth pair goes with its namespace end
            ip("link", "del", host.veth, check=False)
        ip("link", "del", self.bridge, check=False)
        for host in self.hosts.values():
            for proc in host.procs:
                if proc.poll() is None:
                    try:
                        proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        pass


@contextmanager
def topology(*names: str) -> Iterator[Topology]:
    """Build hosts ``names`` (one namespace each) on a private bridge; remove all of it on the way out.

    Raises:
        NetnsUnavailable: not root, or no iproute2.
    """
    reason = unavailable_reason()
    if reason:
        raise NetnsUnavailable(reason)
    if len(set(names)) != len(names) or not names or len(names) > 200:
        raise ValueError(f"host names must be 1..200 distinct names, got {names!r}")
    sweep_stale()
    sid = secrets.token_hex(3)
    topo = Topology(sid=sid, subnet=_pick_subnet(), bridge=f"{LINK_PREFIX}{sid}br")
    atexit.register(topo.close)
    previous = None
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:

        def _on_term(signum, frame):  # SIGTERM: unwind through the finally below
            raise SystemExit(128 + signum)

        previous = signal.signal(signal.SIGTERM, _on_term)
    try:
        topo._build(names)
        yield topo
    finally:
        try:
            topo.close()
        finally:
            atexit.unregister(topo.close)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
