"""Held events (the EventOutbox port of the AWS backend), on the Table.

Events SNS refused, until the events-redelivery function publishes them: pk OUTBOX, sk
<created_at>#<event id> (a Query reads them oldest first), the envelope as a JSON string. The
partition only fills during an SNS outage; one takes ~1000 writes/s, far above its event rate.
"""

from __future__ import annotations

import json
from typing import Any

from ragline.adapters.aws.dynamodb.table import Table

OUTBOX_PK = "OUTBOX"


def outbox_key(event: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {"pk": {"S": OUTBOX_PK}, "sk": {"S": f"{event['created_at']}#{event['id']}"}}


class DynamoOutbox:
    table: Table

    def hold_event(self, event: dict[str, Any]) -> None:
        item = {**outbox_key(event), "event": {"S": json.dumps(event, ensure_ascii=False, separators=(",", ":"))}}
        with self.table.down():
            self.table.db.put_item(TableName=self.table.name, Item=item)  # the same event twice is one item

    def held_events(self, limit: int) -> list[dict[str, Any]]:
        with self.table.down():
            answer = self.table.db.query(
                TableName=self.table.name,
                KeyConditionExpression="pk = :outbox",
                ExpressionAttributeValues={":outbox": {"S": OUTBOX_PK}},
                ConsistentRead=True,
                Limit=max(1, limit),
            )
        return [json.loads(item["event"]["S"]) for item in answer.get("Items", [])]

    def release_event(self, event: dict[str, Any]) -> None:
        with self.table.down():
            self.table.db.delete_item(TableName=self.table.name, Key=outbox_key(event))
