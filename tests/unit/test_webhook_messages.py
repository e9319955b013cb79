"""The deliveries queue's messages: what the dispatcher function reads, and the delay the scheduler asks SQS for."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from ragline.adapters.aws.sqs_deliveries import SqsDeliveryScheduler, delay_seconds
from ragline.errors import DependencyUnavailable
from ragline.webhooks.messages import (
    DeliveryMessage,
    EventMessage,
    PoisonMessage,
    delivery_message,
    handle_message,
    parse_message,
)
from ragline.webhooks.models import WebhookDelivery

EVENT = {
    "id": "evt_1",
    "type": "document.indexed",
    "created_at": "2026-11-22T10:00:00.000Z",
    "tenant_id": "t1",
    "data": {"document_id": "doc_1"},
}
DELIVERY = WebhookDelivery(
    id="dlv_1", tenant_id="t1", webhook_id="wh_1", event_id="evt_1", event_type="document.indexed", body="{}"
)
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/ragline-WebhookQueue"


def test_an_event_envelope_is_an_event_whole() -> None:
    assert parse_message(json.dumps(EVENT)) == EventMessage(EVENT)


def test_an_sns_notification_without_raw_delivery_is_unwrapped() -> None:
    wrapped = {"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:…", "Message": json.dumps(EVENT)}
    assert parse_message(json.dumps(wrapped)) == EventMessage(EVENT)


def test_a_delivery_message_round_trips() -> None:
    body = json.dumps(delivery_message(DELIVERY))
    assert json.loads(body) == {"kind": "delivery", "tenant_id": "t1", "webhook_id": "wh_1", "delivery_id": "dlv_1"}
    assert parse_message(body) == DeliveryMessage("t1", "wh_1", "dlv_1")


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1, 2]",
        json.dumps({"kind": "delivery", "tenant_id": "t1", "webhook_id": "wh_1"}),
        json.dumps({"kind": "delivery", "tenant_id": "t1", "webhook_id": 7, "delivery_id": "d"}),
        json.dumps({k: v for k, v in EVENT.items() if k != "tenant_id"}),
        json.dumps({**EVENT, "data": "text"}),
        json.dumps({**EVENT, "created_at": "yesterday"}),
        json.dumps({**EVENT, "type": ""}),
        json.dumps({"Records": [{"eventSource": "aws:s3"}]}),
    ],
)
def test_anything_else_is_a_poison_message(body: str) -> None:
    with pytest.raises(PoisonMessage):
        parse_message(body)


class RecordingWebhooks:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def fan_out(self, event: dict) -> list:
        self.calls.append(("fan_out", event))
        return []

    def attempt_by_id(self, tenant_id: str, webhook_id: str, delivery_id: str) -> None:
        self.calls.append(("attempt", tenant_id, webhook_id, delivery_id))


def test_each_kind_goes_to_its_service_call() -> None:
    webhooks = RecordingWebhooks()
    assert handle_message(webhooks, json.dumps(EVENT)) == "event"  # type: ignore[arg-type]
    assert handle_message(webhooks, json.dumps(delivery_message(DELIVERY))) == "delivery"  # type: ignore[arg-type]
    assert webhooks.calls == [("fan_out", EVENT), ("attempt", "t1", "wh_1", "dlv_1")]


@pytest.mark.parametrize(
    ("wait", "expected"), [(0, 0), (0.0001, 1), (0.8, 1), (5, 5), (899.2, 900), (900, 900), (86400, 900), (-3, 0)]
)
def test_the_delay_is_whole_seconds_never_early_and_capped_at_sqs_limit(wait: float, expected: int) -> None:
    assert delay_seconds(wait) == expected


def _sqs() -> object:
    return boto3.client("sqs", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")


def test_the_scheduler_sends_the_delivery_message_with_its_delay() -> None:
    sqs = _sqs()
    with Stubber(sqs) as stubber:
        for delay in (0, 2, 900):
            stubber.add_response(
                "send_message",
                {"MessageId": "m", "MD5OfMessageBody": "x"},
                expected_params={
                    "QueueUrl": QUEUE_URL,
                    "MessageBody": json.dumps(delivery_message(DELIVERY), separators=(",", ":")),
                    "DelaySeconds": delay,
                    "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "delivery"}},
                },
            )
        scheduler = SqsDeliveryScheduler(QUEUE_URL, client=sqs)
        for wait in (0, 1.3, 7200):  # 2 h: the first 15-minute hop
            scheduler.schedule(DELIVERY, wait)
        stubber.assert_no_pending_responses()


def test_a_queue_outage_is_dependency_unavailable() -> None:
    sqs = _sqs()
    with Stubber(sqs) as stubber:
        stubber.add_client_error("send_message", service_error_code="InternalError", http_status_code=500)
        with pytest.raises(DependencyUnavailable, match="webhook deliveries queue"):
            SqsDeliveryScheduler(QUEUE_URL, client=sqs).schedule(DELIVERY, 0)
