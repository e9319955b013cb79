"""In-process event bus: subscribers are called synchronously; without any, events are logged."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ragline.events import event_envelope

log = logging.getLogger("ragline.events")

Subscriber = Callable[[dict[str, Any]], None]


class InProcessEventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.append(subscriber)

    def publish(self, event_type: str, tenant_id: str, data: dict[str, Any]) -> None:
        event = event_envelope(event_type, tenant_id, data)
        log.info("event %s tenant=%s %s", event_type, tenant_id, data)
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber(event)
