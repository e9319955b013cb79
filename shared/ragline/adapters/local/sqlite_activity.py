"""Key usage (per key and UTC day) and the audit log in SQLite (``activity.db`` beside the metadata
database, so the batched usage writes never wait on ingestion's transactions)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ragline.activity import AuditEvent, UsageDay, UsageDelta
from ragline.adapters.local.sqlite_database import SqliteDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage_days (
    key_id TEXT NOT NULL,
    day TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    last_used_at TEXT NOT NULL,
    PRIMARY KEY (key_id, day)
);
CREATE TABLE IF NOT EXISTS usage_routes (
    key_id TEXT NOT NULL,
    day TEXT NOT NULL,
    route TEXT NOT NULL,
    requests INTEGER NOT NULL,
    PRIMARY KEY (key_id, day, route)
);
CREATE TABLE IF NOT EXISTS usage_ips (
    key_id TEXT NOT NULL,
    day TEXT NOT NULL,
    ip TEXT NOT NULL,
    PRIMARY KEY (key_id, day, ip)
);
CREATE TABLE IF NOT EXISTS audit (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_tenant ON audit(tenant_id, id);
-- Append-only: the log refuses changes and removals whoever asks.
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


class SqliteActivityStore(SqliteDatabase):
    """UsageStore and AuditLog over one SQLite file."""

    def __init__(self, path: Path, *, busy_timeout: float = 30.0) -> None:
        super().__init__(path, _SCHEMA, what="the activity database", busy_timeout=busy_timeout)

    # ---- usage --------------------------------------------------------------------------------------
    def add_usage(self, deltas: Sequence[UsageDelta]) -> None:
        with self._write() as db:
            for d in deltas:
                db.execute(
                    "INSERT INTO usage_days (key_id, day, tenant_id, requests, errors, input_tokens, output_tokens, "
                    "last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key_id, day) DO UPDATE SET "
                    "requests = requests + excluded.requests, errors = errors + excluded.errors, "
                    "input_tokens = input_tokens + excluded.input_tokens, "
                    "output_tokens = output_tokens + excluded.output_tokens, "
                    "last_used_at = MAX(last_used_at, excluded.last_used_at)",
                    (
                        d.key_id,
                        d.day,
                        d.tenant_id,
                        d.requests,
                        d.errors,
                        d.input_tokens,
                        d.output_tokens,
                        d.last_used_at,
                    ),
                )
                db.executemany(
                    "INSERT INTO usage_routes (key_id, day, route, requests) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (key_id, day, route) DO UPDATE SET requests = requests + excluded.requests",
                    [(d.key_id, d.day, route, count) for route, count in d.routes.items()],
                )
                db.executemany(
                    "INSERT OR IGNORE INTO usage_ips (key_id, day, ip) VALUES (?, ?, ?)",
                    [(d.key_id, d.day, ip) for ip in d.ips],
                )

    def usage_days(self, key_id: str, since_day: str) -> list[UsageDay]:
        with self._connection() as db:
            days = {
                row["day"]: UsageDay(
                    key_id=key_id,
                    day=row["day"],
                    requests=row["requests"],
                    errors=row["errors"],
                    input_tokens=row["input_tokens"],
                    output_tokens=row["output_tokens"],
                    last_used_at=row["last_used_at"],
                )
                for row in db.execute(
                    "SELECT * FROM usage_days WHERE key_id = ? AND day >= ? ORDER BY day", (key_id, since_day)
                )
            }
            for row in db.execute(
                "SELECT day, route, requests FROM usage_routes WHERE key_id = ? AND day >= ?", (key_id, since_day)
            ):
                if row["day"] in days:
                    days[row["day"]].routes[row["route"]] = row["requests"]
            for row in db.execute("SELECT day, ip FROM usage_ips WHERE key_id = ? AND day >= ?", (key_id, since_day)):
                if row["day"] in days:
                    days[row["day"]].ips.append(row["ip"])
        return list(days.values())

    def last_used(self, key_ids: Sequence[str]) -> dict[str, str]:
        if not key_ids:
            return {}
        marks = ",".join("?" * len(key_ids))
        with self._connection() as db:
            rows = db.execute(
                f"SELECT key_id, MAX(last_used_at) AS at FROM usage_days WHERE key_id IN ({marks}) GROUP BY key_id",
                tuple(key_ids),
            ).fetchall()
        return {row["key_id"]: row["at"] for row in rows}

    # ---- audit --------------------------------------------------------------------------------------
    def append_audit(self, event: AuditEvent) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO audit (id, tenant_id, doc) VALUES (?, ?, ?)",
                (event.id, event.tenant_id, json.dumps(event.model_dump(mode="json"), ensure_ascii=False)),
            )

    def list_audit(self, tenant_id: str, *, limit: int, cursor: str | None) -> tuple[list[AuditEvent], str | None]:
        clause, params = "tenant_id = ?", [tenant_id]
        if cursor:
            clause += " AND id < ?"
            params.append(cursor)
        with self._connection() as db:
            rows = db.execute(
                f"SELECT doc FROM audit WHERE {clause} ORDER BY id DESC LIMIT ?", (*params, limit + 1)
            ).fetchall()
        events = [AuditEvent.model_validate_json(row["doc"]) for row in rows[:limit]]
        return events, (events[-1].id if len(rows) > limit else None)
