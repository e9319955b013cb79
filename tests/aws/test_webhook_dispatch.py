"""Deployed webhooks on moto: events published to the topic reach WebhookQueue through the template's
raw subscription, and the real webhook dispatcher function, fed real SQS batches by the emulated event
source mapping, fans them out and sends signed deliveries to receivers on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from standardwebhooks import Webhook

from ragline.errors import DependencyUnavailable
from ragline.webhooks.models import DeliveryStatus
from ragline_emulator.event_sources import EmulatedLambdaContext, SqsEventSourcePoller, sqs_event
from ragline_emulator.functions import load_function
from tests.aws.conftest import AwsStack
from tests.webhook_receivers import webhook_receiver

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

SETTINGS = {
    "webhooks_allow_private_targets": "true",
    "webhook_retry_seconds": "0,1,1",
    "webhook_timeout_seconds": "2",
}


class Dispatcher:
    """The webhook dispatcher function behind WebhookQueue's event source mapping."""

    def __init__(self, stack: AwsStack) -> None:
        self.stack = stack
        self.queue_url = stack.resources.webhook_queue_url
        # Failed records come back at once instead of after the template's 6 minutes.
        stack.sqs.set_queue_attributes(QueueUrl=self.queue_url, Attributes={"VisibilityTimeout": "0"})
        self.handler = load_function("webhook_dispatcher").handler
        self.poller = SqsEventSourcePoller(
            self.queue_url, self.handler, function_name="WebhookDispatcherFunction", batch_size=10, wait_seconds=0
        )

    def run_until(self, done: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "the webhook queue never got there"
            if self.poller.poll_once() == 0:
                time.sleep(0.1)  # delayed messages: not visible yet

    def queue_counts(self) -> tuple[int, int]:
        """(visible, delayed) messages on the queue."""
        attributes = self.stack.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesDelayed"])

    def receive(self) -> list[dict[str, Any]]:
        answer = self.stack.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"], WaitTimeSeconds=0
        )
        return answer.get("Messages", [])


@pytest.fixture
def stack(aws_env: Callable[..., AwsStack]) -> AwsStack:
    return aws_env(**SETTINGS)


@pytest.fixture
def dispatcher(stack: AwsStack) -> Dispatcher:
    return Dispatcher(stack)


def deliveries(stack: AwsStack, tenant: str, webhook_id: str) -> list[Any]:
    page, _ = stack.container.webhooks.deliveries(tenant, webhook_id, status=None, limit=50, cursor=None)
    return page


def test_an_event_on_the_topic_reaches_the_receiver_signed(stack: AwsStack, dispatcher: Dispatcher) -> None:
    webhooks = stack.container.webhooks
    with webhook_receiver(200) as receiver, webhook_receiver(200) as other_tenants:
        hook, secret = webhooks.create("t1", receiver.url, ["document.indexed"], None, True)
        webhooks.create("t2", other_tenants.url, ["*"], None, True)
        stack.container.events.publish("document.indexed", "t1", {"document_id": "doc_1", "chunks": 3})
        stack.container.events.publish("document.deleted", "t1", {"document_id": "doc_2"})  # not subscribed

        dispatcher.run_until(lambda: len(receiver.received) == 1 and dispatcher.queue_counts() == (0, 0))
        (got,) = receiver.received
        payload = Webhook(secret).verify(got.body, got.headers)  # raises unless the signature verifies
        assert payload["type"] == "document.indexed" and payload["tenant_id"] == "t1"
        assert payload["data"] == {"document_id": "doc_1", "chunks": 3}
        assert got.headers["webhook-id"] == payload["id"]
        assert other_tenants.received == []
    (logged,) = deliveries(stack, "t1", hook.id)
    assert logged.status is DeliveryStatus.SUCCEEDED and [a.status_code for a in logged.attempts] == [200]


def test_a_failed_attempt_comes_back_as_a_delayed_message(aws_env: Callable[..., AwsStack]) -> None:
    stack = aws_env(**{**SETTINGS, "webhook_retry_seconds": "0,2"})
    dispatcher = Dispatcher(stack)
    webhooks = stack.container.webhooks
    with webhook_receiver(500, 200) as receiver:
        hook, secret = webhooks.create("t1", receiver.url, ["*"], None, True)
        stack.container.events.publish("document.indexed", "t1", {"document_id": "doc_1"})
        dispatcher.run_until(lambda: len(receiver.received) == 1)
        # The retry waits on the queue, delayed (schedule "0,2": 2 s ± 20 %), not visible yet.
        assert dispatcher.queue_counts() == (0, 1)
        assert dispatcher.receive() == []
        (pending,) = deliveries(stack, "t1", hook.id)
        assert pending.status is DeliveryStatus.PENDING and pending.next_attempt_at is not None
        dispatcher.run_until(lambda: len(receiver.received) == 2, timeout=5)
        first, second = receiver.received
        assert first.headers["webhook-id"] == second.headers["webhook-id"]  # the same event id on every retry
        Webhook(secret).verify(second.body, second.headers)
    dispatcher.run_until(lambda: deliveries(stack, "t1", hook.id)[0].status is DeliveryStatus.SUCCEEDED)
    assert [a.status_code for a in deliveries(stack, "t1", hook.id)[0].attempts] == [500, 200]


