"""The AWS backend in-process: moto for S3/SQS/SNS/DynamoDB, resources created from template.yaml,
the real ingest function fed by the emulated event source mapping."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from ragline.adapters.aws import clients
from ragline.config import get_settings
from ragline.container import Container, get_container
from ragline.models import Document
from ragline_emulator.event_sources import SqsEventSourcePoller
from ragline_emulator.functions import load_function
from ragline_emulator.provision import ProvisionedResources, provision, settings_overrides


@dataclass
class AwsStack:
    resources: ProvisionedResources
    container: Container
    poller: SqsEventSourcePoller
    events_queue_url: str

    @property
    def s3(self) -> Any:
        return clients.client("s3")

    @property
    def sqs(self) -> Any:
        return clients.client("sqs")

    def drain(self, max_polls: int = 50) -> int:
        """Run the ingest function until the queue has nothing visible; returns messages handled."""
        handled = 0
        for _ in range(max_polls):
            count = self.poller.poll_once()
            if count == 0:
                return handled
            handled += count
        raise AssertionError(f"the ingest queue did not drain in {max_polls} polls")

    def events(self) -> list[dict[str, Any]]:
        """Events published to the topic so far, read from an SQS queue subscribed to it."""
        seen: list[dict[str, Any]] = []
        while True:
            answer = self.sqs.receive_message(QueueUrl=self.events_queue_url, MaxNumberOfMessages=10)
            messages = answer.get("Messages", [])
            if not messages:
                return seen
            for message in messages:
                envelope = json.loads(message["Body"])
                event = json.loads(envelope["Message"])
                event["attributes"] = {k: v["Value"] for k, v in envelope.get("MessageAttributes", {}).items()}
                seen.append(event)
                self.sqs.delete_message(QueueUrl=self.events_queue_url, ReceiptHandle=message["ReceiptHandle"])

    def wait_for(self, tenant: str, predicate: Callable[[Document], bool], document_id: str) -> Document:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            doc = self.container.store.get_document(tenant, document_id)
            if doc is not None and predicate(doc):
                return doc
            self.drain()
        raise AssertionError(f"document {document_id} never reached the expected state")

    def dead_letters(self) -> list[str]:
        answer = self.sqs.receive_message(QueueUrl=self.resources.dead_letter_queue_url, MaxNumberOfMessages=10)
        return [message["Body"] for message in answer.get("Messages", [])]


@pytest.fixture
def aws_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., AwsStack]]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "OPENSEARCH_URL", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    clients.reset_clients()
    mock = mock_aws()
    mock.start()
    built: list[Container] = []

    def start(**settings: Any) -> AwsStack:
        resources = provision("ragline-test")
        env = {"backend": "aws", "data_dir": tmp_path / "data", **settings_overrides(resources), **settings}
        for name, value in env.items():
            monkeypatch.setenv(f"RAGLINE_{name.upper()}", str(value))
        # Messages that fail come back at once instead of after the template's 90 minutes.
        sqs = clients.client("sqs")
        sqs.set_queue_attributes(QueueUrl=resources.ingest_queue_url, Attributes={"VisibilityTimeout": "0"})
        events_queue_url = sqs.create_queue(QueueName="events-capture")["QueueUrl"]
        events_queue_arn = sqs.get_queue_attributes(QueueUrl=events_queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        clients.client("sns").subscribe(TopicArn=resources.events_topic_arn, Protocol="sqs", Endpoint=events_queue_arn)
        get_settings.cache_clear()
        get_container.cache_clear()
        container = get_container()
        built.append(container)
        handler = load_function("ingest").handler
        poller = SqsEventSourcePoller(resources.ingest_queue_url, handler, wait_seconds=0)
        stack = AwsStack(resources, container, poller, events_queue_url)
        stack.drain()  # the s3:TestEvent S3 sends when a notification is configured
        return stack

    yield start
    for container in built:
        container.close()
    get_settings.cache_clear()
    get_container.cache_clear()
    mock.stop()
    clients.reset_clients()
