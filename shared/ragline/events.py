"""Event envelopes, and an event bus that keeps what it could not publish.

Every bus hands subscribers the same envelope, ``{"id", "type", "created_at", "tenant_id",
"data"}``. ``OutboxEventBus`` wraps a bus that can be down (SNS): an event it cannot publish is
held in an outbox and published later by ``redeliver`` with its original id and time, so
delivery is at least once and a subscriber drops repeats by ``id``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from ragline.errors import DependencyUnavailable
from ragline.models import new_id, utcnow
from ragline.ports import EventOutbox

log = logging.getLogger("ragline.events")


def event_envelope(event_type: str, tenant_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": new_id("evt"), "type": event_type, "created_at": utcnow(), "tenant_id": tenant_id, "data": data}


class EnvelopePublisher(Protocol):
    def publish_event(self, event: dict[str, Any]) -> None:
        """Publish an envelope as it is; DependencyUnavailable when the bus is down."""
        ...


class OutboxEventBus:
    """EventBus that never loses an event to an outage of its bus (only to one of the outbox too)."""

    def __init__(self, bus: EnvelopePublisher, outbox: EventOutbox) -> None:
        self.bus = bus
        self.outbox = outbox

    def publish(self, event_type: str, tenant_id: str, data: dict[str, Any]) -> None:
        event = event_envelope(event_type, tenant_id, data)
        try:
            self.bus.publish_event(event)
        except DependencyUnavailable as exc:
            # With the outbox down as well, its DependencyUnavailable reaches the caller (a request
            # answers 503); only then can an event be lost (infra/README.md, "Events when SNS is down").
            self.outbox.hold_event(event)
            log.warning("event %s %s held for redelivery: %s", event["type"], event["id"], exc)

    def redeliver(self, limit: int = 500) -> Redelivery:
        """Publish held events, oldest first, up to ``limit``. Stops at the first the bus (or the
        outbox) still refuses: the rest wait for the next run. An event published but not yet
        released goes out again next time, with the same id."""
        sent = 0
        try:
            for event in self.outbox.held_events(limit):
                self.bus.publish_event(event)
                self.outbox.release_event(event)
                sent += 1
        except DependencyUnavailable as exc:
            return Redelivery(sent, str(exc))
        return Redelivery(sent, None)


@dataclass(frozen=True)
class Redelivery:
    sent: int
    still_down: str | None  # why the rest stay held, when something is still down
