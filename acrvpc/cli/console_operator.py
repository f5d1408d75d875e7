"""A stand-in operator for the demo: does the console steps on the sandbox and resumes the run.

In console mode the flow pauses and waits for a person (see :mod:`flows.console_steps`). For
``acrvpc demo --link-mode console`` (and tests) :class:`ConsoleOperator` plays that person
against a sandbox: it watches the Prefect API for the paused run of its spec, performs the
console action the pause asks for on the sandbox admin route (``console-link`` ->
``POST /_sandbox/console/link``, ``console-account`` -> ``POST /_sandbox/console/bind``), and
resumes the run with the typed answer ``{"done": true, "note": ...}``. It never sends a token.

Example::

    with ConsoleOperator(sandbox.url, spec, spec_path) as operator:
        vpc_build(spec_path=spec_path)
    print(operator.actions)
"""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import resume_flow_run

from acrvpc.domain.spec import Spec

FLOW_NAME = "vpc-build"
NOTE = "done by the acrvpc demo's console operator (sandbox)"


def link_payload(spec: Spec) -> dict[str, Any]:
    """The ``/_sandbox/console/link`` body for a spec: the values the runbook tells a person to enter."""
    allowed = [
        t.cidr.removesuffix("/32") + ("" if t.port_range == "1/65535" else f":{t.port_range.split('/')[0]}")
        for t in spec.link.allowed_ips
    ]
    return {
        "instance_id": spec.instance_id,
        "vpc_id": spec.network.vpc_id,
        "vswitch_id": spec.network.vswitch_id,
        "gitlab_ip": spec.gitlab.private_ip,
        "gitlab_port": spec.gitlab.port,
        "allowed": allowed,
    }


def bind_payload(spec: Spec) -> dict[str, Any]:
    """The ``/_sandbox/console/bind`` body for a spec (endpoint and user name; no token)."""
    return {"instance_id": spec.instance_id, "domain": spec.gitlab.endpoint, "username": spec.gitlab.username}


class ConsoleOperator:
    """Watches for this spec's paused ``vpc-build`` run, does the console step on the sandbox, resumes it.

    Args:
        sandbox_url: the sandbox's base URL.
        spec: the spec the run uses (the values entered "in the console").
        spec_path: the ``spec_path`` parameter of the runs to answer; ``None`` answers any paused run.
        poll_seconds: how often to look for a paused run.
    """

    def __init__(
        self, sandbox_url: str, spec: Spec, spec_path: str | None = None, *, poll_seconds: float = 0.5, note: str = NOTE
    ) -> None:
        self.sandbox_url = sandbox_url.rstrip("/")
        self.spec = spec
        self.spec_path = spec_path
        self.poll_seconds = poll_seconds
        self.note = note
        self.actions: list[str] = []  # one line per console step done and run resumed
        self.errors: list[str] = []
        self._done: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one round --------------------------------------------------------------------------
    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.sandbox_url}{path}",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
        with opener.open(request, timeout=10) as response:
            return json.loads(response.read() or b"{}")

    def perform(self, pause_key: str) -> str:
        """Do the console action a pause asks for. Returns a line describing it."""
        if pause_key.startswith("console-link"):
            reply = self._post("/_sandbox/console/link", link_payload(self.spec))
            return f"manage link: {reply.get('security_group_id')} + {reply.get('network_interface_id')}"
        if pause_key.startswith("console-account"):
            reply = self._post("/_sandbox/console/bind", bind_payload(self.spec))
            return f"bind account: {reply.get('username')} @ {reply.get('domain')}"
        raise ValueError(f"no console action for pause {pause_key!r}")

    def paused_runs(self) -> list[tuple[UUID, str]]:
        """This spec's paused ``vpc-build`` runs, as ``(flow run id, pause key)``."""
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
                ),
            )
        found = []
        for run in runs:
            if self.spec_path is not None and (run.parameters or {}).get("spec_path") != self.spec_path:
                continue
            key = run.state.state_details.pause_key if run.state else None
            if key:
                found.append((run.id, key))
        return found

    def step(self) -> list[str]:
        """One round: answer every paused run not answered yet. Returns the lines of what was done."""
        done = []
        for run_id, key in self.paused_runs():
            if (str(run_id), key) in self._done:
                continue
            what = self.perform(key)
            try:
                resume_flow_run(run_id, run_input={"done": True, "note": self.note})
            except RuntimeError as exc:  # e.g. the run has not saved its form yet: next round
                self.errors.append(f"resume {run_id}: {exc}")
                continue
            self._done.add((str(run_id), key))
            line = f"{what}; resumed flow run {run_id}"
            self.actions.append(line)
            done.append(line)
        return done

    # -- in the background ------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 - keep watching; the run's own timeout bounds it
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def start(self) -> ConsoleOperator:
        """Start watching in a daemon thread.

        The Prefect API is opened once here, in the caller's thread, so that with Prefect's
        ephemeral mode the temporary server is started once and shared with the flow.
        """
        with get_client(sync_client=True):
            pass
        self._thread = threading.Thread(target=self._loop, name="console-operator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (waits for the current round)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def __enter__(self) -> ConsoleOperator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
