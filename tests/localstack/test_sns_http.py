"""SNS → HTTP subscriber on LocalStack, with the real SubscriptionConfirmation handshake.

The subscriber is a tiny HTTP server in the test: it confirms by GETting the SubscribeURL, as a
real webhook receiver must, and records the Notifications. Ragline publishes with its own adapter.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ragline.adapters.aws.sns_events import SnsEventBus
from tests.localstack.conftest import LocalStack
from tests.localstack.helpers import wait_until


@dataclass
class Subscriber:
    url: str
    confirmations: list[str] = field(default_factory=list)  # SubscribeURLs it visited
    notifications: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [n for n in self.notifications if n["_path"] == path]


def _handler(subscriber: Subscriber) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
            kind = self.headers.get("x-amz-sns-message-type")
            if kind == "SubscriptionConfirmation":
                # The handshake: SNS only delivers once the endpoint has visited SubscribeURL.
                try:
                    with urllib.request.urlopen(body["SubscribeURL"], timeout=10) as answer:
                        answer.read()
                except urllib.error.URLError as exc:  # recorded and asserted on by the fixture
                    subscriber.errors.append(f"GET {body['SubscribeURL']} failed: {exc}")
                else:
                    with subscriber.lock:
                        subscriber.confirmations.append(body["SubscribeURL"])
            elif kind == "Notification":
                with subscriber.lock:
                    subscriber.notifications.append({**body, "_path": self.path})
            else:
                subscriber.errors.append(f"unexpected message type {kind!r}")
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest's output clean
            pass

    return Handler


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    subscriber = Subscriber(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(subscriber))
    subscriber.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield subscriber
    server.shutdown()
    server.server_close()
    assert not subscriber.errors, subscriber.errors


def _subscribe_confirmed(sns: Any, topic_arn: str, endpoint: str, **attributes: str) -> str:
    arn = sns.subscribe(
        TopicArn=topic_arn, Protocol="http", Endpoint=endpoint, Attributes=attributes, ReturnSubscriptionArn=True
    )["SubscriptionArn"]

    def confirmed() -> bool:
        attrs = sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]
        return attrs.get("PendingConfirmation") == "false"

    wait_until(confirmed, timeout=20, what=f"the subscription of {endpoint} to be confirmed")
    return arn


def test_http_subscriber_confirms_and_receives_ragline_events(
    localstack: LocalStack, aws: Callable[[str], Any], subscriber: Subscriber
) -> None:
    sns = aws("sns")
    topic_arn = sns.create_topic(Name=f"ragline-events-{uuid.uuid4().hex[:6]}")["TopicArn"]
    _subscribe_confirmed(sns, topic_arn, f"{subscriber.url}/all")
    _subscribe_confirmed(
        sns, topic_arn, f"{subscriber.url}/failures", FilterPolicy=json.dumps({"event_type": ["error.ingestion"]})
    )
    # The subscriber records a confirmation once its GET of the confirm URL has returned, which can be
    # just after LocalStack already reports the subscription confirmed.
    wait_until(lambda: len(subscriber.confirmations) == 2, timeout=20, what="both confirmations recorded")
    assert all("Action=ConfirmSubscription" in url for url in subscriber.confirmations), subscriber.confirmations

    bus = SnsEventBus(topic_arn, endpoint_url=localstack.url)
    data = {"document_id": "doc_1", "chunks": 3}
    bus.publish("document.indexed", "tenant-a", data)

    notification = wait_until(lambda: subscriber.received("/all"), timeout=20, what="the Notification")[0]
    assert notification["TopicArn"] == topic_arn
    envelope = json.loads(notification["Message"])
    assert envelope["type"] == "document.indexed"
    assert envelope["tenant_id"] == "tenant-a"
    assert envelope["data"] == data
    assert envelope["id"].startswith("evt") and envelope["created_at"]
    attributes = notification["MessageAttributes"]
    assert attributes["event_type"] == {"Type": "String", "Value": "document.indexed"}
    assert attributes["tenant_id"] == {"Type": "String", "Value": "tenant-a"}

    # The filtered subscription gets the matching event and never the non-matching one. A matching
    # event published after the other one, once delivered, shows the other had its chance to arrive.
    bus.publish("error.ingestion", "tenant-a", {"document_id": "doc_2", "error": "corrupt"})
    failure = wait_until(lambda: subscriber.received("/failures"), timeout=20, what="the filtered Notification")
    wait_until(lambda: len(subscriber.received("/all")) == 2, timeout=20, what="the second Notification")
    assert [json.loads(n["Message"])["type"] for n in failure] == ["error.ingestion"]
