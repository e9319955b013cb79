"""What invokes the Lambda functions when deployed, emulated for `ragline serve --backend aws`: an
SQS event source mapping and an EventBridge schedule.

The poller does what Lambda's poller does with a queue (the ingest queue, the webhook deliveries
queue), so the real handler runs against
a real queue (moto server or LocalStack): long-poll up to ``batch_size`` messages, hand them to
the handler as one SQS event in Lambda's shape, delete the ones that succeeded, and leave the
ones reported in ``batchItemFailures`` (or all of them, when the handler raises) to become
visible again when their visibility timeout ends. Redrive to the dead-letter queue after
``maxReceiveCount`` receives is the queue's own doing, exactly as deployed.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ragline.adapters.aws import clients
from ragline.errors import DependencyUnavailable

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], dict[str, Any] | None]


@dataclass
class EmulatedLambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int = 2048
    timeout_ms: int = 900_000
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = ""
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""

    def get_remaining_time_in_millis(self) -> int:
        return self.timeout_ms


def queue_arn_from_url(queue_url: str, region: str, account: str) -> str:
    return f"arn:aws:sqs:{region}:{account}:{queue_url.rstrip('/').rsplit('/', 1)[-1]}"


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """Received SQS messages as the event Lambda gives a function (camel-cased record keys)."""
    records = []
    for message in messages:
        attributes = {name: str(value) for name, value in message.get("Attributes", {}).items()}
        message_attributes = {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value.get("DataType", "String"),
            }
            for name, value in message.get("MessageAttributes", {}).items()
        }
        body = message.get("Body", "")
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": body,
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": message.get("MD5OfBody") or hashlib.md5(body.encode()).hexdigest(),  # noqa: S324
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
        )
    return {"Records": records}


def failed_message_ids(response: dict[str, Any] | None, event: dict[str, Any]) -> set[str]:
    """Which records to leave on the queue, read as Lambda reads a ReportBatchItemFailures answer."""
    every_id = {record["messageId"] for record in event["Records"]}
    if response is None:
        return set()
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    failed: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or identifier not in every_id:
            return every_id  # Lambda treats a malformed answer as the whole batch failing
        failed.add(identifier)
    return failed


class _LoopThread:
    """A daemon thread running ``_run`` until ``stop()``: what the poller and the schedule share."""

    thread_name = "loop"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        raise NotImplementedError


class SqsEventSourcePoller(_LoopThread):
    thread_name = "sqs-poller"

    def __init__(
        self,
        queue_url: str,
        handler: Handler,
        *,
        function_name: str = "IngestFunction",
        batch_size: int = 5,
        wait_seconds: int = 1,
        region: str | None = None,
        account: str = "000000000000",
        client: Any = None,
    ) -> None:
        if not 1 <= batch_size <= 10:
            raise ValueError("an SQS batch holds 1 to 10 messages")
        self.queue_url = queue_url
        self.handler = handler
        self.function_name = function_name
        self.batch_size = batch_size
        self.wait_seconds = wait_seconds
        self.region = clients.resolve_region(region) or "us-east-1"
        self.queue_arn = queue_arn_from_url(queue_url, self.region, account)
        self._client = client
        super().__init__()

    @property
    def _sqs(self) -> Any:
        return self._client or clients.client("sqs", region=self.region)

    def poll_once(self) -> int:
        """Receive one batch and run it; returns how many messages it held."""
        with clients.unavailable_when_down(f"the queue of {self.function_name} (SQS)"):
            answer = self._sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=self.batch_size,
                WaitTimeSeconds=self.wait_seconds,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        messages = answer.get("Messages", [])
        if not messages:
            return 0
        event = sqs_event(messages, self.queue_arn, self.region)
        context = EmulatedLambdaContext(function_name=self.function_name)
        try:
            response = self.handler(event, context)
        except Exception:
            # A crashed invocation: Lambda deletes nothing, so every message comes back.
            log.exception("%s failed a whole batch of %d", self.function_name, len(messages))
            return len(messages)
        failed = failed_message_ids(response, event)
        done = [record for record in event["Records"] if record["messageId"] not in failed]
        if done:
            with clients.unavailable_when_down(f"the queue of {self.function_name} (SQS)"):
                self._sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(n), "ReceiptHandle": r["receiptHandle"]} for n, r in enumerate(done)],
                )
        if failed:
            log.info("%d of %d messages will be redelivered after their visibility timeout", len(failed), len(messages))
        return len(messages)

    def notify(self) -> None:
        """Nothing to wake: a long poll sees new messages at once."""

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except DependencyUnavailable as exc:
                log.warning("polling %s: %s; retrying", self.queue_url, exc.message)
                self._stop.wait(2.0)


class ScheduledInvoker(_LoopThread):
    """Invokes a function's handler every ``interval_seconds``, as an EventBridge schedule does
    when deployed (the events-redelivery function's ``rate(1 minute)``)."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], Any], interval_seconds: float, *, name: str) -> None:
        self.handler = handler
        self.interval_seconds = interval_seconds
        self.name = name
        self.thread_name = f"schedule-{name}"
        super().__init__()

    def invoke_once(self) -> Any:
        # EventBridge Scheduler sends the schedule's input: none is configured, so an empty object.
        return self.handler({}, EmulatedLambdaContext(function_name=self.name, timeout_ms=60_000))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            try:
                self.invoke_once()
            except Exception:
                # A failed run does not end the schedule, deployed or here: the next one comes on time.
                log.exception("scheduled %s failed; next run in %s s", self.name, self.interval_seconds)
