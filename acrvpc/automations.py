"""Prefect automations: notify people about builds and drift, and fail over runs whose host died.

All of them work on a self-hosted server (the server's triggers service evaluates them).

:func:`ensure_notifications` creates (or replaces, by name) two automations on the Prefect server
named by ``PREFECT_API_URL``; both send through a notification block you saved (Slack, Microsoft
Teams, e-mail, a custom webhook...):

* ``acrvpc: build failed`` on each ``acrvpc.build.failed`` event: the repository, image, status, the
  build record and the last log lines;
* ``acrvpc: drift detected`` on each ``acrvpc.drift.detected`` event: the link, the resource and
  what differed from the spec;
* ``acrvpc: delivery failed`` on each ``acrvpc.delivery.failed`` event (a GitLab delivery the
  webhook receiver accepted but could not turn into a run: a dead letter): the project, ref,
  commit, the HTTP status and message, and how to replay it.

``acrvpc automations SPEC --notify slack-webhook/ops`` runs it from the command line. The
automations match only the spec's instance (build events) and link (drift events), so several
specs can notify different people.

:func:`ensure_failover` (``acrvpc automations SPEC --failover``) installs crash failover for every
flow run tagged ``acr-vpc-build`` (the deployments of prefect.yaml and of ``acrvpc deploy``):

* ``acrvpc: crash zombie runs``: the automation Prefect documents for self-hosted servers ("detect
  zombie flows"): a proactive trigger per flow run, opened by each ``prefect.flow-run.heartbeat``
  (and by ``prefect.flow-run.Running``, so a host that dies before its first heartbeat reaches the
  server is caught too) that fires when neither a heartbeat nor a final (or suspended) state
  follows within ``after`` seconds, and sets the run ``Crashed`` with :data:`ZOMBIE_MESSAGE`.
  Workers emit heartbeats only with ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` set (an integer, at least
  30); ``after`` must exceed it (two or three periods).
* ``acrvpc: crash runs never started``: a run handed to a worker (``Pending``) whose process never
  reported ``Running`` within ``after`` seconds (its host died in between) is set ``Crashed`` with
  :data:`NEVER_STARTED_MESSAGE`.
* ``acrvpc: rerun crashed runs``: a run crashed by one of the two above is set ``AwaitingRetry``
  (Scheduled), exactly what the UI's Retry does: any live worker of the pool picks the *same* flow
  run up, and with results in shared storage its completed stages come back Cached. Only these two
  messages are rescheduled: a run that crashed for another reason (its process failed) is not
  retried forever.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState, SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

from acrvpc import monitor
from acrvpc.domain.spec import Spec

BUILD_FAILED_BODY = (
    "Build of {{ event.resource['prefect.resource.name'] }} ended {{ event.payload.status }}\n"
    "image: {{ event.payload.image }}\nbuild record: {{ event.payload.build_record_id }} "
    "(instance {{ event.payload.instance_id }})\n"
    "last log lines:\n{% for line in event.payload.log_tail %}{{ line }}\n{% endfor %}"
    "flow run: {{ flow_run.name if flow_run else '-' }}"
)
DRIFT_BODY = (
    "Drift on link {{ event.resource['acrvpc.link'] }}: the {{ event.payload.kind }} "
    "{{ event.resource['prefect.resource.name'] }} differed from the spec and was converged back:\n"
    "{% for line in event.payload.differences %}- {{ line }}\n{% endfor %}"
)


DELIVERY_FAILED_BODY = (
    "A GitLab delivery to {{ event.resource['acrvpc.deployment'] }} could not start a run and is a dead letter:\n"
    "project: {{ event.resource['acrvpc.project'] }}  ref: {{ event.resource['acrvpc.ref'] }}  "
    "commit: {{ event.resource['acrvpc.sha'] }}\n"
    "answer: {{ event.payload.status }} {{ event.payload.error }} (after {{ event.payload.attempts }} attempt(s))\n"
    "replay it once fixed: acrvpc webhook replay {{ event.resource['prefect.resource.name'] }}"
)
DELIVERY_FAILED = "acrvpc.delivery.failed"  # deployments.webhook.DELIVERY_FAILED (not imported: no receiver here)


def notification_automations(spec: Spec, block_document_id: Any) -> list[AutomationCore]:
    """The three automations for ``spec`` (not yet saved), sending through ``block_document_id``."""
    return [
        AutomationCore(
            name=f"acrvpc: build failed ({spec.name})",
            description=f"Notify when a build of instance {spec.instance_id} fails (acr-vpc-build).",
            trigger=EventTrigger(
                expect={monitor.BUILD_FAILED},
                match={"prefect.resource.id": f"acrvpc.repository.{spec.instance_id}.*"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[
                SendNotification(
                    block_document_id=block_document_id,
                    subject="ACR build failed: {{ event.resource['prefect.resource.name'] }}",
                    body=BUILD_FAILED_BODY,
                )
            ],
        ),
        AutomationCore(
            name=f"acrvpc: drift detected ({spec.name})",
            description=f"Notify when link {spec.name}'s managed resources were changed outside the pipeline.",
            trigger=EventTrigger(
                expect={monitor.DRIFT_DETECTED},
                match={"prefect.resource.id": f"acrvpc.link.{spec.name}.*"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[
                SendNotification(
                    block_document_id=block_document_id,
                    subject=f"Drift on acr-vpc-build link {spec.name}",
                    body=DRIFT_BODY,
                )
            ],
        ),
        AutomationCore(
            name=f"acrvpc: delivery failed ({spec.name})",
            description=f"Notify when a GitLab push for spec {spec.name} became a dead letter in the receiver.",
            trigger=EventTrigger(
                expect={DELIVERY_FAILED},
                match={
                    "prefect.resource.id": "acrvpc.delivery.*",
                    "acrvpc.deployment": [spec.webhook.deployment, f"build-on-push/{spec.name}"],
                },
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[
                SendNotification(
                    block_document_id=block_document_id,
                    subject="GitLab delivery failed: {{ event.resource['acrvpc.project'] }} "
                    "{{ event.resource['acrvpc.ref'] }}",
                    body=DELIVERY_FAILED_BODY,
                )
            ],
        ),
    ]


TAG = "acr-vpc-build"  # every deployment's tag (prefect.yaml, acrvpc.deploy.TAGS)
MIN_HEARTBEAT_SECONDS = 30  # Prefect's minimum PREFECT_FLOWS_HEARTBEAT_FREQUENCY
DEFAULT_FAILOVER_AFTER = 90  # seconds: three heartbeat periods of 30 s
ZOMBIE_MESSAGE = "acrvpc: no heartbeat from the flow run's host (crash failover)"
NEVER_STARTED_MESSAGE = "acrvpc: the flow run's host never started it (crash failover)"
RERUN_MESSAGE = "acrvpc: rescheduled after its host stopped (crash failover)"
FAILOVER_NAMES = ("acrvpc: crash zombie runs", "acrvpc: crash runs never started", "acrvpc: rerun crashed runs")
_FINAL = {f"prefect.flow-run.{name}" for name in ("Completed", "Failed", "Cancelled", "Crashed")}


def failover_automations(after_seconds: float = DEFAULT_FAILOVER_AFTER, tag: str = TAG) -> list[AutomationCore]:
    """The three crash-failover automations (not yet saved) for flow runs tagged ``tag``.

    Raises:
        ValueError: ``after_seconds`` does not exceed the minimum heartbeat period.
    """
    if after_seconds <= MIN_HEARTBEAT_SECONDS:
        raise ValueError(
            f"--failover-after {after_seconds:g}: must exceed the workers' heartbeat period "
            f"(PREFECT_FLOWS_HEARTBEAT_FREQUENCY, at least {MIN_HEARTBEAT_SECONDS} s); give two or "
            f"three periods, e.g. --failover-after {DEFAULT_FAILOVER_AFTER}"
        )
    runs = ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"})
    tagged = ResourceSpecification({"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{tag}"})
    within = timedelta(seconds=after_seconds)
    return [
        AutomationCore(
            name=FAILOVER_NAMES[0],
            description=(
                f"Mark a {tag} flow run Crashed when its heartbeats stop for {after_seconds:g} s (its host "
                f"died); needs PREFECT_FLOWS_HEARTBEAT_FREQUENCY on the workers (acr-vpc-build)."
            ),
            trigger=EventTrigger(
                after={"prefect.flow-run.heartbeat", "prefect.flow-run.Running"},
                expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Suspended", "prefect.flow-run.Paused", *_FINAL},
                match=runs,
                match_related=tagged,
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=within,
            ),
            actions=[ChangeFlowRunState(state=StateType.CRASHED, message=ZOMBIE_MESSAGE)],
        ),
        AutomationCore(
            name=FAILOVER_NAMES[1],
            description=(
                f"Mark a {tag} flow run Crashed when its worker handed it to a process that never "
                f"reported Running within {after_seconds:g} s (acr-vpc-build)."
            ),
            trigger=EventTrigger(
                after={"prefect.flow-run.Pending"},
                expect={
                    "prefect.flow-run.Running",
                    "prefect.flow-run.Scheduled",
                    "prefect.flow-run.AwaitingRetry",
                    "prefect.flow-run.Cancelling",
                    *_FINAL,
                },
                match=runs,
                match_related=tagged,
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=within,
            ),
            actions=[ChangeFlowRunState(state=StateType.CRASHED, message=NEVER_STARTED_MESSAGE)],
        ),
        AutomationCore(
            name=FAILOVER_NAMES[2],
            description=(
                f"Reschedule (AwaitingRetry, as the UI's Retry) a {tag} flow run crashed by the two "
                f"failover automations: a surviving worker resumes the same run (acr-vpc-build)."
            ),
            trigger=EventTrigger(
                expect={"prefect.flow-run.Crashed"},
                match=ResourceSpecification(
                    {
                        "prefect.resource.id": "prefect.flow-run.*",
                        "prefect.state-message": [ZOMBIE_MESSAGE, NEVER_STARTED_MESSAGE],
                    }
                ),
                match_related=tagged,
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[ChangeFlowRunState(state=StateType.SCHEDULED, name="AwaitingRetry", message=RERUN_MESSAGE)],
        ),
    ]


def _replace(client: Any, automations: list[AutomationCore]) -> list[str]:
    names = []
    for automation in automations:
        for old in client.read_automations_by_name(automation.name):
            client.delete_automation(old.id)
        client.create_automation(automation)
        names.append(automation.name)
    return names


def ensure_failover(after_seconds: float = DEFAULT_FAILOVER_AFTER, tag: str = TAG) -> list[str]:
    """Create or replace the crash-failover automations (:func:`failover_automations`); their names.

    Raises:
        ValueError: ``after_seconds`` too short.
    """
    from prefect import get_client

    automations = failover_automations(after_seconds, tag)
    with get_client(sync_client=True) as client:
        return _replace(client, automations)


def ensure_notifications(spec: Spec, block: str) -> list[str]:
    """Create or replace the spec's notification automations; returns their names.

    Args:
        spec: the pipeline spec (instance id and link name scope the triggers).
        block: the notification block as ``<block-type-slug>/<name>``, e.g. ``slack-webhook/ops``.

    Raises:
        ValueError: ``block`` is not ``type/name`` or no such block is saved on the server.
    """
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    type_slug, _, name = block.partition("/")
    if not type_slug or not name:
        raise ValueError(
            f"--notify {block!r}: give the notification block as <block-type-slug>/<name>, "
            f"e.g. slack-webhook/ops (see `prefect block ls`)"
        )
    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(name=name, block_type_slug=type_slug)
        except ObjectNotFound:
            raise ValueError(
                f"--notify {block}: no such block on the Prefect server; save one first, e.g. "
                f"SlackWebhook(url=...).save({name!r}) (see `prefect block ls`)"
            ) from None
        return _replace(client, notification_automations(spec, document.id))
