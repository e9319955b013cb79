"""The EventOutbox port in the store's DynamoDB table: events SNS would not take, until it does.

Items ``pk = OUTBOX``, ``sk = <created_at>#<event id>`` (so a Query reads them oldest first), the
envelope as a JSON string. The partition only fills while SNS is down, and empties as the events
function redelivers; one partition takes ~1000 writes/s, far above any outage's event rate.
"""

from __future__ import annotations

import json
from typing import Any

from ragline.adapters.aws import clients

OUTBOX_PK = "OUTBOX"


def outbox_key(event: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {"pk": {"S": OUTBOX_PK}, "sk": {"S": f"{event['created_at']}#{event['id']}"}}


class DynamoEventOutbox:
    def __init__(
        self, table_name: str, *, region: str | None = None, endpoint_url: str | None = None, client: Any = None
    ) -> None:
        self.table_name = table_name
        self._region = region
        self._endpoint_url = endpoint_url
        self._client = client

    @property
    def _db(self) -> Any:
        return self._client or clients.client("dynamodb", region=self._region, endpoint_url=self._endpoint_url)

    def hold(self, event: dict[str, Any]) -> None:
        item = {**outbox_key(event), "event": {"S": json.dumps(event, ensure_ascii=False, separators=(",", ":"))}}
        with clients.unavailable_when_down(f"DynamoDB table {self.table_name}"):
            self._db.put_item(TableName=self.table_name, Item=item)  # the same event twice is one item

    def held(self, limit: int) -> list[dict[str, Any]]:
        with clients.unavailable_when_down(f"DynamoDB table {self.table_name}"):
            answer = self._db.query(
                TableName=self.table_name,
                KeyConditionExpression="pk = :outbox",
                ExpressionAttributeValues={":outbox": {"S": OUTBOX_PK}},
                ConsistentRead=True,
                Limit=max(1, limit),
            )
        return [json.loads(item["event"]["S"]) for item in answer.get("Items", [])]

    def release(self, event: dict[str, Any]) -> None:
        with clients.unavailable_when_down(f"DynamoDB table {self.table_name}"):
            self._db.delete_item(TableName=self.table_name, Key=outbox_key(event))
