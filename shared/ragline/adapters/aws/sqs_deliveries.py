"""The DeliveryScheduler of the AWS backend: a delayed message on the webhook deliveries queue.

SQS delays a message by at most 15 minutes. A longer wait (the retry schedule reaches 24 h) is sent
with the maximum delay; the dispatcher function then finds the delivery not yet due (its
``next_attempt_at`` is stored) and ``WebhookService.attempt`` schedules the rest, so a retry hours
away is a short chain of 15-minute hops.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ragline.adapters.aws import clients
from ragline.webhooks.messages import DELIVERY_KIND, delivery_message
from ragline.webhooks.models import WebhookDelivery

MAX_DELAY_SECONDS = 900  # SQS's limit on DelaySeconds


def delay_seconds(delay: float) -> int:
    """SQS's DelaySeconds for a wait: whole seconds, rounded up (never early), within 0..900."""
    return min(max(math.ceil(delay), 0), MAX_DELAY_SECONDS)


class SqsDeliveryScheduler:
    def __init__(
        self, queue_url: str, *, region: str | None = None, endpoint_url: str | None = None, client: Any = None
    ) -> None:
        self.queue_url = queue_url
        self._client = clients.ServiceClient("sqs", region=region, endpoint_url=endpoint_url, given=client)

    def schedule(self, delivery: WebhookDelivery, delay_seconds_: float) -> None:
        """DependencyUnavailable when SQS is unreachable or failing after retries."""
        with clients.unavailable_when_down("the webhook deliveries queue (SQS)"):
            self._client().send_message(
                QueueUrl=self.queue_url,
                MessageBody=json.dumps(delivery_message(delivery), separators=(",", ":")),
                DelaySeconds=delay_seconds(delay_seconds_),
                MessageAttributes={"kind": {"DataType": "String", "StringValue": DELIVERY_KIND}},
            )