def test_a_retry_hours_away_hops_fifteen_minutes_at_a_time(stack: AwsStack, dispatcher: Dispatcher) -> None:
    webhooks = stack.container.webhooks
    with webhook_receiver(200) as receiver:
        hook, _ = webhooks.create("t1", receiver.url, ["*"], None, True)
        delivery = webhooks.send_test("t1", hook.id)  # scheduled at once
        stored = stack.container.webhook_store.get_delivery("t1", hook.id, delivery.id)
        stored.next_attempt_at = "2999-01-01T00:00:00.000Z"  # as if the schedule said "in hours"
        stack.container.webhook_store.save_delivery(stored)
        dispatcher.run_until(lambda: dispatcher.queue_counts() == (0, 1))
        assert receiver.received == []  # arrived early: not sent, sent again for the rest (at most 900 s)
        assert dispatcher.receive() == []  # still delayed: a 900 s hop, not a loop of early arrivals
        (pending,) = deliveries(stack, "t1", hook.id)
        assert pending.status is DeliveryStatus.PENDING and pending.attempts == []


def test_a_410_disables_the_endpoint_and_tells_the_tenants_other_endpoints(
    stack: AwsStack, dispatcher: Dispatcher
) -> None:
    webhooks = stack.container.webhooks
    with webhook_receiver(410) as gone, webhook_receiver(200) as watcher:
        hook, _ = webhooks.create("t1", gone.url, ["document.indexed"], None, True)
        webhooks.create("t1", watcher.url, ["webhook.disabled"], None, True)
        stack.container.events.publish("document.indexed", "t1", {"document_id": "doc_1"})
        # webhook.disabled goes out on the topic, comes back on the queue and fans out to the watcher.
        dispatcher.run_until(lambda: len(watcher.received) == 1)
        event = json.loads(watcher.received[0].body)
        assert event["type"] == "webhook.disabled"
        assert event["data"] == {"webhook_id": hook.id, "url": gone.url, "reason": "410 Gone"}
    endpoint = webhooks.get("t1", hook.id)
    assert endpoint.active is False and endpoint.disabled_reason == "410 Gone"


def test_a_batch_runs_its_attempts_at_once(stack: AwsStack, dispatcher: Dispatcher) -> None:
    webhooks = stack.container.webhooks
    # The hanging receiver answers after 2.5 s: past the 2 s timeout, each of its attempts takes 2 s.
    with webhook_receiver(200, pause_seconds=2.5) as hanging, webhook_receiver(200) as quick:
        slow_hook, _ = webhooks.create("t1", hanging.url, ["*"], None, True)
        quick_hook, _ = webhooks.create("t1", quick.url, ["*"], None, True)
        tests = [webhooks.send_test("t1", slow_hook.id) for _ in range(3)]
        tests += [webhooks.send_test("t1", quick_hook.id) for _ in range(5)]
        messages = dispatcher.receive()
        assert len(messages) == 8
        event = sqs_event(messages, dispatcher.poller.queue_arn, "us-east-1")
        started = time.monotonic()
        response = dispatcher.handler(event, EmulatedLambdaContext(function_name="WebhookDispatcherFunction"))
        elapsed = time.monotonic() - started
        assert response == {"batchItemFailures": []}
        assert len(quick.received) == 5 and len(hanging.received) == 3
        assert elapsed < 4.5, f"a batch with three hanging attempts took {elapsed:.1f} s: run one after another"
    for test in tests[:3]:
        (attempt,) = stack.container.webhook_store.get_delivery("t1", slow_hook.id, test.id).attempts
        assert attempt.error == "timeout"


def test_a_record_that_raised_is_a_batch_item_failure_and_the_rest_are_done(
    stack: AwsStack, dispatcher: Dispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    webhooks = stack.container.webhooks
    store = stack.container.webhook_store
    with webhook_receiver(200) as receiver:
        hook, _ = webhooks.create("t1", receiver.url, ["*"], None, True)
        broken, fine = webhooks.send_test("t1", hook.id), webhooks.send_test("t1", hook.id)
        stack.sqs.send_message(QueueUrl=dispatcher.queue_url, MessageBody="not a webhook message")
        real_get = store.get_delivery

        def table_down_for_one(tenant_id: str, webhook_id: str, delivery_id: str) -> Any:
            if delivery_id == broken.id:
                raise DependencyUnavailable("DynamoDB table ragline-test is unreachable")
            return real_get(tenant_id, webhook_id, delivery_id)

        monkeypatch.setattr(store, "get_delivery", table_down_for_one)
        messages = dispatcher.receive()
        assert len(messages) == 3
        event = sqs_event(messages, dispatcher.poller.queue_arn, "us-east-1")
        response = dispatcher.handler(event, EmulatedLambdaContext(function_name="WebhookDispatcherFunction"))
        by_id = {m["MessageId"]: m["Body"] for m in messages}
        failed = sorted(by_id[f["itemIdentifier"]] for f in response["batchItemFailures"])
        assert failed == sorted(["not a webhook message", next(body for body in by_id.values() if broken.id in body)])
        assert len(receiver.received) == 1  # the fine one was sent
        assert real_get("t1", hook.id, fine.id).status is DeliveryStatus.SUCCEEDED
        assert real_get("t1", hook.id, broken.id).status is DeliveryStatus.PENDING


def test_a_poison_message_rests_in_the_dead_letter_queue(stack: AwsStack, dispatcher: Dispatcher) -> None:
    max_receives = int(
        json.loads(
            stack.sqs.get_queue_attributes(QueueUrl=dispatcher.queue_url, AttributeNames=["RedrivePolicy"])[
                "Attributes"
            ]["RedrivePolicy"]
        )["maxReceiveCount"]
    )
    stack.sqs.send_message(QueueUrl=dispatcher.queue_url, MessageBody='{"kind": "delivery"}')
    for _ in range(max_receives):
        assert dispatcher.poller.poll_once() == 1  # the function fails it each time
    assert dispatcher.poller.poll_once() == 0  # moved to the DLQ on the receive after maxReceiveCount
    answer = stack.sqs.receive_message(QueueUrl=stack.resources.webhook_dead_letter_queue_url)
    assert [m["Body"] for m in answer.get("Messages", [])] == ['{"kind": "delivery"}']
