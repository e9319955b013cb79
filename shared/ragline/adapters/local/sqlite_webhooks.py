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
from typing import Any, TypeVar

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


T = TypeVar("T")


class _Grouped:
    """One write waiting for its group commit: ``op`` runs inside the group's transaction."""

    __slots__ = ("done", "error", "lead", "op", "result", "wake")

    def __init__(self, op: Callable[[sqlite3.Connection], Any]) -> None:
        self.op = op
        self.done = False
        self.lead = False  # this caller commits the queue (it was first, or was handed the turn)
        self.result: Any = None
        self.error: BaseException | None = None
        self.wake = threading.Event()


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
        # Writes waiting for a group commit, in arrival order; _leading while some caller commits them.
        self._queue: list[_Grouped] = []
        self._queue_lock = threading.Lock()
        self._leading = False
        super().__init__(path, _SCHEMA, what="the webhooks database", busy_timeout=busy_timeout)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock, super()._write() as db:
            yield db

    def _grouped(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op`` in a write transaction shared with the writes queued meanwhile (group commit), and
        return once that transaction is committed. The dispatcher's senders each record an attempt and
        a publisher adds an event's deliveries: one transaction for all of them, in the order they came,
        instead of one each, with every caller waiting its turn on the lock. If the transaction fails,
        every write in it gets the error (none is committed)."""
        grouped = _Grouped(op)
        with self._queue_lock:
            self._queue.append(grouped)
            if not self._leading:
                self._leading = grouped.lead = True
        if not grouped.lead:
            grouped.wake.wait()  # until committed by another caller, or handed the turn to commit
        if not grouped.done:
            self._commit_queue()
        if grouped.error is not None:
            raise grouped.error
        return grouped.result  # type: ignore[no-any-return]

    def _commit_queue(self) -> None:
        with self._queue_lock:
            batch, self._queue = self._queue, []
        try:
            with self._write() as db:
                for grouped in batch:
                    grouped.result = grouped.op(db)
        except BaseException as exc:
            for grouped in batch:
                grouped.error = exc
        nxt = None
        with self._queue_lock:
            for grouped in batch:
                grouped.done = True
            if self._queue:
                nxt = self._queue[0]  # it commits what queued meanwhile: callers take turns, none leads forever
                nxt.lead = True
            else:
                self._leading = False
        for grouped in batch:
            grouped.wake.set()
        if nxt is not None:
            nxt.wake.set()

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
        if not deliveries:
            return []
        rows = [_delivery_row(delivery) for delivery in deliveries]  # serialized outside the lock

        def insert(db: sqlite3.Connection) -> set[tuple[str, str]]:
            # One statement per 100 rows, not one per delivery: each call into SQLite lets go of the GIL,
            # and getting it back behind a dispatcher's busy senders is what a publisher waits for.
            inserted: set[tuple[str, str]] = set()
            for start in range(0, len(rows), 100):
                chunk = rows[start : start + 100]
                cursor = db.execute(
                    "INSERT OR IGNORE INTO deliveries (id, tenant_id, webhook_id, status, next_attempt_at, created_at,"
                    " doc) VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(chunk)) + " RETURNING webhook_id, id",
                    [value for row in chunk for value in row],
                )
                inserted.update((row[0], row[1]) for row in cursor.fetchall())
            return inserted

        inserted = self._grouped(insert)
        return [delivery for delivery in deliveries if (delivery.webhook_id, delivery.id) in inserted]

    def get_delivery(self, tenant_id: str, webhook_id: str, delivery_id: str) -> WebhookDelivery | None:
        with self._connection() as db:
            row = db.execute(
                "SELECT doc FROM deliveries WHERE tenant_id = ? AND webhook_id = ? AND id = ?",
                (tenant_id, webhook_id, delivery_id),
            ).fetchone()
        return _delivery(row["doc"]) if row else None

    def save_delivery(self, delivery: WebhookDelivery) -> None:
        """Returns once the delivery is committed, in a transaction shared with the other writes queued
        meanwhile (``_grouped``): the dispatcher's senders each record an attempt at once."""
        _, _, _, status, next_attempt_at, _, doc = _delivery_row(delivery)  # serialized outside the lock
        row = (status, next_attempt_at, doc, delivery.webhook_id, delivery.id)

        def update(db: sqlite3.Connection) -> None:
            # An UPDATE, not an upsert: a delivery whose endpoint was deleted meanwhile stays deleted.
            db.execute(
                "UPDATE deliveries SET status = ?, next_attempt_at = ?, doc = ? WHERE webhook_id = ? AND id = ?", row
            )

        self._grouped(update)

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
