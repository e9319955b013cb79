"""Idempotency-Key records (the IdempotencyStore port of the AWS backend), on the Table: the DynamoDB
twin of SqliteIdempotencyStore.

| item    | pk              | sk           | other attributes                                                   |
|---------|-----------------|--------------|--------------------------------------------------------------------|
| record  | ``IDEM#<scope>``| ``KEY#<key>``| token, claimed_at_ms, expires_at_ms, delete_after (TTL); once done: fingerprint, status, content_type, body (B) |

- A claim is one conditional PutItem: it writes only where there is no record, or an expired one, or
  one in progress since the stale time (its Lambda died); otherwise the condition fails and
  ``ReturnValuesOnConditionCheckFailure`` hands back the record that holds the key, in the same call.
- Complete and release are conditional on the claim's token, so a request whose claim was taken
  over (it ran past the stale time) cannot overwrite or delete its successor's record.
- ``delete_after`` is the table's TTL attribute (epoch seconds): DynamoDB deletes an expired record
  within days, so every read checks ``expires_at_ms`` itself meanwhile.
- Times are integer milliseconds (DynamoDB numbers are decimals; no float reaches the serializer).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from boto3.dynamodb.types import Binary
from botocore.exceptions import ClientError

from ragline.adapters.aws import clients
from ragline.adapters.aws.dynamodb.table import (
    TTL_ATTRIBUTE,
    Expression,
    TableAdapter,
    deserialize,
    serialize,
)
from ragline.errors import DependencyUnavailable
from ragline.idempotency import IdempotencyRecord, StoredResponse

# A claim that loses to a record which is gone by the time it is read is tried again this often.
CLAIM_ATTEMPTS = 3


def record_key(scope: str, key: str) -> dict[str, str]:
    return {"pk": f"IDEM#{scope}", "sk": f"KEY#{key}"}


def _ms(seconds: float) -> int:
    return math.floor(seconds * 1000)


def _record(item: Mapping[str, Any]) -> IdempotencyRecord:
    response = None
    if "status" in item:
        body = item.get("body", b"")
        response = StoredResponse(
            status=int(item["status"]),
            content_type=item.get("content_type"),
            body=body.value if isinstance(body, Binary) else bytes(body),
        )
    return IdempotencyRecord(
        token=item["token"],
        claimed_at=int(item["claimed_at_ms"]) / 1000,
        expires_at=int(item["expires_at_ms"]) / 1000,
        fingerprint=item.get("fingerprint"),
        response=response,
    )


class DynamoIdempotencyStore(TableAdapter):
    def claim(
        self, scope: str, key: str, token: str, *, now: float, ttl_seconds: float, stale_after_seconds: float
    ) -> IdempotencyRecord | None:
        item = {
            **record_key(scope, key),
            "token": token,
            "claimed_at_ms": _ms(now),
            "expires_at_ms": _ms(now + ttl_seconds),
            TTL_ATTRIBUTE: math.ceil(now + ttl_seconds),
        }
        expression = Expression()
        condition = (
            f"attribute_not_exists({expression.name('pk')})"
            f" OR {expression.name('expires_at_ms')} <= {expression.value(_ms(now))}"
            f" OR (attribute_not_exists({expression.name('status')})"
            f" AND {expression.name('claimed_at_ms')} <= {expression.value(_ms(now - stale_after_seconds))})"
        )
        for _ in range(CLAIM_ATTEMPTS):
            with self.table.down():
                try:
                    self.table.db.put_item(
                        TableName=self.table.name,
                        Item=serialize(item),
                        ConditionExpression=condition,
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                        **expression.arguments(),
                    )
                    return None
                except ClientError as exc:
                    if clients.error_code(exc) != "ConditionalCheckFailedException":
                        raise
                    held = exc.response.get("Item")
            if held:
                return _record(deserialize(held))
        # Every attempt lost to a record that was gone when read: a burst of claims and releases.
        held_now = self.table.get(record_key(scope, key))
        if held_now is None:
            raise DependencyUnavailable(
                "DynamoDB kept refusing an idempotency claim without holding a record", error="Dependency unavailable"
            )
        return _record(held_now)

    def complete(self, scope: str, key: str, token: str, fingerprint: str, response: StoredResponse) -> bool:
        values: dict[str, Any] = {
            "fingerprint": fingerprint,
            "status": response.status,
            "body": response.body,
        }
        if response.content_type is not None:
            values["content_type"] = response.content_type
        expression = Expression()
        sets = ", ".join(f"{expression.name(name)} = {expression.value(value)}" for name, value in values.items())
        condition = f"{expression.name('token')} = {expression.value(token)} AND attribute_not_exists({expression.name('status')})"
        answer = self.table.write_if(
            "update_item",
            Key=serialize(record_key(scope, key)),
            UpdateExpression=f"SET {sets}",
            ConditionExpression=condition,
            **expression.arguments(),
        )
        return answer is not None

    def release(self, scope: str, key: str, token: str) -> None:
        expression = Expression()
        condition = f"{expression.name('token')} = {expression.value(token)} AND attribute_not_exists({expression.name('status')})"
        # Refused when not ours any more (completed, or taken over after the stale time): nothing to release.
        self.table.write_if(
            "delete_item",
            Key=serialize(record_key(scope, key)),
            ConditionExpression=condition,
            **expression.arguments(),
        )
