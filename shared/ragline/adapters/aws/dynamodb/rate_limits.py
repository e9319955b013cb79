"""Rate-limit counters on the Table (the RateLimiter port of the AWS backend): the DynamoDB twin of
InMemoryRateLimiter, shared by every Lambda container of the stack.

| item    | pk               | sk               | other attributes               |
|---------|------------------|------------------|--------------------------------|
| counter | ``RATE#<key id>``| ``W#<start>``    | ``n`` (the count), ``delete_after`` (TTL) |

One UpdateItem per request: ``ADD n 1`` under the condition ``n < limit`` (or no counter yet), so
DynamoDB serialises the increments of one item and at most ``limit`` succeed per window, however
many containers race. A refused request fails the condition and writes nothing. The item names its
window, so an old counter is never read again; ``delete_after`` (a window after its end) lets
DynamoDB's TTL remove it.
"""

from __future__ import annotations

from ragline.adapters.aws.dynamodb.table import (
    TTL_ATTRIBUTE,
    Expression,
    TableAdapter,
    serialize,
)
from ragline.rate_limits import Window


def counter_key(key_id: str, window: Window) -> dict[str, str]:
    return {"pk": f"RATE#{key_id}", "sk": f"W#{window.start}"}


class DynamoRateLimiter(TableAdapter):
    def acquire(self, key_id: str, window: Window, limit: int) -> int | None:
        expression = Expression()
        count = expression.name("n")
        update = (
            f"ADD {count} {expression.value(1)} "
            f"SET {expression.name(TTL_ATTRIBUTE)} = {expression.value(window.end + window.seconds)}"
        )
        condition = f"attribute_not_exists({count}) OR {count} < {expression.value(limit)}"
        answer = self.table.write_if(
            "update_item",
            Key=serialize(counter_key(key_id, window)),
            UpdateExpression=update,
            ConditionExpression=condition,
            ReturnValues="UPDATED_NEW",
            **expression.arguments(),
        )
        if answer is None:
            return None  # the window is full: this request is not counted
        return int(answer["Attributes"]["n"]["N"])
