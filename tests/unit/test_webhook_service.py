"""WebhookService on the real SQLite store, with a scripted sender, a recording scheduler and bus.

What the service decides: who gets an event, what a delivery's body is, how an attempt's outcome moves
the delivery (retry, success, failure), when an endpoint is disabled and who is told.
"""

from __future__ import annotations

import json
import random
from collections import deque
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from ragline.adapters.local.sqlite_webhooks import SqliteWebhookStore
from ragline.errors import BadRequest, Conflict, NotFound
from ragline.events import event_envelope
from ragline.models import utcnow
from ragline.webhooks.models import AttemptOutcome, DeliveryStatus, WebhookDelivery
from ragline.webhooks.service import MAX_BODY_BYTES, MAX_WEBHOOKS_PER_TENANT, WebhookPolicy, WebhookService, event_body

PUBLIC = "93.184.216.34"


class PublicResolver:
    """Every name resolves to one public address (no network in unit tests)."""

    def __init__(self, address: str = PUBLIC) -> None:
        self.address = address

    def resolve(self, host: str, port: int) -> list[str]:
        return [self.address]


class ScriptedSender:
    def __init__(self) -> None:
        self.script: deque[AttemptOutcome] = deque()
        self.sent: list[tuple[str, dict[str, str], bytes]] = []

    def answer(self, *statuses: int | str, retry_after: float | None = None) -> None:
        for status in statuses:
            if isinstance(status, int):
                self.script.append(AttemptOutcome(status, None, 3.0, "body", retry_after))
            else:
                self.script.append(AttemptOutcome(None, status, 15000.0, "", None))

    def send(self, url: str, headers: dict[str, str], body: bytes) -> AttemptOutcome:
        self.sent.append((url, headers, body))
        return self.script.popleft() if self.script else AttemptOutcome(204, None, 1.0, "", None)


class RecordingScheduler:
    def __init__(self) -> None:
        self.scheduled: list[tuple[str, float]] = []

    def schedule(self, delivery: WebhookDelivery, delay_seconds: float) -> None:
        self.scheduled.append((delivery.id, delay_seconds))


class RecordingBus:
    def __init__(self) -> None:
        self.published: list[tuple[str, str, dict[str, Any]]] = []

    def publish(self, event_type: str, tenant_id: str, data: dict[str, Any]) -> None:
        self.published.append((event_type, tenant_id, data))


@pytest.fixture
def world(tmp_path: Path):
    sender, scheduler, bus = ScriptedSender(), RecordingScheduler(), RecordingBus()
    store = SqliteWebhookStore(tmp_path / "webhooks.db")
    service = WebhookService(
        WebhookPolicy(retry_seconds=(0, 5, 300), allow_private_targets=False, disable_after_failed_events=3),
        store,
        sender,
        scheduler,
        bus,
        PublicResolver(),
        rng=random.Random(7),
    )
    return service, store, sender, scheduler, bus


def _event(event_type: str = "document.indexed", tenant: str = "t1", **data: Any) -> dict[str, Any]:
    return event_envelope(event_type, tenant, data or {"document_id": "doc_1", "chunk_count": 3})


def _due(delivery: WebhookDelivery) -> WebhookDelivery:
    """The delivery as it is once its retry time has come."""
    return delivery.model_copy(update={"next_attempt_at": utcnow()})


def _only_delivery(store: SqliteWebhookStore, tenant: str, webhook_id: str) -> WebhookDelivery:
    page, _ = store.list_deliveries(tenant, webhook_id, status=None, limit=10, cursor=None)
    assert len(page) == 1
    return page[0]


# ---- registration --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://example.com/hook", "https"),
        ("https://127.0.0.1/hook", "loopback"),
        ("https://10.0.0.5/hook", "private"),
        ("https://169.254.169.254/latest", "metadata"),
        ("ftp://example.com/", "https"),
        ("https://example.com/" + "a" * 2100, "2048"),
    ],
)
def test_refused_urls_are_a_400_with_the_reason(world, url: str, reason: str) -> None:
    service = world[0]
    with pytest.raises(BadRequest) as refused:
        service.create("t1", url, ["*"], None, True)
    assert reason in refused.value.message


def test_a_name_resolving_to_a_private_address_is_refused(world) -> None:
    service = world[0]
    service.resolver = PublicResolver("192.168.1.20")
    with pytest.raises(BadRequest, match="192.168.1.20"):
        service.create("t1", "https://hooks.example.com/x", ["*"], None, True)


