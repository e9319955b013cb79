"""Fixtures that build each port's two twins: the local adapter and the AWS one under moto.

Every contract test takes one of ``blob_store``, ``metadata_store``, ``activity_store`` or ``event_channel`` and runs
once per twin (``[local]`` and ``[aws]``). The AWS twins live inside ``mock_aws()`` (in-process,
region us-east-1, fake credentials), with a fresh bucket, topic and table per test.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from ragline.adapters.aws.clients import client, reset_clients
from ragline.adapters.aws.dynamodb.activity import DynamoActivityStore
from ragline.adapters.aws.dynamodb.history import DynamoHistoryStore
from ragline.adapters.aws.dynamodb.store import DynamoMetadataStore
from ragline.adapters.aws.dynamodb.table import table_definitions
from ragline.adapters.aws.s3_blobs import S3BlobStore
from ragline.adapters.aws.sns_events import SnsEventBus
from ragline.adapters.local.events import InProcessEventBus
from ragline.adapters.local.filesystem import FilesystemBlobStore
from ragline.adapters.local.sqlite_activity import SqliteActivityStore
from ragline.adapters.local.sqlite_history import SqliteHistoryStore
from ragline.adapters.local.sqlite_store import SqliteMetadataStore
from ragline.ports import EventBus

REGION = "us-east-1"
TWINS = ["local", "aws"]


@pytest.fixture(scope="module")
def _fresh_aws_clients() -> Iterator[None]:
    """Clients cached before this module (maybe for a real endpoint) are dropped, and ours after it.

    Within a module the cached clients are reused from test to test (building one costs ~0.1 s);
    every test sets the same fake credentials, and moto intercepts clients whenever they were built.
    """
    reset_clients()
    yield
    reset_clients()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, _fresh_aws_clients: None) -> Iterator[None]:
    """moto's in-process AWS with fake credentials; no real endpoint or profile can leak in.

    Each test gets empty AWS state: ``mock_aws`` resets every backend when it ends.
    """
    for name in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_SNS",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_SESSION_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    with mock_aws():
        yield


# ---- BlobStore --------------------------------------------------------------------------------------
@pytest.fixture(params=TWINS)
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> FilesystemBlobStore | S3BlobStore:
    if request.param == "local":
        return FilesystemBlobStore(tmp_path / "blobs")
    request.getfixturevalue("aws")
    client("s3").create_bucket(Bucket="ragline-documents")
    return S3BlobStore("ragline-documents", prefix="originals/")


# ---- MetadataStore + JobQueue -------------------------------------------------------------------------
@pytest.fixture(params=TWINS)
def metadata_store(request: pytest.FixtureRequest, tmp_path: Path) -> SqliteMetadataStore | DynamoMetadataStore:
    if request.param == "local":
        return SqliteMetadataStore(tmp_path / "metadata.db")
    request.getfixturevalue("aws")
    dynamodb = client("dynamodb")
    for definition in table_definitions("ragline-test"):
        dynamodb.create_table(**definition)
    return DynamoMetadataStore("ragline-test")


# ---- UsageStore + AuditLog ------------------------------------------------------------------------------
@pytest.fixture(params=TWINS)
def activity_store(request: pytest.FixtureRequest, tmp_path: Path) -> SqliteActivityStore | DynamoActivityStore:
    if request.param == "local":
        return SqliteActivityStore(tmp_path / "activity.db")
    request.getfixturevalue("aws")
    dynamodb = client("dynamodb")
    for definition in table_definitions("ragline-test"):
        dynamodb.create_table(**definition)
    return DynamoActivityStore("ragline-test")


# ---- HistoryStore ---------------------------------------------------------------------------------------
@pytest.fixture(params=TWINS)
def history_store(request: pytest.FixtureRequest, tmp_path: Path) -> SqliteHistoryStore | DynamoHistoryStore:
    if request.param == "local":
        return SqliteHistoryStore(tmp_path / "history.db")
    request.getfixturevalue("aws")
    dynamodb = client("dynamodb")
    for definition in table_definitions("ragline-test"):
        dynamodb.create_table(**definition)
    return DynamoHistoryStore("ragline-test")


# ---- EventBus -----------------------------------------------------------------------------------------
@dataclass
class EventChannel:
    """A bus and a way to read what a subscriber of it received (envelopes, in publish order)."""

    bus: EventBus
    received: Callable[[], list[dict[str, Any]]]
    attributes: list[dict[str, str]] = field(default_factory=list)  # AWS only: per received event


@pytest.fixture(params=TWINS)
def event_channel(request: pytest.FixtureRequest) -> EventChannel:
    if request.param == "local":
        local_bus = InProcessEventBus()
        inbox: list[dict[str, Any]] = []
        local_bus.subscribe(inbox.append)
        return EventChannel(local_bus, lambda: list(inbox))
    request.getfixturevalue("aws")
    topic_arn = client("sns").create_topic(Name="ragline-events")["TopicArn"]
    queue_url = subscribed_queue(topic_arn, "ragline-events-all")
    channel = EventChannel(SnsEventBus(topic_arn), lambda: [])
    channel.received = lambda: drain(queue_url, channel.attributes)
    return channel


def subscribed_queue(topic_arn: str, name: str, filter_policy: dict[str, Any] | None = None) -> str:
    """An SQS queue subscribed to the topic with raw delivery (the body is the envelope itself)."""
    sqs = client("sqs")
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    attributes = {"RawMessageDelivery": "true"}
    if filter_policy is not None:
        attributes["FilterPolicy"] = json.dumps(filter_policy)
    client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes=attributes)
    return queue_url


def drain(queue_url: str, attributes_seen: list[dict[str, str]] | None = None) -> list[dict[str, Any]]:
    """Every message now in the queue: envelopes in order; their String attributes go to ``attributes_seen``."""
    sqs = client("sqs")
    envelopes: list[dict[str, Any]] = []
    while True:
        answer = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        )
        messages = answer.get("Messages", [])
        if not messages:
            return envelopes
        for message in messages:
            envelopes.append(json.loads(message["Body"]))
            if attributes_seen is not None:
                attributes_seen.append(
                    {name: value["StringValue"] for name, value in message.get("MessageAttributes", {}).items()}
                )
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
