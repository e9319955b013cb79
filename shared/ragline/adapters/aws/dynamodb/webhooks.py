"""Webhook endpoints and the delivery log (the WebhookStore port of the AWS backend), on the Table:
the DynamoDB twin of SqliteWebhookStore.

| item      | pk                              | sk                | other attributes                                  |
|-----------|---------------------------------|-------------------|---------------------------------------------------|
| endpoint  | ``TENANT#<t>``                  | ``WEBHOOK#<id>``  | doc (JSON), active, disabled_reason, failed_events |
| delivery  | ``DELIVERIES#<t>#<webhook id>`` | ``<delivery id>`` | doc (JSON), status, delete_after (TTL)            |

- Endpoints sit in their tenant's partition, so another tenant's id is simply not found; a tenant's
  are one Query (at most ``MAX_WEBHOOKS_PER_TENANT``), in id order (= creation order).
- ``active``, ``disabled_reason`` and ``failed_events`` are attributes of their own, so that counting a
  failed event (``ADD``) and disabling an endpoint (conditional on ``active = true``) are single atomic
  UpdateItems that cannot overwrite each other; the rest of the endpoint is the ``doc`` JSON.
- One partition per endpoint for its deliveries: delivery ids are time-ordered, so a Query backwards
  reads the log newest first, and the cursor is the last id shown (the same cursor SQLite gives).
  Deleting an endpoint deletes its endpoint item first (from then on nothing reaches its deliveries:
  every service path reads the endpoint first) and then every delivery of its partition.
- Deliveries carry ``delete_after`` (epoch seconds, ``retention_days`` after their creation), the
  table's TTL attribute: DynamoDB deletes them itself, within days of that time, so reads here skip
  expired ones meanwhile (what SQLite's hourly prune gives locally).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ragline.adapters.aws.dynamodb.table import (
    DEFAULT_TABLE_NAME,
    TTL_ATTRIBUTE,
    Expression,
    TableAdapter,
    serialize,
    tenant_pk,
)
from ragline.errors import Conflict, NotFound
from ragline.models import utcnow
from ragline.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

WEBHOOK_PREFIX = "WEBHOOK#"
# Kept as attributes of their own (see the module docstring), not in the endpoint's doc.
_ENDPOINT_STATE = frozenset({"active", "disabled_reason", "failed_events", "updated_at"})
# A page of a filtered delivery listing reads at most this many items per Query call.
_FILTERED_PAGE_SIZE = 100


def webhook_key(tenant_id: str, webhook_id: str) -> dict[str, str]:
    return {"pk": tenant_pk(tenant_id), "sk": WEBHOOK_PREFIX + webhook_id}


def deliveries_pk(tenant_id: str, webhook_id: str) -> str:
    return f"DELIVERIES#{tenant_id}#{webhook_id}"


def delivery_key(tenant_id: str, webhook_id: str, delivery_id: str) -> dict[str, str]:
    return {"pk": deliveries_pk(tenant_id, webhook_id), "sk": delivery_id}


def endpoint_item(endpoint: WebhookEndpoint) -> dict[str, Any]:
    item: dict[str, Any] = {
        **webhook_key(endpoint.tenant_id, endpoint.id),
        "id": endpoint.id,
        "tenant_id": endpoint.tenant_id,
        "doc": endpoint.model_dump_json(exclude=set(_ENDPOINT_STATE)),
        "active": endpoint.active,
        "failed_events": endpoint.failed_events,
        "updated_at": endpoint.updated_at,
    }
    if endpoint.disabled_reason is not None:
        item["disabled_reason"] = endpoint.disabled_reason
    return item


def endpoint_from_item(item: Mapping[str, Any]) -> WebhookEndpoint:
    fields = json.loads(item["doc"])
    fields.update(
        active=bool(item["active"]),
        disabled_reason=item.get("disabled_reason"),
        failed_events=int(item.get("failed_events", 0)),
        updated_at=item["updated_at"],
    )
    return WebhookEndpoint.model_validate(fields)


def _epoch(moment: str) -> int:
    return int(datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp())


class DynamoWebhookStore(TableAdapter):
    def __init__(
        self,
        table_name: str = DEFAULT_TABLE_NAME,
        *,
        retention_days: int = 30,
        region: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
    ) -> None:
        super().__init__(table_name, region=region, endpoint_url=endpoint_url, client=client)
        self.retention_seconds = retention_days * 86400

    # ---- endpoints -------------------------------------------------------------------------------
    def create_webhook(self, endpoint: WebhookEndpoint) -> None:
        if not self._put_new_or_existing(endpoint_item(endpoint), new=True):
            raise Conflict(f"webhook endpoint {endpoint.id} already exists")

    def get_webhook(self, tenant_id: str, webhook_id: str) -> WebhookEndpoint | None:
        item = self.table.get(webhook_key(tenant_id, webhook_id))
        return endpoint_from_item(item) if item else None

    def list_webhooks(self, tenant_id: str) -> list[WebhookEndpoint]:
        expression = Expression()
        condition = (
            f"{expression.name('pk')} = {expression.value(tenant_pk(tenant_id))} AND "
            f"begins_with({expression.name('sk')}, {expression.value(WEBHOOK_PREFIX)})"
        )
        items = self.table.query(KeyConditionExpression=condition, ConsistentRead=True, **expression.arguments())
        return [endpoint_from_item(item) for item in items]

    def save_webhook(self, endpoint: WebhookEndpoint) -> None:
        item = endpoint_item(endpoint)
        values = {name: item.get(name) for name in ("doc", "active", "failed_events", "updated_at", "disabled_reason")}
        # Only if it exists: UpdateItem alone would bring a deleted endpoint back.
        if self.table.update_existing(webhook_key(endpoint.tenant_id, endpoint.id), values) is None:
            raise NotFound("webhook endpoint not found", error="Webhook not found")

    def delete_webhook(self, tenant_id: str, webhook_id: str) -> bool:
        with self.table.down():
            answer = self.table.db.delete_item(
                TableName=self.table.name,
                Key=serialize(webhook_key(tenant_id, webhook_id)),
                ReturnValues="ALL_OLD",
            )
        if "Attributes" not in answer:
            return False
        # The endpoint is gone, so its log is out of reach already; now remove it, one Query page at a time.
        expression = Expression()
        condition = f"{expression.name('pk')} = {expression.value(deliveries_pk(tenant_id, webhook_id))}"
        keys = [
            {"pk": item["pk"], "sk": item["sk"]}
            for item in self.table.query(
                KeyConditionExpression=condition,
                ProjectionExpression=f"{expression.name('pk')}, {expression.name('sk')}",
                **expression.arguments(),
            )
        ]
        self.table.batch_delete(keys)
        return True

    def count_event_outcome(self, tenant_id: str, webhook_id: str, *, failed: bool) -> int:
        # ADD is atomic: concurrent deliveries' counts add up instead of overwriting each other.
        item = self.table.update_existing(
            webhook_key(tenant_id, webhook_id),
            {} if failed else {"failed_events": 0},
            adds={"failed_events": 1} if failed else None,
        )
        return int(item["failed_events"]) if item else 0

    def disable_webhook(self, tenant_id: str, webhook_id: str, reason: str) -> WebhookEndpoint | None:
        # Conditional on active: of concurrent callers exactly one flips it and gets the endpoint back.
        item = self.table.update_existing(
            webhook_key(tenant_id, webhook_id),
            {"active": False, "disabled_reason": reason, "updated_at": utcnow()},
            required={"active": True},
        )
        return endpoint_from_item(item) if item else None

    # ---- deliveries ------------------------------------------------------------------------------
    def _delivery_item(self, delivery: WebhookDelivery) -> dict[str, Any]:
        return {
            **delivery_key(delivery.tenant_id, delivery.webhook_id, delivery.id),
            "id": delivery.id,
            "status": delivery.status.value,
            "doc": delivery.model_dump_json(),
            TTL_ATTRIBUTE: _epoch(delivery.created_at) + self.retention_seconds,
        }

    def add_deliveries(self, deliveries: Sequence[WebhookDelivery]) -> list[WebhookDelivery]:
        added: list[WebhookDelivery] = []
        for delivery in deliveries:
            if self._put_delivery(delivery, new=True):
                added.append(delivery)
        return added

    def _put_delivery(self, delivery: WebhookDelivery, *, new: bool) -> bool:
        return self._put_new_or_existing(self._delivery_item(delivery), new=new)

    def _put_new_or_existing(self, item: Mapping[str, Any], *, new: bool) -> bool:
        """Put a new item (``new``: only if its key is not there yet) or overwrite a stored one (only
        if it is still there); False when that condition failed."""
        expression = Expression()
        condition = f"attribute_{'not_' if new else ''}exists({expression.name('pk')})"
        answer = self.table.write_if(
            "put_item", Item=serialize(item), ConditionExpression=condition, **expression.arguments()
        )
        return answer is not None

    def get_delivery(self, tenant_id: str, webhook_id: str, delivery_id: str) -> WebhookDelivery | None:
        item = self.table.get(delivery_key(tenant_id, webhook_id, delivery_id))
        return self._live_delivery(item) if item else None

    def save_delivery(self, delivery: WebhookDelivery) -> None:
        # Not an upsert: a delivery whose endpoint was deleted meanwhile stays deleted.
        self._put_delivery(delivery, new=False)

    def list_deliveries(
        self, tenant_id: str, webhook_id: str, *, status: DeliveryStatus | None, limit: int, cursor: str | None
    ) -> tuple[list[WebhookDelivery], str | None]:
        expression = Expression()
        pk = f"{expression.name('pk')} = {expression.value(deliveries_pk(tenant_id, webhook_id))}"
        # Older than the cursor (the last id of the previous page): ids are time-ordered.
        condition = f"{pk} AND {expression.name('sk')} < {expression.value(cursor)}" if cursor else pk
        arguments: dict[str, Any] = {
            "KeyConditionExpression": condition,
            "ScanIndexForward": False,
            "ConsistentRead": True,
            "Limit": _FILTERED_PAGE_SIZE if status is not None else limit + 1,
        }
        if status is not None:
            arguments["FilterExpression"] = f"{expression.name('status')} = {expression.value(status.value)}"
        found: list[WebhookDelivery] = []
        for item in self.table.query(**arguments, **expression.arguments()):
            delivery = self._live_delivery(item)
            if delivery is None:
                continue
            found.append(delivery)
            if len(found) > limit:
                break
        page = found[:limit]
        return page, (page[-1].id if len(found) > limit else None)

    def _live_delivery(self, item: Mapping[str, Any]) -> WebhookDelivery | None:
        """The delivery, or None once its retention is over (TTL deletes lag by up to days)."""
        if int(item.get(TTL_ATTRIBUTE, 0)) and int(item[TTL_ATTRIBUTE]) <= time.time():
            return None
        return WebhookDelivery.model_validate_json(item["doc"])
