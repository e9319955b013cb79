"""The local backend's webhook dispatcher: a thread in `ragline serve` that hands due deliveries to a
pool of sender threads.

Deliveries wait in SQLite (``DueDeliveries``), not in memory, so a restart or a SIGKILL loses none: the
next start picks up whatever is pending (an attempt cut short by the kill is made again, with the same
``webhook-id``). At most ``per_webhook`` attempts to one endpoint run at once, so a slow or dead endpoint
holds two sender threads at most and never delays the others' deliveries.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from ragline.models import utcnow
from ragline.ports import DueDeliveries
from ragline.webhooks.models import WebhookDelivery
from ragline.webhooks.service import WebhookService

log = logging.getLogger("ragline.webhooks")

# How long a delivery whose attempt crashed waits before it is tried again (not a hot loop on a bug).
CRASHED_COOLDOWN_SECONDS = 60.0
PRUNE_EVERY_SECONDS = 3600.0


class LocalDeliveryScheduler:
    """DeliveryScheduler of the local backend: the delivery is already pending in SQLite with its time,
    so scheduling only wakes the dispatcher to look again."""

    def __init__(self) -> None:
        self._wake = threading.Event()

    def schedule(self, delivery: WebhookDelivery, delay_seconds: float) -> None:
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def wait(self, timeout: float) -> None:
        self._wake.wait(timeout)
        self._wake.clear()


class LocalWebhookDispatcher:
    def __init__(
        self,
        service: WebhookService,
        due: DueDeliveries,
        scheduler: LocalDeliveryScheduler,
        *,
        threads: int = 16,
        per_webhook: int = 2,
        retention_days: int = 30,
        poll_seconds: float = 1.0,
    ) -> None:
        self.service = service
        self.due = due
        self.scheduler = scheduler
        self.threads = threads
        self.per_webhook = per_webhook
        self.retention = timedelta(days=retention_days)
        self.poll_seconds = poll_seconds
        self._work: queue.Queue[WebhookDelivery | None] = queue.Queue()
        self._lock = threading.Lock()
        self._in_flight: dict[str, str] = {}  # delivery id → webhook id
        self._cooling: dict[str, float] = {}  # delivery id → monotonic time it may be tried again
        self._stopping = threading.Event()
        self._workers: list[threading.Thread] = []
        self._loop: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        # Daemon threads: an attempt hanging on a dead endpoint must not hold up the server's exit.
        self._workers = [
            threading.Thread(target=self._send_loop, name=f"webhook-sender-{n}", daemon=True)
            for n in range(self.threads)
        ]
        for worker in self._workers:
            worker.start()
        self._loop = threading.Thread(target=self._dispatch_loop, name="webhook-dispatcher", daemon=True)
        self._loop.start()

    def stop(self) -> None:
        self._stopping.set()
        self.scheduler.wake()
        if self._loop is not None:
            self._loop.join(timeout=5)
        for _ in self._workers:
            self._work.put(None)
        # Senders finish their attempt (at most the timeout); whatever is cut short is pending in SQLite.
        deadline = time.monotonic() + 2
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))

    # ---- the dispatcher thread ------------------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        next_prune = 0.0
        while not self._stopping.is_set():
            if time.monotonic() >= next_prune:
                self._prune()
                next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
            try:
                self._dispatch_due()
                sleep = self._sleep_seconds()
            except Exception:  # noqa: BLE001 - the loop must outlive a locked database; logged, retried next poll
                log.exception("webhook dispatcher could not read due deliveries")
                sleep = self.poll_seconds
            # A sender finishing, a new event or a retry being scheduled wakes the loop sooner.
            self.scheduler.wait(sleep)

    def _dispatch_due(self) -> None:
        now_mono = time.monotonic()
        with self._lock:
            in_flight = dict(self._in_flight)
            self._cooling = {d: t for d, t in self._cooling.items() if t > now_mono}
            cooling = list(self._cooling)
        free = self.threads - len(in_flight)
        if free <= 0:
            return
        per_endpoint = Counter(in_flight.values())
        busy = [webhook for webhook, n in per_endpoint.items() if n >= self.per_webhook]
        due = self.due.due_deliveries(
            utcnow(),
            limit=free,
            per_webhook=self.per_webhook,
            skip_webhooks=busy,
            skip_ids=[*in_flight, *cooling],
        )
        with self._lock:
            for delivery in due:
                if per_endpoint[delivery.webhook_id] >= self.per_webhook:
                    continue
                per_endpoint[delivery.webhook_id] += 1
                self._in_flight[delivery.id] = delivery.webhook_id
                self._work.put(delivery)

    def _sleep_seconds(self) -> float:
        """Until the next pending delivery falls due, at most ``poll_seconds``."""
        next_due = self.due.next_due_at()
        if next_due is None:
            return self.poll_seconds
        wait = (datetime.fromisoformat(next_due.replace("Z", "+00:00")) - datetime.now(UTC)).total_seconds()
        return self.poll_seconds if wait <= 0 else min(wait, self.poll_seconds)

    def _prune(self) -> None:
        cutoff = (datetime.now(UTC) - self.retention).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        try:
            pruned = self.due.prune_deliveries(cutoff)
        except Exception:  # noqa: BLE001 - pruning is housekeeping: logged, tried again in an hour
            log.exception("webhook delivery log could not be pruned")
            return
        if pruned:
            log.info("webhook delivery log: %d deliveries older than %s removed", pruned, cutoff)

    # ---- the sender threads ---------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while True:
            delivery = self._work.get()
            if delivery is None:
                return
            try:
                self.service.attempt(delivery)
            except Exception:  # noqa: BLE001 - a bug or an outage in one attempt must not kill the sender
                log.exception(
                    "webhook delivery %s could not be attempted; again in %ss", delivery.id, CRASHED_COOLDOWN_SECONDS
                )
                with self._lock:
                    self._cooling[delivery.id] = time.monotonic() + CRASHED_COOLDOWN_SECONDS
            finally:
                with self._lock:
                    self._in_flight.pop(delivery.id, None)
                self.scheduler.wake()
