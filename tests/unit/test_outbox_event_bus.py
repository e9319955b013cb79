"""OutboxEventBus: an event the bus refuses is held, not lost, and goes out later unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from ragline.errors import DependencyUnavailable
from ragline.events import OutboxEventBus, Redelivery


class Bus:
    def __init__(self) -> None:
        self.down = False
        self.published: list[dict[str, Any]] = []

    def publish_event(self, event: dict[str, Any]) -> None:
        if self.down:
            raise DependencyUnavailable("SNS answered 503")
        self.published.append(event)


class Outbox:
    """In memory, in the DynamoDB outbox's order (created_at, then id)."""

    def __init__(self) -> None:
        self.down = False
        self.release_down = False
        self.items: dict[str, dict[str, Any]] = {}

    def _check(self) -> None:
        if self.down:
            raise DependencyUnavailable("DynamoDB answered 503")

    def hold_event(self, event: dict[str, Any]) -> None:
        self._check()
        self.items[f"{event['created_at']}#{event['id']}"] = event

    def held_events(self, limit: int) -> list[dict[str, Any]]:
        self._check()
        return [self.items[key] for key in sorted(self.items)][:limit]

    def release_event(self, event: dict[str, Any]) -> None:
        if self.release_down:
            raise DependencyUnavailable("DynamoDB answered 503")
        self.items.pop(f"{event['created_at']}#{event['id']}")


@pytest.fixture
def parts() -> tuple[Bus, Outbox, OutboxEventBus]:
    bus, outbox = Bus(), Outbox()
    return bus, outbox, OutboxEventBus(bus, outbox)


def test_published_straight_through_when_the_bus_is_up(parts) -> None:
    bus, outbox, events = parts
    events.publish("document.indexed", "t1", {"document_id": "doc_1"})
    assert [(e["type"], e["tenant_id"], e["data"]) for e in bus.published] == [
        ("document.indexed", "t1", {"document_id": "doc_1"})
    ]
    assert outbox.items == {}


def test_a_refused_event_is_held_and_the_caller_carries_on(parts) -> None:
    bus, outbox, events = parts
    bus.down = True
    events.publish("document.uploaded", "t1", {"document_id": "doc_1"})  # no exception: the upload stands
    assert bus.published == [] and [e["type"] for e in outbox.items.values()] == ["document.uploaded"]


def test_with_the_outbox_down_too_the_caller_hears_of_it(parts) -> None:
    bus, outbox, events = parts
    bus.down = outbox.down = True
    with pytest.raises(DependencyUnavailable, match="DynamoDB"):
        events.publish("document.indexed", "t1", {})


def test_redelivery_sends_held_events_oldest_first_unchanged(parts) -> None:
    bus, outbox, events = parts
    bus.down = True
    for number in range(3):
        events.publish("document.indexed", "t1", {"n": number})
    held = sorted(outbox.items.values(), key=lambda e: (e["created_at"], e["id"]))
    bus.down = False
    assert events.redeliver() == Redelivery(sent=3, still_down=None)
    assert bus.published == held  # same ids and times: subscribers can drop repeats by id
    assert outbox.items == {}


def test_redelivery_stops_at_the_first_refusal_and_counts_what_went(parts) -> None:
    bus, outbox, events = parts
    bus.down = True
    for number in range(3):
        events.publish("chat.completed", "t1", {"n": number})
    bus.down = False
    assert events.redeliver(limit=2) == Redelivery(sent=2, still_down=None)
    bus.down = True
    run = events.redeliver()
    assert run.sent == 0 and "503" in (run.still_down or "")
    assert len(outbox.items) == 1


def test_an_event_published_but_not_released_goes_out_again_with_its_id(parts) -> None:
    bus, outbox, events = parts
    bus.down = True
    events.publish("document.deleted", "t1", {"document_id": "doc_9"})
    bus.down, outbox.release_down = False, True
    assert events.redeliver().still_down is not None
    outbox.release_down = False
    assert events.redeliver() == Redelivery(sent=1, still_down=None)
    first, second = bus.published
    assert first == second  # at least once, never a different id
