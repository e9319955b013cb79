"""The EventBus port on one SNS topic: the AWS twin of InProcessEventBus.

The message body is the same envelope the local bus hands its subscribers,
``{"id", "type", "created_at", "tenant_id", "data"}`` as JSON, and the message carries the
String attributes ``event_type`` and ``tenant_id`` so subscribers can filter
(``{"event_type": ["document.indexed"]}``) without parsing bodies. Subscribe SQS queues with
``RawMessageDelivery: true`` to receive the envelope itself as the SQS body and the attributes
as SQS message attributes.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ragline.adapters.aws import clients
from ragline.events import event_envelope

log = logging.getLogger("ragline.events")


def message_attributes(event_type: str, tenant_id: str) -> dict[str, dict[str, str]]:
    return {
        "event_type": {"DataType": "String", "StringValue": event_type},
        "tenant_id": {"DataType": "String", "StringValue": tenant_id},
    }


class SnsEventBus:
    def __init__(
        self, topic_arn: str, *, region: str | None = None, endpoint_url: str | None = None, client: Any = None
    ) -> None:
        self.topic_arn = topic_arn
        # The topic's own region unless told otherwise: a client in another region cannot publish to it.
        self._client = clients.ServiceClient(
            "sns", region=region or _region_of(topic_arn), endpoint_url=endpoint_url, given=client
        )

    @property
    def _sns(self) -> Any:
        return self._client()

    def publish(self, event_type: str, tenant_id: str, data: dict[str, Any]) -> None:
        """Publish one event; DependencyUnavailable when SNS is unreachable or failing after retries."""
        self.publish_event(event_envelope(event_type, tenant_id, data))

    def publish_event(self, event: dict[str, Any]) -> None:
        """Publish an envelope as it is (a held one keeps its id and time)."""
        body = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        with clients.unavailable_when_down(f"SNS topic {self.topic_arn}"):
            answer = self._sns.publish(
                TopicArn=self.topic_arn,
                Message=body,
                MessageAttributes=message_attributes(event["type"], event["tenant_id"]),
            )
        log.info(
            "event %s tenant=%s id=%s sns=%s", event["type"], event["tenant_id"], event["id"], answer.get("MessageId")
        )


def _region_of(topic_arn: str) -> str | None:
    parts = topic_arn.split(":")
    return parts[3] if len(parts) > 5 and parts[0] == "arn" and parts[3] else None
