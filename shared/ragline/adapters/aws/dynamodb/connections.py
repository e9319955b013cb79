"""The deployed WebSocket chat's connections on the Table (the ConnectionStore port; only the AWS backend has one:
locally the server holds each socket itself).

| item       | pk                   | sk       | other attributes |
|------------|----------------------|----------|------------------|
| connection | ``WSCONN#<conn id>`` | ``CONN`` | connected_at_ms; once authenticated: key_id, tenant_id, scopes (comma-joined), rate_limit_per_minute; while an answer runs: answer_id, answer_until_ms, cancelled (the answer id a cancel marked); delete_after (TTL) |

Every change is one conditional UpdateItem, so invocations handling messages of the same connection at once
cannot both bind a key, both start an answer, or cancel an answer that has ended. Reads are consistent.
"""

from __future__ import annotations

import math
from typing import Any

from ragline.adapters.aws.dynamodb.table import TTL_ATTRIBUTE, Expression, TableAdapter, serialize
from ragline.models import Principal, Scope
from ragline.ports import AnswerState, ChatConnection


def connection_key(connection_id: str) -> dict[str, str]:
    return {"pk": f"WSCONN#{connection_id}", "sk": "CONN"}


def _ms(seconds: float) -> int:
    return math.floor(seconds * 1000)


def _principal_values(principal: Principal) -> dict[str, Any]:
    values: dict[str, Any] = {
        "key_id": principal.key_id,
        "tenant_id": principal.tenant_id,
        "scopes": ",".join(sorted(scope.value for scope in principal.scopes)),
    }
    if principal.rate_limit_per_minute is not None:
        values["rate_limit_per_minute"] = principal.rate_limit_per_minute
    return values


def _connection(item: dict[str, Any]) -> ChatConnection:
    principal = None
    if "key_id" in item:
        principal = Principal(
            key_id=item["key_id"],
            tenant_id=item["tenant_id"],
            scopes=frozenset(Scope(part) for part in item["scopes"].split(",") if part),
            rate_limit_per_minute=item.get("rate_limit_per_minute"),
        )
    return ChatConnection(item["pk"].removeprefix("WSCONN#"), int(item["connected_at_ms"]) / 1000, principal)


class DynamoConnectionStore(TableAdapter):
    def open_connection(self, connection: ChatConnection, *, expires_at: float) -> None:
        item: dict[str, Any] = {
            **connection_key(connection.connection_id),
            "connected_at_ms": _ms(connection.connected_at),
            TTL_ATTRIBUTE: math.ceil(expires_at),
        }
        if connection.principal is not None:
            item.update(_principal_values(connection.principal))
        with self.table.down():
            self.table.db.put_item(TableName=self.table.name, Item=serialize(item))

    def get_connection(self, connection_id: str) -> ChatConnection | None:
        item = self.table.get(connection_key(connection_id))
        return _connection(item) if item else None

    def authenticate_connection(self, connection_id: str, principal: Principal) -> bool:
        expression = Expression()
        update = expression.update(_principal_values(principal))
        condition = f"attribute_exists({expression.name('pk')}) AND attribute_not_exists({expression.name('key_id')})"
        return self._update(connection_id, update, condition, expression)

    def start_answer(self, connection_id: str, answer_id: str, *, now: float, until: float) -> bool:
        expression = Expression()
        update = expression.update({"answer_id": answer_id, "answer_until_ms": _ms(until)}, removes=["cancelled"])
        running, until_ms = expression.name("answer_id"), expression.name("answer_until_ms")
        condition = (
            f"attribute_exists({expression.name('pk')}) "
            f"AND (attribute_not_exists({running}) OR {until_ms} < {expression.value(_ms(now))})"
        )
        return self._update(connection_id, update, condition, expression)

    def answer_state(self, connection_id: str, answer_id: str) -> AnswerState:
        item = self.table.get(connection_key(connection_id))
        if item is None or item.get("answer_id") != answer_id:
            return AnswerState.GONE
        return AnswerState.CANCELLED if item.get("cancelled") == answer_id else AnswerState.RUNNING

    def cancel_answer(self, connection_id: str) -> bool:
        expression = Expression()
        running = expression.name("answer_id")
        update = f"SET {expression.name('cancelled')} = {running}"  # the running answer's id, whichever it is
        return self._update(connection_id, update, f"attribute_exists({running})", expression)

    def finish_answer(self, connection_id: str, answer_id: str) -> None:
        expression = Expression()
        update = expression.update({}, removes=["answer_id", "answer_until_ms", "cancelled"])
        condition = f"{expression.name('answer_id')} = {expression.value(answer_id)}"
        self._update(connection_id, update, condition, expression)  # taken over meanwhile: not ours to release

    def close_connection(self, connection_id: str) -> None:
        with self.table.down():
            self.table.db.delete_item(TableName=self.table.name, Key=serialize(connection_key(connection_id)))

    def _update(self, connection_id: str, update: str, condition: str, expression: Expression) -> bool:
        answer = self.table.write_if(
            "update_item",
            Key=serialize(connection_key(connection_id)),
            UpdateExpression=update,
            ConditionExpression=condition,
            **expression.arguments(),
        )
        return answer is not None
