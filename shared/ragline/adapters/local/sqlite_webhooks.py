"""Webhook endpoints and the delivery log in SQLite (``webhooks.db`` beside the metadata database).

Pending deliveries live here until they succeed or run out of attempts, so a restart or a SIGKILL of
the server resumes them: the local dispatcher reads what is due from ``due_deliveries``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from ragline.adapters.local.sqlite_database import SqliteDatabase
from ragline.errors import NotFound
from ragline.models import utcnow
from ragline.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhooks_by_tenant ON webhooks(tenant_id, id);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    status TEXT NOT NULL,
    next_attempt_at TEXT,
    created_at TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (webhook_id, id)
);
CREATE INDEX IF NOT EXISTS deliveries_by_webhook ON deliveries(tenant_id, webhook_id, id);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_by_age ON deliveries(created_at);
"""


def _endpoint(doc: str) -> WebhookEndpoint:
    return WebhookEndpoint.model_validate_json(doc)


def _delivery(doc: str) -> WebhookDelivery:
    return WebhookDelivery.model_validate_json(doc)


def _delivery_row(delivery: WebhookDelivery) -> tuple[str, str, str, str, str | None, str, str]:
    return (
        delivery.id,
        delivery.tenant_id,
        delivery.webhook_id,
        delivery.status.value,
        delivery.next_attempt_at if delivery.status is DeliveryStatus.PENDING else None,
        delivery.created_at,
        delivery.model_dump_json(),
    )


