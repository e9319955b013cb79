"""Webhook endpoints and the delivery log in SQLite (``webhooks.db`` beside the metadata database).

Pending deliveries live here until they succeed or run out of attempts, so a restart or a SIGKILL of
the server resumes them: the local dispatcher reads what is due from ``due_deliveries``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries(webhook_id, next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_by_age ON deliveries(created_at);
"""

_DUE_DELIVERIES = """
WITH RECURSIVE hooks(id) AS (
    SELECT (SELECT MIN(webhook_id) FROM deliveries WHERE status = 'pending')
    UNION ALL
    SELECT (SELECT MIN(webhook_id) FROM deliveries WHERE status = 'pending' AND webhook_id > hooks.id)
    FROM hooks WHERE hooks.id IS NOT NULL
), skip(id) AS MATERIALIZED (SELECT value FROM json_each(?3))
SELECT d.doc FROM hooks CROSS JOIN deliveries AS d
WHERE hooks.id IS NOT NULL
  AND hooks.id NOT IN (SELECT value FROM json_each(?2))
  AND d.rowid IN (
      SELECT rowid FROM deliveries
      WHERE webhook_id = hooks.id AND status = 'pending' AND next_attempt_at <= ?1 AND id NOT IN skip
      ORDER BY next_attempt_at, id LIMIT ?4
  )
ORDER BY d.next_attempt_at, d.id LIMIT ?5
"""


class _Save:
    """One save_delivery waiting for its group commit."""

    __slots__ = ("done", "error", "row")

    def __init__(self, row: tuple[str, str | None, str, str, str]) -> None:
        self.row = row
        self.done = False
        self.error: BaseException | None = None


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
        # Writers of this process take turns on a lock: waiting on SQLite's own lock would sleep in
        # steps of up to 100 ms (its busy handler polls), which a dispatcher's sixteen senders, each
        # writing its outcome, turned into a queue of sleepers. Other processes still meet busy_timeout.
        self._write_lock = threading.Lock()
        self._saves: list[_Save] = []  # outcomes waiting for the next group commit (under _saves_lock)
        self._saves_lock = threading.Lock()
        super().__init__(path, _SCHEMA, what="the webhooks database", busy_timeout=busy_timeout)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock, super()._write() as db:
            yield db

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
        """Returns once the delivery is committed. Saves made at the same time by other threads (the
        dispatcher's senders, each recording an attempt) share one transaction: whichever gets the
        write lock first commits every save waiting by then (group commit), the others find theirs done."""
        _, _, _, status, next_attempt_at, _, doc = _delivery_row(delivery)  # serialized outside the lock
        save = _Save((status, next_attempt_at, doc, delivery.webhook_id, delivery.id))
        with self._saves_lock:
            self._saves.append(save)
        with self._write_lock:
            if not save.done:
                with self._saves_lock:
                    batch, self._saves = self._saves, []
                try:
                    with super()._write() as db:  # this lock is held: the base class's transaction
                        # An UPDATE, not an upsert: a delivery whose endpoint was deleted meanwhile stays deleted.
                        db.executemany(
                            "UPDATE deliveries SET status = ?, next_attempt_at = ?, doc = ? WHERE webhook_id = ? AND id = ?",
                            [waiting.row for waiting in batch],
                        )
                except BaseException as exc:
                    for waiting in batch:
                        waiting.error = exc
                finally:
                    for waiting in batch:
                        waiting.done = True
        if save.error is not None:
            raise save.error

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
        # Index seeks only: the endpoints with pending deliveries one by one (a skip-scan of
        # deliveries_pending), then each one's soonest due; no pass over the whole backlog.
        with self._connection() as db:
            rows = db.execute(
                _DUE_DELIVERIES,
                (now, json.dumps(list(skip_webhooks)), json.dumps(list(skip_ids)), per_webhook, limit),
            ).fetchall()
        return [_delivery(row["doc"]) for row in rows]

    def next_due_at(self) -> str | None:
        with self._connection() as db:
            row = db.execute("SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending'").fetchone()
        return row[0]

    def prune_deliveries(self, created_before: str) -> int:
        with self._write() as db:
            return db.execute("DELETE FROM deliveries WHERE created_at < ?", (created_before,)).rowcount
