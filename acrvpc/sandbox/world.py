"""The sandbox's whole state: one backend per service, a clock, the call log and faults.

Handlers run under ``world.lock`` (one call at a time changes state); latency and dropped
connections are applied by the server outside the lock.
"""

from __future__ import annotations

import copy
import itertools
import threading
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .core.calls import CallLog
from .core.clock import SandboxClock
from .core.faults import Faults
from .core.signing import SignatureVerifier
from .cr.models import CrBackend
from .ecs.models import EcsBackend
from .gitlab.models import GitLabBackend
from .vpc.models import VpcBackend

_ids = itertools.count(1)


def load_scenario(path: str | Path | None = None) -> dict[str, Any]:
    """Read a scenario file; ``None`` gives the default scenario shipped in the package."""
    if path is None:
        text = resources.files("acrvpc.sandbox").joinpath("scenarios/default.yaml").read_text()
    else:
        text = Path(path).read_text()
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"scenario {path}: the top level must be a mapping")
    return data


class World:
    """All sandbox state. ``World(scenario)`` seeds it; :meth:`reset` re-seeds it."""

    def __init__(self, scenario: dict[str, Any] | None = None) -> None:
        self.lock = threading.RLock()
        self.calls = CallLog()
        self.faults = Faults()
        self.ram_policy: Any = None  # a core.ram.RamPolicy when calls are authorized; kept across reset
        self.scenario = copy.deepcopy(scenario if scenario is not None else load_scenario())
        self._seed()

    def _seed(self) -> None:
        s = self.scenario
        self.account_id = str(s.get("account_id", "5123456789012345"))
        self.region = s.get("region", "cn-hangzhou")
        self.clock = SandboxClock(float(s.get("time_scale", 1.0)))
        self.credentials = {c["access_key_id"]: c["access_key_secret"] for c in s.get("credentials", [])}
        self.verifier = SignatureVerifier(
            self.credentials.get, replay_protection=bool(s.get("replay_protection", True))
        )
        self.vpc = VpcBackend(self)
        self.ecs = EcsBackend(self)
        self.cr = CrBackend(self)
        self.gitlab = GitLabBackend(self)
        self.vpc.load(s.get("vpc") or {})
        self.ecs.load(s.get("ecs") or {})
        self.cr.load(s.get("cr") or {})
        self.gitlab.load(s.get("gitlab") or {})

    def reset(self, scenario: dict[str, Any] | None = None) -> None:
        with self.lock:
            if scenario is not None:
                self.scenario = copy.deepcopy(scenario)
            self.calls.clear()
            self.faults.clear()
            self._seed()

    @staticmethod
    def new_id(prefix: str) -> str:
        """A fresh resource id such as ``sg-bp1sbx00000000000a7``, never reused in the process."""
        return f"{prefix}-bp1sbx{next(_ids):013x}"
