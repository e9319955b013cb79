"""Key usage and the audit log (the UsageStore and AuditLog ports of the AWS backend), on the Table.

Usage: one item per key and UTC day, ``USAGE#<key id>`` / ``DAY#<day>``, grown by one UpdateItem per
flush (ADD on the counters, on a ``route:<METHOD path>`` counter per route, and on the ``ips`` string
set), so concurrent Lambda containers add up. Audit: ``AUDIT#<tenant>`` / ``<entry id>``, put once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ragline.activity import AuditEvent, UsageDay, UsageDelta
from ragline.adapters.aws.dynamodb.table import Expression, Table, TableAdapter, serialize

ROUTE_PREFIX = "route:"
DAY_PREFIX = "DAY#"


def usage_pk(key_id: str) -> str:
    return f"USAGE#{key_id}"


def audit_pk(tenant_id: str) -> str:
    return f"AUDIT#{tenant_id}"


def _day(key_id: str, item: dict[str, Any]) -> UsageDay:
    return UsageDay(
        key_id=key_id,
        day=str(item["sk"]).removeprefix(DAY_PREFIX),
        requests=int(item.get("requests", 0)),
        errors=int(item.get("errors", 0)),
        routes={name.removeprefix(ROUTE_PREFIX): int(v) for name, v in item.items() if name.startswith(ROUTE_PREFIX)},
        ips=sorted(item.get("ips", set())),
        input_tokens=int(item.get("input_tokens", 0)),
        output_tokens=int(item.get("output_tokens", 0)),
        last_used_at=item.get("last_used_at"),
    )


class DynamoActivity:
    table: Table

    # ---- usage --------------------------------------------------------------------------------------
    def add_usage(self, deltas: Sequence[UsageDelta]) -> None:
        for d in deltas:
            expression = Expression()
            adds: dict[str, Any] = {
                "requests": d.requests,
                "errors": d.errors,
                "input_tokens": d.input_tokens,
                "output_tokens": d.output_tokens,
                **{ROUTE_PREFIX + route: count for route, count in d.routes.items()},
            }
            clauses = [f"{expression.name(name)} {expression.value(value)}" for name, value in adds.items()]
            if d.ips:  # a string set cannot be empty
                clauses.append(f"{expression.name('ips')} {expression.value(set(d.ips))}")
            sets = {"tenant_id": d.tenant_id, "last_used_at": d.last_used_at}
            update = "SET " + ", ".join(f"{expression.name(k)} = {expression.value(v)}" for k, v in sets.items())
            with self.table.down():
                self.table.db.update_item(
                    TableName=self.table.name,
                    Key=serialize({"pk": usage_pk(d.key_id), "sk": DAY_PREFIX + d.day}),
                    UpdateExpression=f"{update} ADD {', '.join(clauses)}",
                    **expression.arguments(),
                )

    def _days(self, key_id: str, low: str, *, newest_first: bool = False, limit: int | None = None) -> list[UsageDay]:
        expression = Expression()
        arguments: dict[str, Any] = {
            "KeyConditionExpression": f"{expression.name('pk')} = {expression.value(usage_pk(key_id))} AND "
            f"{expression.name('sk')} BETWEEN {expression.value(low)} AND {expression.value('DAY$')}",
            "ConsistentRead": True,
            "ScanIndexForward": not newest_first,
            **expression.arguments(),
        }
        if limit is not None:
            arguments["Limit"] = limit
        days = []
        for item in self.table.query(**arguments):
            days.append(_day(key_id, item))
            if limit is not None and len(days) >= limit:
                break
        return days

    def usage_days(self, key_id: str, since_day: str) -> list[UsageDay]:
        return self._days(key_id, DAY_PREFIX + since_day)

    def last_used(self, key_ids: Sequence[str]) -> dict[str, str]:
        # One small Query per key (its newest day): keys are listed a page at a time, by admins.
        found = {}
        for key_id in key_ids:
            newest = self._days(key_id, DAY_PREFIX, newest_first=True, limit=1)
            if newest and newest[0].last_used_at:
                found[key_id] = newest[0].last_used_at
        return found

    # ---- audit --------------------------------------------------------------------------------------
    def append_audit(self, event: AuditEvent) -> None:
        item = {
            "pk": audit_pk(event.tenant_id),
            "sk": event.id,
            "doc": json.dumps(event.model_dump(mode="json"), ensure_ascii=False),
        }
        self.table.transact([self.table.put_new_action(item)], f"audit entry {event.id} exists already")

    def list_audit(self, tenant_id: str, *, limit: int, cursor: str | None) -> tuple[list[AuditEvent], str | None]:
        expression = Expression()
        condition = f"{expression.name('pk')} = {expression.value(audit_pk(tenant_id))}"
        if cursor:
            condition += f" AND {expression.name('sk')} < {expression.value(cursor)}"
        events: list[AuditEvent] = []
        more = False
        for item in self.table.query(
            KeyConditionExpression=condition,
            ScanIndexForward=False,
            ConsistentRead=True,
            Limit=limit + 1,
            **expression.arguments(),
        ):
            if len(events) == limit:
                more = True
                break
            events.append(AuditEvent.model_validate_json(item["doc"]))
        return events, (events[-1].id if more else None)


class DynamoActivityStore(DynamoActivity, TableAdapter):
    pass
