"""Drift: a managed resource found changed behind the pipeline's back, reported before it is converged.

A scheduled run that finds the link's security group or ENI different from the spec (an egress
rule added by hand, the ENI moved to another group, the registry's attach permission removed)
calls a :class:`DriftReporter` with the differences before (or, for the ENI's permission, as) it
converges them. The reporter

* logs a WARNING in the task run;
* writes a markdown artifact ``drift-<link name>`` (resource, differences, what the run does next);
* emits ``acrvpc.drift.detected`` with the resource and the differences, for a Prefect automation;
* tells local listeners (the CLI shows it).

A difference may also come from a spec that changed (a new ``link.allowed_ips`` entry shows up as a
missing rule): the report says "differs from the spec" and lists each difference, so a person can
tell which it was.
"""

from __future__ import annotations

import logging

from acrvpc import monitor
from acrvpc.domain.spec import Spec

_log = logging.getLogger("acrvpc.drift")


def drift_markdown(spec: Spec, kind: str, resource_id: str, differences: list[str]) -> str:
    """The drift artifact's markdown."""
    lines = [
        f"# Drift on link {spec.name}",
        "",
        f"The {kind} `{resource_id}` (tagged `{spec.tag[0]}={spec.tag[1]}`) differs from the spec:",
        "",
    ]
    lines += [f"- {difference}" for difference in differences]
    lines += [
        "",
        "This run converges it back to the spec. If the change was wanted, put it in the spec "
        "(e.g. `link.allowed_ips`); otherwise find out who changed it (ActionTrail).",
    ]
    return "\n".join(lines) + "\n"


class DriftReporter:
    """Report the drift of one kind of resource of a spec's link (see the module docstring).

    Args:
        spec: the pipeline spec.
        kind: what the resource is, in words (``security group``, ``network interface``).
    """

    def __init__(self, spec: Spec, kind: str) -> None:
        self.spec, self.kind = spec, kind
        self.reported: list[tuple[str, list[str]]] = []

    def __call__(self, resource_id: str, differences: list[str]) -> None:
        self.reported.append((resource_id, list(differences)))
        _log.warning("drift on %s %s of link %s: %s", self.kind, resource_id, self.spec.name, "; ".join(differences))
        if monitor.in_run():
            from prefect import get_run_logger
            from prefect.artifacts import create_markdown_artifact

            get_run_logger().warning(
                "drift: the %s %s differs from the spec: %s", self.kind, resource_id, "; ".join(differences)
            )
            try:
                create_markdown_artifact(
                    markdown=drift_markdown(self.spec, self.kind, resource_id, differences),
                    key=monitor.slug("drift", self.spec.name),
                    description=f"drift on {self.kind} {resource_id}",
                )
            except Exception:  # noqa: BLE001 - the report must not stop the convergence
                _log.warning("could not write the drift artifact", exc_info=True)
        resource = {
            "prefect.resource.id": f"acrvpc.link.{self.spec.name}.{resource_id}",
            "prefect.resource.name": resource_id,
            "acrvpc.link": self.spec.name,
            "acrvpc.resource-kind": self.kind,
            "acrvpc.region": self.spec.region,
        }
        monitor.emit(monitor.DRIFT_DETECTED, resource, payload={"differences": differences, "kind": self.kind})
        monitor.publish(
            "drift.detected",
            link=self.spec.name,
            resource_kind=self.kind,
            resource_id=resource_id,
            differences=differences,
        )
