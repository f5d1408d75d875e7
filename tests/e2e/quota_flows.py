"""A flow for tests/e2e/test_shared_quota.py: calls ECS from several threads and says how it took its turns."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run


@flow(name="quota-probe")
def quota_probe(spec_path: str, out_dir: str, threads: int = 2, calls: int = 6) -> int:
    """Make ``threads * calls`` ECS calls; write {errors, calls, brokered} to OUT_DIR/<flow run id>.json."""
    from alibabacloud_ecs20140526 import models as m

    from acrvpc.cloud import clients as cloud
    from acrvpc.cloud import ratelimit
    from acrvpc.domain.spec import load_spec
    from acrvpc.settings import settings

    spec = load_spec(spec_path)
    errors: list[str] = []

    def run() -> None:
        ecs = cloud.cloud_clients(spec).ecs
        for _ in range(calls):
            try:
                ecs.describe_security_groups(m.DescribeSecurityGroupsRequest(region_id=spec.region))
            except Exception as exc:  # noqa: BLE001 - reported to the test
                errors.append(f"{type(exc).__name__} {getattr(exc, 'code', '')}")

    workers = [threading.Thread(target=run) for _ in range(threads)]
    [t.start() for t in workers]
    [t.join() for t in workers]
    shared = ratelimit.shared_limiter("ecs", spec.region)
    Path(out_dir, f"{flow_run.id}.json").write_text(
        json.dumps(
            {
                "errors": errors,
                "shared": shared is not None,
                "calls": shared.calls if shared else 0,
                "brokered": shared.brokered if shared else 0,
                "broker": settings().quota_broker,
            }
        )
    )
    return len(errors)
