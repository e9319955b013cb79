"""The local backend's webhook dispatcher: a thread in `ragline serve` that hands due deliveries to a
pool of sender threads.

Deliveries wait in SQLite (``DueDeliveries``), not in memory, so a restart or a SIGKILL loses none: the
next start picks up whatever is pending (an attempt cut short by the kill is made again, with the same
``webhook-id``). At most ``per_webhook`` attempts to one endpoint run at once, so a slow or dead endpoint
holds two sender threads at most and never delays the others' deliveries.

The dispatcher reads due deliveries in batches, up to ``prefetch`` per endpoint, into a small buffer
per endpoint, and senders finishing an attempt hand the next buffered ones out themselves: SQLite is
read when there is news (a new event's deliveries, a retry falling due), when an endpoint's buffer
runs low, and every ``poll_seconds`` (deliveries written by another process), not once per attempt.
The buffer is only a copy of rows already pending in SQLite; losing it loses nothing.
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from collections import Counter, deque
from datetime import UTC, datetime, timedelta

from ragline.errors import DependencyUnavailable
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
    so scheduling only tells the dispatcher that something is (or will be, after a retry's delay) due."""

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._news = False
        self._timers: list[float] = []  # monotonic times at which a scheduled retry falls due

    def schedule(self, delivery: WebhookDelivery, delay_seconds: float) -> None:
        with self._lock:
            if delay_seconds <= 0:
                self._news = True
            else:
                # A millisecond late: the stored next_attempt_at (milliseconds) is then surely past.
                heapq.heappush(self._timers, time.monotonic() + delay_seconds + 0.001)
        self._wake.set()

    def take_news(self) -> bool:
        """Whether a delivery may have fallen due since the last call: a new one, or a retry's time came."""
        now = time.monotonic()
        with self._lock:
            news, self._news = self._news, False
            while self._timers and self._timers[0] <= now:
                heapq.heappop(self._timers)
                news = True
        return news

    def next_timer(self) -> float | None:
        """The monotonic time the soonest scheduled retry falls due, if any."""
        with self._lock:
            return self._timers[0] if self._timers else None

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
        prefetch: int = 32,
        retention_days: int = 30,
        poll_seconds: float = 1.0,
    ) -> None:
        self.service = service
        self.due = due
        self.scheduler = scheduler
        self.threads = threads
        self.per_webhook = per_webhook
        self.prefetch = max(prefetch, per_webhook)
        self.retention = timedelta(days=retention_days)
        self.poll_seconds = poll_seconds
        self._work: queue.Queue[WebhookDelivery | None] = queue.Queue()
        self._lock = threading.Lock()
        # All under _lock. Buffered: read from SQLite, due, not yet given to a sender (per endpoint, in
        # the order they fell due; the dict's order is the round-robin's). In flight: given to a sender.
        self._ready: dict[str, deque[WebhookDelivery]] = {}
        self._buffered: set[str] = set()
        self._in_flight: dict[str, str] = {}  # delivery id → webhook id
        self._running: Counter[str] = Counter()  # webhook id → its deliveries in flight
        self._more: set[str] = set()  # endpoints whose last read filled the window: more may be due
        self._cooling: dict[str, float] = {}  # delivery id → monotonic time it may be tried again
        self._next_read = 0.0
        self._stopping = threading.Event()
        self._workers: list[threading.Thread] = []
        self._loop: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        with self._lock:
            self._ready.clear()
            self._buffered.clear()
            self._more.clear()
            self._next_read = 0.0
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
        with self._lock:
            self._ready.clear()  # still pending in SQLite: the next start reads them again
            self._buffered.clear()
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
                news = self.scheduler.take_news()
                if news or self._should_read():
                    self._read_due()
                self._hand_out()
                sleep = self._sleep_seconds()
            except DependencyUnavailable as exc:  # a locked or unreachable database: retried next poll
                log.error("webhook dispatcher could not read due deliveries: %s", exc)
                with self._lock:
                    self._next_read = time.monotonic() + self.poll_seconds
                sleep = self.poll_seconds
            # New deliveries, a retry falling due or a buffer running low wake the loop sooner.
            self.scheduler.wait(sleep)

    def _should_read(self) -> bool:
        """The poll is due, or an endpoint with more due deliveries in SQLite has run its buffer low."""
        with self._lock:
            if time.monotonic() >= self._next_read:
                return True
            low = self.prefetch // 2
            return any(len(self._ready.get(webhook, ())) < low for webhook in self._more)

    def _read_due(self) -> None:
        """Top up the buffers from SQLite: up to ``prefetch`` due deliveries per endpoint, none already
        buffered, in flight or cooling down after a crash."""
        now_mono = time.monotonic()
        with self._lock:
            # Taken before the read: an attempt that ends after this is still excluded; one that ended
            # before it has written its outcome first, so SQLite no longer lists it as due.
            self._cooling = {d: t for d, t in self._cooling.items() if t > now_mono}
            skip_ids = [*self._in_flight, *self._buffered, *self._cooling]
            full = [webhook for webhook, ready in self._ready.items() if len(ready) >= self.prefetch // 2]
            self._next_read = now_mono + self.poll_seconds
        limit = max(1024, self.threads * self.prefetch)
        due = self.due.due_deliveries(
            utcnow(),
            limit=limit,
            per_webhook=self.prefetch,
            skip_webhooks=full,
            skip_ids=skip_ids,
        )
        read = Counter(delivery.webhook_id for delivery in due)
        with self._lock:
            for delivery in due:
                if delivery.id in self._buffered or delivery.id in self._in_flight:
                    continue
                self._ready.setdefault(delivery.webhook_id, deque()).append(delivery)
                self._buffered.add(delivery.id)
            for webhook, count in read.items():
                if count >= self.prefetch:
                    self._more.add(webhook)
                else:
                    self._more.discard(webhook)
            # Not read for lack of room: whatever fell due for them since is read once their buffer runs low.
            self._more.difference_update(w for w in list(self._more) if w not in read)
            self._more.update(full)
            if len(due) >= limit:
                self._next_read = now_mono  # the page was full: read the rest on the next turn of the loop

    def _hand_out(self) -> None:
        """Give buffered deliveries to idle senders, round-robin over the endpoints, at most
        ``per_webhook`` of one endpoint in flight."""
        if self._stopping.is_set():
            return
        with self._lock:
            free = self.threads - len(self._in_flight)
            while free > 0:
                webhook = next((w for w in self._ready if self._running[w] < self.per_webhook and self._ready[w]), None)
                if webhook is None:
                    return
                ready = self._ready.pop(webhook)  # put back at the end: the next turn is another endpoint's
                delivery = ready.popleft()
                if ready:
                    self._ready[webhook] = ready
                self._buffered.discard(delivery.id)
                self._in_flight[delivery.id] = webhook
                self._running[webhook] += 1
                self._work.put(delivery)
                free -= 1

    def _sleep_seconds(self) -> float:
        """Until the next poll or the soonest scheduled retry, whichever comes first."""
        now = time.monotonic()
        with self._lock:
            wake_at = self._next_read
        timer = self.scheduler.next_timer()
        if timer is not None:
            wake_at = min(wake_at, timer)
        return min(max(wake_at - now, 0.0), self.poll_seconds)

    def _prune(self) -> None:
        cutoff = (datetime.now(UTC) - self.retention).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        try:
            pruned = self.due.prune_deliveries(cutoff)
        except DependencyUnavailable as exc:  # housekeeping: tried again in an hour
            log.error("webhook delivery log could not be pruned: %s", exc)
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
                    webhook = self._in_flight.pop(delivery.id, None)
                    if webhook is not None:
                        self._running[webhook] -= 1
                        if self._running[webhook] <= 0:
                            del self._running[webhook]
                # The next buffered delivery goes out now, without a round trip through the dispatcher
                # thread; that thread is woken only when a buffer runs low and SQLite must be read.
                self._hand_out()
                if self._should_read():
                    self.scheduler.wake()
