"""Soak: N runs of different specs against one sandbox with transient faults injected.

Run by tests/e2e/test_soak.py in a subprocess (task retry delays are read at import, so the
short ``ACRVPC_RETRY_DELAYS`` must be in the environment before anything imports acrvpc).
Prints one JSON line: each run's state, and every security group / ENI of the sandbox by link.

    ACRVPC_RETRY_DELAYS=0.2,0.4,0.8,1.6,3.2 python tests/e2e/soak.py --runs 20 --fault-rate 0.2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from acrvpc.sandbox import SandboxServer  # noqa: E402

TAG_KEY = "acr-vpc-build:link"


def specs(count: int, folder: Path) -> list[Path]:
    base = yaml.safe_load((ROOT / "examples" / "sandbox.yaml").read_text())
    base.pop("webhook", None)
    base["gitlab"]["register_webhook"] = False
    paths = []
    for i in range(count):
        spec = dict(base, name=f"soak-{i:02d}")
        project = ["platform/billing-api", "platform/web-frontend"][i % 2]
        spec["repositories"] = [
            {
                "namespace": f"soak{i:02d}",
                "name": "app",
                "gitlab_project": project,
                "build_rules": [{"push_name": "main", "image_tag": "latest"}],
            }
        ]
        path = folder / f"soak-{i:02d}.yaml"
        path.write_text(yaml.safe_dump(spec))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with SandboxServer() as sandbox, tempfile.TemporaryDirectory() as tmp:
        world = sandbox.world
        world.clock.set_scale(50.0)
        seeded = {"security_groups": sorted(world.ecs.groups), "network_interfaces": sorted(world.ecs.enis)}
        os.environ["ACRVPC_SANDBOX_URL"] = sandbox.url
        from flows.vpc_build import vpc_build  # after the environment is set

        # transient faults on every product: 5xx answers and dropped connections
        world.faults.update(
            {"error_rate": args.fault_rate * 0.75, "drop_rate": args.fault_rate * 0.25, "seed": args.seed}
        )
        results = []
        started = time.monotonic()
        for path in specs(args.runs, Path(tmp)):
            state = vpc_build(spec_path=str(path), return_state=True)
            results.append({"spec": path.stem, "state": state.type.value, "message": state.message or ""})
        faults = [c for c in world.calls.list() if c["code"] in ("ServiceUnavailable", "InternalError", "Dropped")]
        groups = {sg_id: _link(sg.tags) for sg_id, sg in world.ecs.groups.items()}
        enis = {eni_id: _link(eni.tags) for eni_id, eni in world.ecs.enis.items()}
        print(
            json.dumps(
                {
                    "runs": results,
                    "seeded": seeded,
                    "seconds": round(time.monotonic() - started, 1),
                    "faults_injected": len(faults),
                    "calls": len(world.calls.list()),
                    "security_groups": groups,
                    "network_interfaces": enis,
                }
            )
        )


def _link(tags: dict[str, str]) -> str | None:
    return tags.get(TAG_KEY)


if __name__ == "__main__":
    main()
