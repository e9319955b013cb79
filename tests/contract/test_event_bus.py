"""EventBus contract: the in-process bus and the SNS bus deliver the same envelope.

AWS side: an SQS queue subscribed to the topic with raw message delivery receives the envelope
as its body and the event's ``event_type`` / ``tenant_id`` as message attributes.
"""

from __future__ import annotations

import json
import re

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from ragline.adapters.aws.clients import client
from ragline.adapters.aws.sns_events import SnsEventBus
from ragline.errors import DependencyUnavailable
from tests.contract.conftest import REGION, EventChannel, drain, subscribed_queue

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
DATA = {"document_id": "doc_1", "chunk_count": 3, "ratio": 0.5, "ok": True, "title": "Café ☕", "tags": ["a"]}


def test_a_subscriber_receives_the_envelope(event_channel: EventChannel) -> None:
    event_channel.bus.publish("document.indexed", "t1", DATA)
    [event] = event_channel.received()
    assert set(event) == {"id", "type", "created_at", "tenant_id", "data"}
    assert (event["type"], event["tenant_id"], event["data"]) == ("document.indexed", "t1", DATA)
    assert event["id"].startswith("evt_")
    assert ISO_UTC.match(event["created_at"])


def test_every_event_gets_its_own_id(event_channel: EventChannel) -> None:
    for number in range(3):
        event_channel.bus.publish("document.uploaded", f"t{number}", {"n": number})
    events = event_channel.received()
    assert sorted(event["data"]["n"] for event in events) == [0, 1, 2]
    assert len({event["id"] for event in events}) == 3
    assert {event["tenant_id"]: event["data"]["n"] for event in events} == {"t0": 0, "t1": 1, "t2": 2}


# ---- SNS only ------------------------------------------------------------------------------------------------
@pytest.fixture
def topic_arn(aws: None) -> str:
    return str(client("sns").create_topic(Name="ragline-events")["TopicArn"])


def test_sns_events_carry_type_and_tenant_attributes(topic_arn: str) -> None:
    queue_url = subscribed_queue(topic_arn, "all-events")
    SnsEventBus(topic_arn).publish("error.ingestion", "tenant-7", {"error": "bad pdf"})
    attributes: list[dict[str, str]] = []
    [event] = drain(queue_url, attributes)
    assert attributes == [{"event_type": "error.ingestion", "tenant_id": "tenant-7"}]
    assert (event["type"], event["tenant_id"]) == ("error.ingestion", "tenant-7")


def test_sns_filter_policy_on_event_type_delivers_only_matching_events(topic_arn: str) -> None:
    indexed_only = subscribed_queue(topic_arn, "indexed-only", {"event_type": ["document.indexed"]})
    tenant_7_only = subscribed_queue(topic_arn, "tenant-7-only", {"tenant_id": ["t7"]})
    bus = SnsEventBus(topic_arn)
    bus.publish("document.uploaded", "t7", {"document_id": "d1"})
    bus.publish("document.indexed", "t7", {"document_id": "d1"})
    bus.publish("document.indexed", "t8", {"document_id": "d2"})
    assert sorted((e["type"], e["tenant_id"]) for e in drain(indexed_only)) == [
        ("document.indexed", "t7"),
        ("document.indexed", "t8"),
    ]
    assert sorted(e["type"] for e in drain(tenant_7_only)) == ["document.indexed", "document.uploaded"]


def test_sns_without_raw_delivery_wraps_the_envelope_in_a_notification(topic_arn: str) -> None:
    sqs = client("sqs")
    queue_url = sqs.create_queue(QueueName="wrapped")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    SnsEventBus(topic_arn).publish("kb.created", "t1", {"kb_id": "kb-1"})
    [notification] = drain(queue_url)
    assert notification["Type"] == "Notification"
    assert notification["MessageAttributes"]["event_type"] == {"Type": "String", "Value": "kb.created"}
    assert json.loads(notification["Message"])["data"] == {"kb_id": "kb-1"}


def test_sns_answering_5xx_is_dependency_unavailable(topic_arn: str) -> None:
    sns = boto3.session.Session().client("sns", region_name=REGION)
    with Stubber(sns) as stub:
        stub.add_client_error("publish", service_error_code="InternalError", http_status_code=500)
        with pytest.raises(DependencyUnavailable, match=r"SNS topic .* answered 500"):
            SnsEventBus(topic_arn, client=sns).publish("document.indexed", "t1", {})


def test_sns_throttling_is_dependency_unavailable(topic_arn: str) -> None:
    sns = boto3.session.Session().client("sns", region_name=REGION)
    with Stubber(sns) as stub:
        stub.add_client_error("publish", service_error_code="Throttling", http_status_code=400)
        with pytest.raises(DependencyUnavailable):
            SnsEventBus(topic_arn, client=sns).publish("document.indexed", "t1", {})


def test_sns_client_errors_are_not_hidden(topic_arn: str) -> None:
    with pytest.raises(ClientError) as raised:  # a wrong topic is a deployment bug, not an outage
        SnsEventBus(topic_arn + "-missing").publish("document.indexed", "t1", {})
    assert raised.value.response["Error"]["Code"] == "NotFound"


def test_unreachable_sns_is_dependency_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    unreachable = boto3.session.Session().client(
        "sns",
        region_name=REGION,
        endpoint_url="http://127.0.0.1:9",  # the discard port: nothing listens on it here
        config=Config(connect_timeout=1, read_timeout=1, retries={"mode": "standard", "max_attempts": 2}),
    )
    bus = SnsEventBus(f"arn:aws:sns:{REGION}:123456789012:ragline-events", client=unreachable)
    with pytest.raises(DependencyUnavailable, match="unreachable"):
        bus.publish("document.indexed", "t1", {})
