"""The DynamoDB store as the EventOutbox, on moto: its table holds events SNS refused, oldest
first, until they are released; a DynamoDB outage is DependencyUnavailable as for its other items."""

from __future__ import annotations

import pytest
from botocore.stub import Stubber

from ragline.adapters.aws.clients import client
from ragline.adapters.aws.dynamodb.store import DynamoMetadataStore
from ragline.adapters.aws.dynamodb.table import table_definitions
from ragline.errors import DependencyUnavailable
from ragline.events import event_envelope

TABLE = "ragline-outbox-test"


@pytest.fixture
def outbox(aws: None) -> DynamoMetadataStore:
    for definition in table_definitions(TABLE):
        client("dynamodb").create_table(**definition)
    return DynamoMetadataStore(TABLE)


def event(n: int, created_at: str) -> dict:
    return {**event_envelope("document.indexed", "t1", {"n": n, "title": "Café ☕"}), "created_at": created_at}


def test_held_events_come_back_oldest_first_whole(outbox: DynamoMetadataStore) -> None:
    late, early, middle = (
        event(1, "2026-11-22T10:00:02.000Z"),
        event(2, "2026-11-22T10:00:00.000Z"),
        event(3, "2026-11-22T10:00:01.000Z"),
    )
    for held in (late, early, middle):
        outbox.hold_event(held)
    assert outbox.held_events(10) == [early, middle, late]
    assert outbox.held_events(2) == [early, middle]


def test_holding_the_same_event_twice_keeps_one_and_release_forgets_it(outbox: DynamoMetadataStore) -> None:
    once = event(1, "2026-11-22T10:00:00.000Z")
    outbox.hold_event(once)
    outbox.hold_event(once)
    assert outbox.held_events(10) == [once]
    outbox.release_event(once)
    outbox.release_event(once)  # already gone: still fine
    assert outbox.held_events(10) == []


def test_held_events_do_not_touch_the_stores_items(outbox: DynamoMetadataStore) -> None:
    store = DynamoMetadataStore(TABLE)
    outbox.hold_event(event(1, "2026-11-22T10:00:00.000Z"))
    assert store.list_documents("t1", limit=10)[0] == []
    assert store.count_keys() == 0


def test_a_dynamodb_outage_is_dependency_unavailable(outbox: DynamoMetadataStore) -> None:
    stubbed = client("dynamodb")
    with Stubber(stubbed) as stubber:
        stubber.add_client_error("put_item", service_error_code="InternalServerError", http_status_code=500)
        stubber.add_client_error(
            "query", service_error_code="ProvisionedThroughputExceededException", http_status_code=400
        )
        with pytest.raises(DependencyUnavailable, match="DynamoDB"):
            DynamoMetadataStore(TABLE, client=stubbed).hold_event(event(1, "2026-11-22T10:00:00.000Z"))
        with pytest.raises(DependencyUnavailable, match="DynamoDB"):
            DynamoMetadataStore(TABLE, client=stubbed).held_events(10)