class SqliteWebhookStore(SqliteDatabase):
    """WebhookStore and DueDeliveries over one SQLite file."""

    def __init__(self, path: Path, *, busy_timeout: float = 30.0) -> None:
        super().__init__(path, _SCHEMA, what="the webhooks database", busy_timeout=busy_timeout)

    # ---- endpoints -------------------------------------------------------------------------------
    def create_webhook(self, endpoint: WebhookEndpoint) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO webhooks (id, tenant_id, doc) VALUES (?, ?, ?)",
                (endpoint.id, endpoint.tenant_id, endpoint.model_dump_json()),
            )

    def get_webhook(self, tenant_id: str, webhook_id: str) -> WebhookEndpoint | None:
        with self._connection() as db:
            row = db.execute(
                "SELECT doc FROM webhooks WHERE tenant_id = ? AND id = ?", (tenant_id, webhook_id)
            ).fetchone()
        return _endpoint(row["doc"]) if row else None

    def list_webhooks(self, tenant_id: str) -> list[WebhookEndpoint]:
        with self._connection() as db:
            rows = db.execute("SELECT doc FROM webhooks WHERE tenant_id = ? ORDER BY id", (tenant_id,)).fetchall()
        return [_endpoint(row["doc"]) for row in rows]

    def save_webhook(self, endpoint: WebhookEndpoint) -> None:
        with self._write() as db:
            # The run of failed events is the dispatcher's to count: a settings change keeps it.
            row = db.execute(
                "SELECT doc FROM webhooks WHERE tenant_id = ? AND id = ?", (endpoint.tenant_id, endpoint.id)
            ).fetchone()
            if row is None:
                raise NotFound("webhook endpoint not found", error="Webhook not found")
            db.execute("UPDATE webhooks SET doc = ? WHERE id = ?", (endpoint.model_dump_json(), endpoint.id))

    def delete_webhook(self, tenant_id: str, webhook_id: str) -> bool:
        with self._write() as db:
            deleted = db.execute("DELETE FROM webhooks WHERE tenant_id = ? AND id = ?", (tenant_id, webhook_id))
            if not deleted.rowcount:
                return False
            db.execute("DELETE FROM deliveries WHERE tenant_id = ? AND webhook_id = ?", (tenant_id, webhook_id))
        return True

    def _update(
        self, tenant_id: str, webhook_id: str, change: Callable[[WebhookEndpoint], bool]
    ) -> WebhookEndpoint | None:
        """Read, ``change`` and write the endpoint in one write transaction, so concurrent deliveries'
        counts do not overwrite each other. The endpoint as changed, or None if ``change`` declined."""
        with self._write() as db:
            row = db.execute(
                "SELECT doc FROM webhooks WHERE tenant_id = ? AND id = ?", (tenant_id, webhook_id)
            ).fetchone()
            if row is None:
                return None
            endpoint = _endpoint(row["doc"])
            if not change(endpoint):
                return None
            db.execute("UPDATE webhooks SET doc = ? WHERE id = ?", (endpoint.model_dump_json(), webhook_id))
            return endpoint

    def count_event_outcome(self, tenant_id: str, webhook_id: str, *, failed: bool) -> int:
        def count(endpoint: WebhookEndpoint) -> bool:
            before = endpoint.failed_events
            endpoint.failed_events = before + 1 if failed else 0
            return endpoint.failed_events != before

        endpoint = self._update(tenant_id, webhook_id, count)
        return endpoint.failed_events if endpoint else 0

    def disable_webhook(self, tenant_id: str, webhook_id: str, reason: str) -> WebhookEndpoint | None:
        def disable(endpoint: WebhookEndpoint) -> bool:
            if not endpoint.active:
                return False
            endpoint.active, endpoint.disabled_reason, endpoint.updated_at = False, reason, utcnow()
            return True

        return self._update(tenant_id, webhook_id, disable)

    # ---- deliveries ------------------------------------------------------------------------------
    def add_deliveries(self, deliveries: Sequence[WebhookDelivery]) -> list[WebhookDelivery]:
        added: list[WebhookDelivery] = []
        if not deliveries:
            return added
        with self._write() as db:
            for delivery in deliveries:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO deliveries (id, tenant_id, webhook_id, status, next_attempt_at, created_at,"
                    " doc) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    _delivery_row(delivery),
                )
                if cursor.rowcount:
                    added.append(delivery)
        return added

    def get_delivery(self, tenant_id: str, webhook_id: str, delivery_id: str) -> WebhookDelivery | None:
        with self._connection() as db:
            row = db.execute(
                "SELECT doc FROM deliveries WHERE tenant_id = ? AND webhook_id = ? AND id = ?",
                (tenant_id, webhook_id, delivery_id),
            ).fetchone()
        return _delivery(row["doc"]) if row else None

    def save_delivery(self, delivery: WebhookDelivery) -> None:
        with self._write() as db:
            # An UPDATE, not an upsert: a delivery whose endpoint was deleted meanwhile stays deleted.
            db.execute(
                "UPDATE deliveries SET status = ?, next_attempt_at = ?, doc = ? WHERE webhook_id = ? AND id = ?",
                (*_delivery_row(delivery)[3:5], delivery.model_dump_json(), delivery.webhook_id, delivery.id),
            )

    def list_deliveries(
        self, tenant_id: str, webhook_id: str, *, status: DeliveryStatus | None, limit: int, cursor: str | None
    ) -> tuple[list[WebhookDelivery], str | None]:
        sql = "SELECT doc FROM deliveries WHERE tenant_id = ? AND webhook_id = ?"
        params: list[object] = [tenant_id, webhook_id]
        if status is not None:
            sql += " AND status = ?"
            params.append(status.value)
        if cursor:
            sql += " AND id < ?"
            params.append(cursor)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit + 1)
        with self._connection() as db:
            rows = db.execute(sql, params).fetchall()
        page = [_delivery(row["doc"]) for row in rows[:limit]]
        return page, (page[-1].id if len(rows) > limit else None)

    # ---- the local dispatcher's ------------------------------------------------------------------
    def due_deliveries(
        self, now: str, *, limit: int, per_webhook: int, skip_webhooks: Sequence[str], skip_ids: Sequence[str]
    ) -> list[WebhookDelivery]:
        # A window per endpoint, so that one endpoint's backlog cannot fill the page and starve the rest.
        skip_hooks = json.dumps(list(skip_webhooks))
        skip_deliveries = json.dumps(list(skip_ids))
        with self._connection() as db:
            rows = db.execute(
                """
                SELECT doc FROM (
                    SELECT doc, next_attempt_at,
                           ROW_NUMBER() OVER (PARTITION BY webhook_id ORDER BY next_attempt_at, id) AS place
                    FROM deliveries
                    WHERE status = 'pending' AND next_attempt_at <= ?
                      AND webhook_id NOT IN (SELECT value FROM json_each(?))
                      AND id NOT IN (SELECT value FROM json_each(?))
                ) WHERE place <= ? ORDER BY next_attempt_at LIMIT ?
                """,
                (now, skip_hooks, skip_deliveries, per_webhook, limit),
            ).fetchall()
        return [_delivery(row["doc"]) for row in rows]

    def next_due_at(self) -> str | None:
        with self._connection() as db:
            row = db.execute("SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending'").fetchone()
        return row[0]

    def prune_deliveries(self, created_before: str) -> int:
        with self._write() as db:
            return db.execute("DELETE FROM deliveries WHERE created_at < ?", (created_before,)).rowcount
