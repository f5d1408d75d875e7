"""Prefect automations that notify people about builds and drift (work on a self-hosted server).

:func:`ensure_notifications` creates (or replaces, by name) two automations on the Prefect server
named by ``PREFECT_API_URL``; both send through a notification block you saved (Slack, Microsoft
Teams, e-mail, a custom webhook...):

* ``acrvpc: build failed`` on each ``acrvpc.build.failed`` event: the repository, image, status, the
  build record and the last log lines;
* ``acrvpc: drift detected`` on each ``acrvpc.drift.detected`` event: the link, the resource and
  what differed from the spec.

``acrvpc automations SPEC --notify slack-webhook/ops`` runs it from the command line. The
automations match only the spec's instance (build events) and link (drift events), so several
specs can notify different people.
"""

from __future__ import annotations

from typing import Any

from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from acrvpc import monitor
from acrvpc.spec import Spec

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


def notification_automations(spec: Spec, block_document_id: Any) -> list[AutomationCore]:
    """The two automations for ``spec`` (not yet saved), sending through ``block_document_id``."""
    return [
        AutomationCore(
            name=f"acrvpc: build failed ({spec.name})",
            description=f"Notify when a build of instance {spec.instance_id} fails (acr-vpc-build).",
            trigger=EventTrigger(expect={monitor.BUILD_FAILED},
                                 match={"prefect.resource.id": f"acrvpc.repository.{spec.instance_id}.*"},
                                 posture=Posture.Reactive, threshold=1),
            actions=[SendNotification(block_document_id=block_document_id,
                                      subject="ACR build failed: {{ event.resource['prefect.resource.name'] }}",
                                      body=BUILD_FAILED_BODY)],
        ),
        AutomationCore(
            name=f"acrvpc: drift detected ({spec.name})",
            description=f"Notify when link {spec.name}'s managed resources were changed outside the pipeline.",
            trigger=EventTrigger(expect={monitor.DRIFT_DETECTED},
                                 match={"prefect.resource.id": f"acrvpc.link.{spec.name}.*"},
                                 posture=Posture.Reactive, threshold=1),
            actions=[SendNotification(block_document_id=block_document_id,
                                      subject=f"Drift on acr-vpc-build link {spec.name}", body=DRIFT_BODY)],
        ),
    ]


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
        raise ValueError(f"--notify {block!r}: give the notification block as <block-type-slug>/<name>, "
                         f"e.g. slack-webhook/ops (see `prefect block ls`)")
    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(name=name, block_type_slug=type_slug)
        except ObjectNotFound:
            raise ValueError(f"--notify {block}: no such block on the Prefect server; save one first, e.g. "
                             f"SlackWebhook(url=...).save({name!r}) (see `prefect block ls`)") from None
        names = []
        for automation in notification_automations(spec, document.id):
            for old in client.read_automations_by_name(automation.name):
                client.delete_automation(old.id)
            client.create_automation(automation)
            names.append(automation.name)
    return names