def test_create_returns_a_standard_webhooks_secret_shown_only_there(world) -> None:
    service, store = world[0], world[1]
    endpoint, secret = service.create("t1", "https://hooks.example.com/x", ["document.indexed"], "crm", True)
    assert secret.startswith("whsec_") and len(secret) > 40
    assert "secret" not in json.dumps(endpoint.public()) and secret not in json.dumps(endpoint.public())
    assert store.get_webhook("t1", endpoint.id).secrets[0].value == secret


def test_a_tenant_has_a_bounded_number_of_endpoints(world) -> None:
    service = world[0]
    for _ in range(MAX_WEBHOOKS_PER_TENANT):
        service.create("t1", "https://hooks.example.com/x", ["*"], None, True)
    with pytest.raises(Conflict):
        service.create("t1", "https://hooks.example.com/x", ["*"], None, True)
    service.create("t2", "https://hooks.example.com/x", ["*"], None, True)  # another tenant's count


def test_another_tenants_endpoint_is_not_found_on_every_operation(world) -> None:
    service = world[0]
    endpoint, _ = service.create("t1", "https://hooks.example.com/x", ["*"], None, True)
    for call in (
        lambda: service.get("t2", endpoint.id),
        lambda: service.update("t2", endpoint.id, {"active": False}),
        lambda: service.delete("t2", endpoint.id),
        lambda: service.rotate_secret("t2", endpoint.id, 1),
        lambda: service.send_test("t2", endpoint.id),
        lambda: service.deliveries("t2", endpoint.id, status=None, limit=10, cursor=None),
    ):
        with pytest.raises(NotFound):
            call()
    assert service.list("t2") == []
    assert service.get("t1", endpoint.id).active


# ---- fan-out -------------------------------------------------------------------------------------
def test_an_event_goes_to_the_active_endpoints_of_its_tenant_that_want_it(world) -> None:
    service, store, _, scheduler, _ = world
    wants_all, _ = service.create("t1", "https://a.example.com/", ["*"], None, True)
    wants_indexed, _ = service.create("t1", "https://b.example.com/", ["document.indexed"], None, True)
    service.create("t1", "https://c.example.com/", ["document.deleted"], None, True)
    service.create("t1", "https://d.example.com/", ["*"], None, False)  # paused
    service.create("t2", "https://e.example.com/", ["*"], None, True)  # another tenant

    added = service.fan_out(_event())
    assert sorted(d.webhook_id for d in added) == sorted([wants_all.id, wants_indexed.id])
    assert sorted(s[0] for s in scheduler.scheduled) == sorted(d.id for d in added)
    assert all(delay == 0 for _, delay in scheduler.scheduled)


def test_the_same_event_twice_adds_no_second_delivery(world) -> None:
    service, _, _, scheduler, _ = world
    service.create("t1", "https://a.example.com/", ["*"], None, True)
    event = _event()
    (delivery,) = service.fan_out(event)
    service.attempt(delivery)
    assert service.fan_out(dict(event)) == []
    assert len(scheduler.scheduled) == 1  # attempted already: not scheduled again


def test_a_repeated_event_schedules_again_what_was_never_attempted(world) -> None:
    """Deployed, a fan-out that stored its deliveries but died before queueing them comes back as the
    same message: the deliveries must not stay pending forever."""
    service, store, _, scheduler, _ = world
    endpoint, _ = service.create("t1", "https://a.example.com/", ["*"], None, True)
    event = _event()
    (delivery,) = service.fan_out(event)
    scheduler.scheduled.clear()  # as if the queue had refused the message
    assert service.fan_out(dict(event)) == []
    assert scheduler.scheduled == [(delivery.id, 0)]
    assert len(store.list_deliveries("t1", endpoint.id, status=None, limit=10, cursor=None)[0]) == 1


def test_the_log_keeps_the_latest_attempts_only(world) -> None:
    service, store, sender, _, _ = world
    service.policy = WebhookPolicy(retry_seconds=(0,), allow_private_targets=False, disable_after_failed_events=99)
    endpoint, _ = service.create("t1", "https://a.example.com/", ["*"], None, True)
    (delivery,) = service.fan_out(_event())
    for _ in range(40):
        sender.answer(500)
        service.attempt(service.redeliver("t1", endpoint.id, delivery.id))
    stored = _only_delivery(store, "t1", endpoint.id)
    assert len(stored.attempts) == 30


