"""WebhookStore: SqliteWebhookStore and DynamoWebhookStore (moto) behave alike — endpoints per tenant,
atomic counters, disabling once, idempotent deliveries, the log newest first with a cursor."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from ragline.adapters.aws.clients import client
from ragline.adapters.aws.dynamodb.table import TTL_ATTRIBUTE, table_definitions, time_to_live
from ragline.adapters.aws.dynamodb.webhooks import DynamoWebhookStore, delivery_key
from ragline.adapters.local.sqlite_webhooks import SqliteWebhookStore
from ragline.errors import DependencyUnavailable, NotFound
from ragline.models import new_id
from ragline.ports import WebhookStore
from ragline.webhooks.models import (
    DeliveryAttempt,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSecret,
    delivery_id,
)
from tests.contract.conftest import TWINS

TABLE = "ragline-webhooks-test"


def make_dynamo_store(retention_days: int = 30) -> DynamoWebhookStore:
    dynamodb = client("dynamodb")
    for definition in table_definitions(TABLE):
        dynamodb.create_table(**definition)
    dynamodb.update_time_to_live(TableName=TABLE, TimeToLiveSpecification=time_to_live())
    return DynamoWebhookStore(TABLE, retention_days=retention_days)


@pytest.fixture(params=TWINS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> WebhookStore:
    if request.param == "local":
        return SqliteWebhookStore(tmp_path / "webhooks.db")
    request.getfixturevalue("aws")
    return make_dynamo_store()


def endpoint(tenant: str = "t1", url: str = "https://hooks.example.com/in", **fields: Any) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=new_id("wh"),
        tenant_id=tenant,
        url=url,
        events=["document.indexed", "error.ingestion"],
        description="Café ☕ receiver",
        secrets=[WebhookSecret(value="whsec_c2VjcmV0")],
        **fields,
    )


_T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def delivery(hook: WebhookEndpoint, n: int, status: DeliveryStatus = DeliveryStatus.PENDING) -> WebhookDelivery:
    """The n-th event's delivery to ``hook``: a later n is a later (greater) id."""
    created = (_T0 + timedelta(seconds=n)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    event_id = f"evt_{n:04d}"
    return WebhookDelivery(
        id=delivery_id(event_id, created, hook.id),
        tenant_id=hook.tenant_id,
        webhook_id=hook.id,
        event_id=event_id,
        event_type="document.indexed",
        body=f'{{"id":"{event_id}","n":{n}}}',
        status=status,
        next_attempt_at=created if status is DeliveryStatus.PENDING else None,
        created_at=created,
        updated_at=created,
    )


def all_pages(store: WebhookStore, hook: WebhookEndpoint, limit: int, status: DeliveryStatus | None = None) -> list:
    pages, cursor = [], None
    while True:
        page, cursor = store.list_deliveries(hook.tenant_id, hook.id, status=status, limit=limit, cursor=cursor)
        pages.append([d.id for d in page])
        if cursor is None:
            return pages
        assert len(pages) < 50


# ---- endpoints ---------------------------------------------------------------------------------------
def test_endpoints_round_trip_list_oldest_first_save_and_delete(store: WebhookStore) -> None:
    first = endpoint()
    time.sleep(0.002)  # ids are time-ordered by the millisecond
    second = endpoint(url="https://other.example.com/hook", active=False, disabled_reason="paused")
    store.create_webhook(first)
    store.create_webhook(second)
    assert store.get_webhook("t1", first.id) == first
    assert store.get_webhook("t1", second.id) == second
    assert [e.id for e in store.list_webhooks("t1")] == [first.id, second.id]

    first.url, first.events, first.description = "https://new.example.com/x", ["*"], None
    first.secrets = [WebhookSecret(value="whsec_bmV3"), WebhookSecret(value="whsec_b2xk", expires_at="2026-12-01Z")]
    store.save_webhook(first)
    assert store.get_webhook("t1", first.id) == first

    assert store.delete_webhook("t1", first.id) is True
    assert store.get_webhook("t1", first.id) is None
    assert store.delete_webhook("t1", first.id) is False
    assert [e.id for e in store.list_webhooks("t1")] == [second.id]
    with pytest.raises(NotFound):
        store.save_webhook(first)  # deleted meanwhile: not brought back
    assert store.get_webhook("t1", first.id) is None


def test_another_tenants_endpoints_and_deliveries_are_absent(store: WebhookStore) -> None:
    mine = endpoint("t1")
    store.create_webhook(mine)
    store.add_deliveries([delivery(mine, 1)])
    assert store.get_webhook("t2", mine.id) is None
    assert store.list_webhooks("t2") == []
    assert store.delete_webhook("t2", mine.id) is False
    assert store.count_event_outcome("t2", mine.id, failed=True) == 0
    assert store.disable_webhook("t2", mine.id, "not yours") is None
    assert store.get_delivery("t2", mine.id, delivery(mine, 1).id) is None
    assert store.list_deliveries("t2", mine.id, status=None, limit=10, cursor=None) == ([], None)
    # …and nothing of the owner's changed.
    assert store.get_webhook("t1", mine.id) == mine
    assert store.get_delivery("t1", mine.id, delivery(mine, 1).id) == delivery(mine, 1)


def test_failed_events_count_up_atomically_and_a_success_resets_them(store: WebhookStore) -> None:
    hook = endpoint()
    store.create_webhook(hook)
    assert [store.count_event_outcome("t1", hook.id, failed=True) for _ in range(3)] == [1, 2, 3]
    assert store.get_webhook("t1", hook.id).failed_events == 3
    assert store.count_event_outcome("t1", hook.id, failed=False) == 0
    assert store.get_webhook("t1", hook.id).failed_events == 0
    assert store.count_event_outcome("t1", "wh_missing", failed=True) == 0

    with ThreadPoolExecutor(max_workers=8) as pool:
        counts = list(pool.map(lambda _: store.count_event_outcome("t1", hook.id, failed=True), range(16)))
    assert sorted(counts) == list(range(1, 17))  # none lost, none counted twice
    assert store.get_webhook("t1", hook.id).failed_events == 16
    # A settings save keeps the endpoint's own fields as given (the service resets the run on re-enable).
    current = store.get_webhook("t1", hook.id)
    current.failed_events = 0
    store.save_webhook(current)
    assert store.count_event_outcome("t1", hook.id, failed=True) == 1


def test_only_one_of_concurrent_callers_disables_an_endpoint(store: WebhookStore) -> None:
    hook = endpoint()
    store.create_webhook(hook)
    start = threading.Barrier(8)

    def disable(n: int) -> WebhookEndpoint | None:
        start.wait()
        return store.disable_webhook("t1", hook.id, f"reason {n}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(disable, range(8)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    (winner,) = winners
    assert winner.active is False and winner.disabled_reason.startswith("reason ")
    stored = store.get_webhook("t1", hook.id)
    assert stored.active is False and stored.disabled_reason == winner.disabled_reason
    assert stored.secrets == hook.secrets and stored.url == hook.url  # the rest untouched
    assert store.disable_webhook("t1", hook.id, "again") is None
    assert store.disable_webhook("t1", "wh_missing", "gone") is None
    # Re-enabled (a save), it can be disabled again.
    stored.active, stored.disabled_reason = True, None
    store.save_webhook(stored)
    assert store.disable_webhook("t1", hook.id, "410 Gone").disabled_reason == "410 Gone"


# ---- deliveries --------------------------------------------------------------------------------------
def test_adding_deliveries_is_idempotent_by_id(store: WebhookStore) -> None:
    hook = endpoint()
    store.create_webhook(hook)
    a, b, c = delivery(hook, 1), delivery(hook, 2), delivery(hook, 3)
    assert store.add_deliveries([a, b]) == [a, b]
    changed_a = a.model_copy(update={"status": DeliveryStatus.FAILED, "body": "{}"})
    assert store.add_deliveries([changed_a, c]) == [c]  # a's id exists: left as it is
    assert store.get_delivery("t1", hook.id, a.id) == a
    assert store.add_deliveries([]) == []
    assert store.add_deliveries([a, b, c]) == []


def test_saving_a_delivery_records_its_attempts_but_never_revives_a_deleted_one(store: WebhookStore) -> None:
    hook = endpoint()
    store.create_webhook(hook)
    d = delivery(hook, 1)
    store.add_deliveries([d])
    d.attempts.append(
        DeliveryAttempt(at="2026-11-22T10:00:01.000Z", status_code=500, latency_ms=12.5, response_body="é")
    )
    d.attempts.append(DeliveryAttempt(at="2026-11-22T10:00:06.000Z", error="timeout", latency_ms=15000.0))
    d.round_attempts, d.status, d.next_attempt_at = 2, DeliveryStatus.FAILED, None
    store.save_delivery(d)
    assert store.get_delivery("t1", hook.id, d.id) == d

    assert store.delete_webhook("t1", hook.id)
    assert store.get_delivery("t1", hook.id, d.id) is None
    store.save_delivery(d)  # an attempt that finished after the delete
    assert store.get_delivery("t1", hook.id, d.id) is None
    assert store.list_deliveries("t1", hook.id, status=None, limit=10, cursor=None) == ([], None)


def test_deleting_an_endpoint_removes_its_whole_log_and_no_other(store: WebhookStore) -> None:
    doomed, kept = endpoint(), endpoint()
    store.create_webhook(doomed)
    store.create_webhook(kept)
    store.add_deliveries([delivery(doomed, n) for n in range(30)] + [delivery(kept, n) for n in range(3)])
    assert store.delete_webhook("t1", doomed.id)
    assert all(store.get_delivery("t1", doomed.id, delivery(doomed, n).id) is None for n in range(30))
    assert len(store.list_deliveries("t1", kept.id, status=None, limit=10, cursor=None)[0]) == 3


@pytest.mark.parametrize("count", [7, 6, 1, 0])
def test_the_log_lists_newest_first_page_by_page(store: WebhookStore, count: int) -> None:
    hook, other = endpoint(), endpoint()
    store.create_webhook(hook)
    store.create_webhook(other)
    made = [delivery(hook, n) for n in range(count)]
    store.add_deliveries(list(reversed(made)))  # insertion order does not matter
    store.add_deliveries([delivery(other, n) for n in range(4)])  # another endpoint's log stays apart
    newest_first = [d.id for d in reversed(made)]
    pages = all_pages(store, hook, limit=3)
    assert [i for page in pages for i in page] == newest_first
    assert [len(page) for page in pages] == [len(newest_first[i : i + 3]) for i in range(0, count, 3)] or [0]
    whole, cursor = store.list_deliveries("t1", hook.id, status=None, limit=100, cursor=None)
    assert whole == list(reversed(made)) and cursor is None


def test_the_log_filters_by_status_across_pages(store: WebhookStore) -> None:
    hook = endpoint()
    store.create_webhook(hook)
    statuses = [DeliveryStatus.PENDING, DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED]
    made = [delivery(hook, n, statuses[n % 3]) for n in range(11)]
    store.add_deliveries(made)
    for status in statuses:
        expected = [d.id for d in reversed(made) if d.status is status]
        assert [i for page in all_pages(store, hook, limit=2, status=status) for i in page] == expected
    # A status change moves a delivery between the filtered lists.
    changed = made[0].model_copy(update={"status": DeliveryStatus.SUCCEEDED, "next_attempt_at": None})
    store.save_delivery(changed)
    page, _ = store.list_deliveries("t1", hook.id, status=DeliveryStatus.PENDING, limit=10, cursor=None)
    assert changed.id not in [d.id for d in page]
    page, _ = store.list_deliveries("t1", hook.id, status=DeliveryStatus.SUCCEEDED, limit=10, cursor=None)
    assert page[-1] == changed


# ---- the DynamoDB twin's own: TTL, outages -----------------------------------------------------------
def test_deliveries_carry_the_ttl_and_expired_ones_are_not_read(aws: None) -> None:
    store = make_dynamo_store(retention_days=3)
    hook = endpoint()
    store.create_webhook(hook)
    old, fresh = delivery(hook, 1), delivery(hook, 2)
    old.created_at = (datetime.now(UTC) - timedelta(days=4)).isoformat().replace("+00:00", "Z")
    fresh.created_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    store.add_deliveries([old, fresh])
    item = client("dynamodb").get_item(
        TableName=TABLE, Key={k: {"S": v} for k, v in delivery_key("t1", hook.id, fresh.id).items()}
    )
    expires = int(item["Item"][TTL_ATTRIBUTE]["N"])
    assert abs(expires - (time.time() + 3 * 86400)) < 60
    assert (
        client("dynamodb").describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]["AttributeName"]
        == TTL_ATTRIBUTE
    )
    # DynamoDB deletes expired items lazily (within days): until then they are not read.
    assert store.get_delivery("t1", hook.id, old.id) is None
    assert store.list_deliveries("t1", hook.id, status=None, limit=10, cursor=None) == ([fresh], None)


@pytest.mark.parametrize(
    ("operation", "call"),
    [
        ("get_item", lambda s: s.get_webhook("t1", "wh_1")),
        ("update_item", lambda s: s.count_event_outcome("t1", "wh_1", failed=True)),
        ("update_item", lambda s: s.disable_webhook("t1", "wh_1", "x")),
        ("put_item", lambda s: s.add_deliveries([delivery(endpoint(), 1)])),
        ("query", lambda s: s.list_deliveries("t1", "wh_1", status=None, limit=5, cursor=None)),
    ],
)
def test_throttling_and_outages_are_dependency_unavailable(
    aws: None, operation: str, call: Callable[[DynamoWebhookStore], Any]
) -> None:
    make_dynamo_store()
    stubbed = client("dynamodb")
    for code, status in (("ProvisionedThroughputExceededException", 400), ("InternalServerError", 500)):
        with Stubber(stubbed) as stubber:
            stubber.add_client_error(operation, service_error_code=code, http_status_code=status)
            with pytest.raises(DependencyUnavailable, match="DynamoDB"):
                call(DynamoWebhookStore(TABLE, client=stubbed))
