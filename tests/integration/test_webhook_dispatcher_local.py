"""The local dispatcher in-process: due deliveries from SQLite, a pool of senders, at most two attempts
per endpoint at once, pruning, and a crash in one attempt that does not turn into a hot loop."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ragline.adapters.local.sqlite_webhooks import SqliteWebhookStore
from ragline.events import event_envelope
from ragline.models import utcnow
from ragline.webhooks.dispatcher import LocalDeliveryScheduler, LocalWebhookDispatcher
from ragline.webhooks.models import AttemptOutcome, DeliveryStatus, WebhookDelivery
from ragline.webhooks.service import WebhookPolicy, WebhookService


class Resolver:
    def resolve(self, host: str, port: int) -> list[str]:
        return ["93.184.216.34"]


class SlowSender:
    """Answers 204; URLs containing "slow" take ``slow_seconds``. Counts concurrent sends per URL."""

    def __init__(self, slow_seconds: float = 1.0) -> None:
        self.slow_seconds = slow_seconds
        self.lock = threading.Lock()
        self.active: dict[str, int] = {}
        self.most_at_once: dict[str, int] = {}
        self.done: list[tuple[str, float]] = []

    def send(self, url: str, headers: dict[str, str], body: bytes) -> AttemptOutcome:
        with self.lock:
            self.active[url] = self.active.get(url, 0) + 1
            self.most_at_once[url] = max(self.most_at_once.get(url, 0), self.active[url])
        time.sleep(self.slow_seconds if "slow" in url else 0.001)
        with self.lock:
            self.active[url] -= 1
            self.done.append((url, time.monotonic()))
        return AttemptOutcome(204, None, 1.0, "", None)


class Bus:
    def publish(self, event_type: str, tenant_id: str, data: dict[str, Any]) -> None:
        pass


def _world(tmp_path: Path, sender: Any) -> tuple[WebhookService, SqliteWebhookStore, LocalDeliveryScheduler]:
    store = SqliteWebhookStore(tmp_path / "webhooks.db")
    scheduler = LocalDeliveryScheduler()
    policy = WebhookPolicy(retry_seconds=(0, 0.2), allow_private_targets=False, disable_after_failed_events=5)
    return WebhookService(policy, store, sender, scheduler, Bus(), Resolver()), store, scheduler


def _wait(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_slow_endpoint_holds_two_senders_at_most_and_never_delays_the_others(tmp_path: Path) -> None:
    sender = SlowSender(slow_seconds=1.0)
    service, store, scheduler = _world(tmp_path, sender)
    service.create("t1", "https://slow.example.com/", ["*"], None, True)
    fast, _ = service.create("t1", "https://fast.example.com/", ["*"], None, True)
    dispatcher = LocalWebhookDispatcher(service, store, scheduler, threads=4, per_webhook=2)
    dispatcher.start()
    try:
        started = time.monotonic()
        for n in range(20):
            service.fan_out(event_envelope("document.indexed", "t1", {"n": n}))
        _wait(lambda: sum(1 for url, _ in sender.done if "fast" in url) == 20)
        fast_finished = max(at for url, at in sender.done if "fast" in url)
        assert fast_finished - started < 1.0  # all 20 while the slow endpoint's first two were still running
        assert sender.most_at_once["https://slow.example.com/"] == 2
        page, _ = store.list_deliveries("t1", fast.id, status=DeliveryStatus.SUCCEEDED, limit=100, cursor=None)
        assert len(page) == 20
    finally:
        dispatcher.stop()


def test_pending_deliveries_in_the_database_are_sent_when_a_dispatcher_starts(tmp_path: Path) -> None:
    sender = SlowSender()
    service, store, scheduler = _world(tmp_path, sender)
    endpoint, _ = service.create("t1", "https://fast.example.com/", ["*"], None, True)
    for n in range(5):
        service.fan_out(event_envelope("document.indexed", "t1", {"n": n}))  # no dispatcher yet
    assert sender.done == []

    # A new process: a fresh store and dispatcher on the same file.
    service2, store2, scheduler2 = _world(tmp_path, sender)
    dispatcher = LocalWebhookDispatcher(service2, store2, scheduler2, threads=2)
    dispatcher.start()
    try:
        _wait(lambda: len(sender.done) == 5)
        page, _ = store2.list_deliveries("t1", endpoint.id, status=DeliveryStatus.SUCCEEDED, limit=10, cursor=None)
        assert len(page) == 5
    finally:
        dispatcher.stop()


class CrashingSender(SlowSender):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def send(self, url: str, headers: dict[str, str], body: bytes) -> AttemptOutcome:
        self.calls += 1
        raise RuntimeError("a bug in one attempt")


def test_an_attempt_that_crashes_is_set_aside_not_retried_in_a_hot_loop(tmp_path: Path) -> None:
    sender = CrashingSender()
    service, store, scheduler = _world(tmp_path, sender)
    service.create("t1", "https://fast.example.com/", ["*"], None, True)
    dispatcher = LocalWebhookDispatcher(service, store, scheduler, threads=2, poll_seconds=0.05)
    dispatcher.start()
    try:
        service.fan_out(event_envelope("document.indexed", "t1", {}))
        _wait(lambda: sender.calls >= 1)
        time.sleep(0.5)
        assert sender.calls == 1
    finally:
        dispatcher.stop()


def test_the_due_query_gives_each_endpoint_its_share(tmp_path: Path) -> None:
    service, store, _ = _world(tmp_path, SlowSender())
    busy, _ = service.create("t1", "https://busy.example.com/", ["webhook.test"], None, True)
    quiet, _ = service.create("t1", "https://quiet.example.com/", ["webhook.test"], None, True)
    for _ in range(50):
        service.send_test("t1", busy.id)
    service.send_test("t1", quiet.id)
    due = store.due_deliveries(utcnow(), limit=10, per_webhook=2, skip_webhooks=[], skip_ids=[])
    assert sorted(d.webhook_id for d in due) == sorted([busy.id, busy.id, quiet.id])
    assert {
        d.webhook_id
        for d in store.due_deliveries(utcnow(), limit=10, per_webhook=2, skip_webhooks=[busy.id], skip_ids=[])
    } == {quiet.id}
    skipped = [d.id for d in due]
    again = store.due_deliveries(utcnow(), limit=10, per_webhook=2, skip_webhooks=[], skip_ids=skipped)
    assert not set(skipped) & {d.id for d in again}


def test_old_deliveries_are_pruned(tmp_path: Path) -> None:
    service, store, _ = _world(tmp_path, SlowSender())
    endpoint, _ = service.create("t1", "https://fast.example.com/", ["webhook.test"], None, True)
    old = service.send_test("t1", endpoint.id)
    store.save_delivery(old)
    # Backdate one delivery as if it were made 40 days ago.
    with store._write() as db:
        db.execute("UPDATE deliveries SET created_at = ? WHERE id = ?", ("2020-01-01T00:00:00.000Z", old.id))
    new = service.send_test("t1", endpoint.id)
    assert store.prune_deliveries("2021-01-01T00:00:00.000Z") == 1
    page, _ = store.list_deliveries("t1", endpoint.id, status=None, limit=10, cursor=None)
    assert [d.id for d in page] == [new.id]


@pytest.mark.parametrize("retention_days", [30])
def test_the_dispatcher_prunes_at_start(tmp_path: Path, retention_days: int) -> None:
    service, store, scheduler = _world(tmp_path, SlowSender())
    endpoint, _ = service.create("t1", "https://fast.example.com/", ["webhook.test"], None, True)
    old: WebhookDelivery = service.send_test("t1", endpoint.id)
    with store._write() as db:
        db.execute(
            "UPDATE deliveries SET created_at = ?, status = 'succeeded' WHERE id = ?",
            ("2020-01-01T00:00:00.000Z", old.id),
        )
    dispatcher = LocalWebhookDispatcher(service, store, scheduler, threads=1, retention_days=retention_days)
    dispatcher.start()
    try:
        _wait(lambda: store.get_delivery("t1", endpoint.id, old.id) is None)
    finally:
        dispatcher.stop()
