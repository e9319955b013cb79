"""Idempotency-Key records in SQLite (``idempotency.db`` beside the metadata database: a file of its own,
so claiming a key never waits for an ingestion's write lock on the metadata).

Expired records are ignored on read and taken over on claim; a prune at most once a minute (inside a
claim's transaction) deletes them, so the file holds about one day of keys.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ragline.adapters.local.sqlite_database import SqliteDatabase
from ragline.idempotency import IdempotencyRecord, StoredResponse

_SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    token TEXT NOT NULL,
    claimed_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    fingerprint TEXT,
    status INTEGER,
    content_type TEXT,
    body BLOB,
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency(expires_at);
"""

PRUNE_EVERY_SECONDS = 60.0


def _record(row: sqlite3.Row) -> IdempotencyRecord:
    response = None
    if row["status"] is not None:
        response = StoredResponse(status=row["status"], content_type=row["content_type"], body=bytes(row["body"]))
    return IdempotencyRecord(
        token=row["token"],
        claimed_at=row["claimed_at"],
        expires_at=row["expires_at"],
        fingerprint=row["fingerprint"],
        response=response,
    )


class SqliteIdempotencyStore(SqliteDatabase):
    """IdempotencyStore over one SQLite file."""

    def __init__(self, path: Path, *, busy_timeout: float = 30.0) -> None:
        super().__init__(path, _SCHEMA, what="the idempotency database", busy_timeout=busy_timeout)
        self._pruned_at = float("-inf")

    def claim(
        self, scope: str, key: str, token: str, *, now: float, ttl_seconds: float, stale_after_seconds: float
    ) -> IdempotencyRecord | None:
        # BEGIN IMMEDIATE: the read and the write below are one step for every other connection.
        with self._write() as db:
            if now - self._pruned_at >= PRUNE_EVERY_SECONDS:
                db.execute("DELETE FROM idempotency WHERE expires_at <= ?", (now,))
                self._pruned_at = now
            row = db.execute("SELECT * FROM idempotency WHERE scope = ? AND key = ?", (scope, key)).fetchone()
            if row is not None and row["expires_at"] > now:
                held = _record(row)
                if held.completed or now - held.claimed_at < stale_after_seconds:
                    return held
            db.execute(
                "INSERT OR REPLACE INTO idempotency (scope, key, token, claimed_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                (scope, key, token, now, now + ttl_seconds),
            )
        return None

    def complete(self, scope: str, key: str, token: str, fingerprint: str, response: StoredResponse) -> bool:
        with self._write() as db:
            done = db.execute(
                "UPDATE idempotency SET fingerprint = ?, status = ?, content_type = ?, body = ?"
                " WHERE scope = ? AND key = ? AND token = ? AND status IS NULL",
                (fingerprint, response.status, response.content_type, response.body, scope, key, token),
            )
        return done.rowcount == 1

    def release(self, scope: str, key: str, token: str) -> None:
        with self._write() as db:
            db.execute(
                "DELETE FROM idempotency WHERE scope = ? AND key = ? AND token = ? AND status IS NULL",
                (scope, key, token),
            )