def test_the_body_is_the_standard_envelope_and_thin(world) -> None:
    event = _event("error.ingestion", error="x" * 100_000, document_id="doc_9")
    body = event_body(event)
    assert len(body.encode()) <= MAX_BODY_BYTES
    parsed = json.loads(body)
    assert set(parsed) == {"id", "type", "timestamp", "tenant_id", "data"}
    assert parsed["id"] == event["id"] and parsed["timestamp"] == event["created_at"]
    assert parsed["data"]["document_id"] == "doc_9" and parsed["data"]["error"].startswith("xxx")
    small = _event()
    assert json.loads(event_body(small))["data"] == small["data"]  # untouched when it fits


# ---- attempts ------------------------------------------------------------------------------------
def test_a_successful_attempt_is_signed_with_the_event_id_and_verifies(world) -> None:
    service, store, sender, _, _ = world
    endpoint, secret = service.create("t1", "https://a.example.com/", ["*"], None, True)
    event = _event()
    (delivery,) = service.fan_out(event)
    service.attempt(delivery)
    url, headers, body = sender.sent[0]
    assert url == "https://a.example.com/" and headers["webhook-id"] == event["id"]
    assert Webhook(secret).verify(body, headers)["type"] == "document.indexed"
    stored = _only_delivery(store, "t1", endpoint.id)
    assert stored.status is DeliveryStatus.SUCCEEDED and stored.next_attempt_at is None
    assert stored.attempts[0].status_code == 204


def test_a_failed_attempt_is_retried_on_the_schedule_then_fails(world) -> None:
    service, store, sender, scheduler, _ = world
    endpoint, _ = service.create("t1", "https://a.example.com/", ["*"], None, True)
    (delivery,) = service.fan_out(_event())
    sender.answer(500, "timeout", 302)
    for _ in range(3):
        service.attempt(_due(_only_delivery(store, "t1", endpoint.id)))
    delays = [delay for _, delay in scheduler.scheduled[1:]]
    assert 4 <= delays[0] <= 6 and 240 <= delays[1] <= 360  # 5 s and 5 min, ±20 %
    stored = _only_delivery(store, "t1", endpoint.id)
    assert stored.status is DeliveryStatus.FAILED
    assert [a.status_code or a.error for a in stored.attempts] == [500, "timeout", 302]
    assert len({headers["webhook-id"] for _, headers, _ in sender.sent}) == 1
    assert store.get_webhook("t1", endpoint.id).failed_events == 1


def test_a_due_check_sends_nothing_early(world) -> None:
    service, store, sender, scheduler, _ = world
    endpoint, _ = service.create("t1", "https://a.example.com/", ["*"], None, True)
    (delivery,) = service.fan_out(_event())
    sender.answer(500)
    service.attempt(delivery)
    early = _only_delivery(store, "t1", endpoint.id)
    service.attempt(early)  # e.g. a queue message that came before the retry's time
    assert len(sender.sent) == 1
    assert scheduler.scheduled[-1][1] > 0


def test_retry_after_is_honoured_when_longer_than_the_schedule(world) -> None:
    service, store, sender, scheduler, _ = world
    service.create("t1", "https://a.example.com/", ["*"], None, True)
    (delivery,) = service.fan_out(_event())
    sender.answer(429, retry_after=120)
    service.attempt(delivery)
    assert scheduler.scheduled[-1][1] == 120


def test_410_disables_the_endpoint_and_tells_the_tenants_other_endpoints(world) -> None:
    service, store, sender, _, bus = world
    endpoint, _ = service.create("t1", "https://a.example.com/", ["*"], None, True)
    (delivery,) = service.fan_out(_event())
    sender.answer(410)
    service.attempt(delivery)
    disabled = store.get_webhook("t1", endpoint.id)
    assert not disabled.active and disabled.disabled_reason == "410 Gone"
    assert bus.published == [
        ("webhook.disabled", "t1", {"webhook_id": endpoint.id, "url": endpoint.url, "reason": "410 Gone"})
    ]
    assert _only_delivery(store, "t1", endpoint.id).status is DeliveryStatus.FAILED


