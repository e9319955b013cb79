"""The messages on the deployed webhook deliveries queue, and what the dispatcher function does with one.

Two kinds share the queue (template.yaml, ``WebhookQueue``):

- an event envelope ``{"id","type","created_at","tenant_id","data"}``, from the events topic (the SNS
  subscription uses raw message delivery, so the body is the envelope itself) → ``fan_out``: one
  pending delivery per endpoint that wants it, each scheduled at once;
- a delivery message ``{"kind":"delivery","tenant_id","webhook_id","delivery_id"}``, sent by the
  ``SqsDeliveryScheduler`` (with a delay of at most 15 minutes) → ``attempt_by_id``.

Both are idempotent against SQS's at-least-once delivery: a repeated event adds no delivery (ids are
derived from the event and the endpoint), a repeated delivery message finds its delivery settled, or
not yet due (and waits out the rest). A body that is neither raises ``PoisonMessage``: the record
fails, and after the queue's maxReceiveCount it rests in the dead-letter queue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ragline.webhooks.models import WebhookDelivery

if TYPE_CHECKING:
    from ragline.webhooks.service import WebhookService

DELIVERY_KIND = "delivery"
_EVENT_FIELDS = ("id", "type", "created_at", "tenant_id")
_DELIVERY_FIELDS = ("tenant_id", "webhook_id", "delivery_id")


class PoisonMessage(ValueError):
    """A deliveries-queue message no retry can make sense of."""


@dataclass(frozen=True)
class EventMessage:
    event: dict[str, Any]


@dataclass(frozen=True)
class DeliveryMessage:
    tenant_id: str
    webhook_id: str
    delivery_id: str


def delivery_message(delivery: WebhookDelivery) -> dict[str, str]:
    return {
        "kind": DELIVERY_KIND,
        "tenant_id": delivery.tenant_id,
        "webhook_id": delivery.webhook_id,
        "delivery_id": delivery.id,
    }


def parse_message(body: str) -> EventMessage | DeliveryMessage:
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise PoisonMessage(f"not JSON: {body[:80]!r}") from exc
    if not isinstance(message, dict):
        raise PoisonMessage(f"not a JSON object: {body[:80]!r}")
    if message.get("Type") == "Notification" and isinstance(message.get("Message"), str):
        # A subscription without raw message delivery wraps the envelope in SNS's notification.
        return parse_message(message["Message"])
    if message.get("kind") == DELIVERY_KIND:
        _require_strings(message, _DELIVERY_FIELDS, "delivery message")
        return DeliveryMessage(*(message[name] for name in _DELIVERY_FIELDS))
    _require_strings(message, _EVENT_FIELDS, "event")
    if not isinstance(message.get("data"), dict):
        raise PoisonMessage("event without a data object")
    try:
        datetime.fromisoformat(message["created_at"].replace("Z", "+00:00"))
    except ValueError as exc:
        raise PoisonMessage(f"event created_at is not a timestamp: {message['created_at']!r}") from exc
    return EventMessage(message)


def _require_strings(message: dict[str, Any], names: tuple[str, ...], what: str) -> None:
    missing = [name for name in names if not isinstance(message.get(name), str) or not message[name]]
    if missing:
        raise PoisonMessage(f"{what} without {', '.join(missing)}")


def handle_message(webhooks: WebhookService, body: str) -> str:
    """Do what one queue message asks; returns what it was ("event" or "delivery") for the metrics.

    Raises PoisonMessage for a body that is neither kind, and DependencyUnavailable when the table or a
    queue is down (the record is then retried after the visibility timeout)."""
    message = parse_message(body)
    if isinstance(message, EventMessage):
        webhooks.fan_out(message.event)
        return "event"
    webhooks.attempt_by_id(message.tenant_id, message.webhook_id, message.delivery_id)
    return "delivery"