def test_n_consecutive_failed_events_disable_once_and_a_success_resets_the_run(world) -> None:
    service, store, sender, _, bus = world
    service.policy = WebhookPolicy(retry_seconds=(0,), allow_private_targets=False, disable_after_failed_events=3)
    endpoint, _ = service.create("t1", "https://a.example.com/", ["*"], None, True)

    def one_event(outcome: int) -> None:
        sender.answer(outcome)
        for delivery in service.fan_out(_event()):
            service.attempt(delivery)

    one_event(500)
    one_event(500)
    one_event(200)  # the run ends
    assert store.get_webhook("t1", endpoint.id).failed_events == 0
    for _ in range(3):
        one_event(500)
    disabled = store.get_webhook("t1", endpoint.id)
    assert not disabled.active and disabled.disabled_reason == "3 consecutive events failed"
    assert [p[0] for p in bus.published] == ["webhook.disabled"]
    assert service.fan_out(_event()) == []  # a disabled endpoint gets no new deliveries

    reenabled = service.update("t1", endpoint.id, {"active": True})
    assert reenabled.active and reenabled.disabled_reason is None
    assert store.get_webhook("t1", endpoint.id).failed_events == 0


def test_pending_deliveries_of_a_disabled_endpoint_are_not_sent(world) -> None:
    service, store, sender, _, _ = world
    endpoint, _ = service.create("t1", "https://a.example.com/", ["*"], None, True)
    (delivery,) = service.fan_out(_event())
    service.update("t1", endpoint.id, {"active": False})
    service.attempt(delivery)
    assert sender.sent == []
    stored = _only_delivery(store, "t1", endpoint.id)
    assert stored.status is DeliveryStatus.FAILED and "disabled" in stored.attempts[0].error


def test_a_test_event_reaches_only_that_endpoint_even_if_paused_or_not_subscribed(world) -> None:
    service, store, sender, _, _ = world
    endpoint, secret = service.create("t1", "https://a.example.com/", ["document.deleted"], None, False)
    other, _ = service.create("t1", "https://b.example.com/", ["*"], None, True)
    delivery = service.send_test("t1", endpoint.id)
    service.attempt(delivery)
    (url, headers, body) = sender.sent[0]
    assert url == endpoint.url and Webhook(secret).verify(body, headers)["type"] == "webhook.test"
    assert store.list_deliveries("t1", other.id, status=None, limit=5, cursor=None)[0] == []


def test_redelivery_sends_the_same_webhook_id_again_with_a_fresh_schedule(world) -> None:
    service, store, sender, _, _ = world
    service.policy = WebhookPolicy(retry_seconds=(0,), allow_private_targets=False, disable_after_failed_events=3)
    endpoint, secret = service.create("t1", "https://a.example.com/", ["*"], None, True)
    (delivery,) = service.fan_out(_event())
    sender.answer(500)
    service.attempt(delivery)
    assert _only_delivery(store, "t1", endpoint.id).status is DeliveryStatus.FAILED

    again = service.redeliver("t1", endpoint.id, delivery.id)
    assert again.status is DeliveryStatus.PENDING
    service.attempt(again)
    first, second = sender.sent
    assert first[1]["webhook-id"] == second[1]["webhook-id"] == delivery.event_id
    stored = _only_delivery(store, "t1", endpoint.id)
    assert stored.status is DeliveryStatus.SUCCEEDED and len(stored.attempts) == 2
    with pytest.raises(NotFound):
        service.redeliver("t1", endpoint.id, "dlv_unknown")
    with pytest.raises(NotFound):
        service.redeliver("t2", endpoint.id, delivery.id)


def test_rotation_signs_with_both_secrets_during_the_grace_period_only(world) -> None:
    service, store, sender, _, _ = world
    endpoint, old = service.create("t1", "https://a.example.com/", ["*"], None, True)
    new = service.rotate_secret("t1", endpoint.id, 24)
    assert new != old
    for delivery in service.fan_out(_event()):
        service.attempt(delivery)
    _, headers, body = sender.sent[-1]
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify(body, headers) and Webhook(new).verify(body, headers)

    newest = service.rotate_secret("t1", endpoint.id, 0)  # no grace: only the newest signs
    for delivery in service.fan_out(_event()):
        service.attempt(delivery)
    _, headers, body = sender.sent[-1]
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2  # the newest, and `new` still inside its own grace period
    assert Webhook(newest).verify(body, headers)
    assert len(store.get_webhook("t1", endpoint.id).secrets) <= 3


def test_a_deleted_endpoint_takes_its_deliveries_with_it(world) -> None:
    service, store, sender, _, _ = world
    endpoint, _ = service.create("t1", "https://a.example.com/", ["*"], None, True)
    (delivery,) = service.fan_out(_event())
    service.delete("t1", endpoint.id)
    assert service.attempt(delivery) is None
    assert sender.sent == []
    with pytest.raises(NotFound):
        service.delete("t1", endpoint.id)
