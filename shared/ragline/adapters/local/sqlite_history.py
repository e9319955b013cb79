"""The query history, its analytics counters and the tenants' corpus versions in SQLite
(``history.db`` beside the metadata database: recording an answer never waits on ingestion's
transactions). The counters are the same ones the DynamoDB twin keeps, updated in the same write
as the record, so both read analytics the same way."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ragline.adapters.local.sqlite_database import SqliteDatabase
from ragline.insight.models import DayStats, QueryRecord
from ragline.insight.text import latency_bucket, question_hash

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queries (
    tenant_id TEXT NOT NULL,
    query_id TEXT NOT NULL,
    delete_after INTEGER NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (tenant_id, query_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS queries_by_expiry ON queries(delete_after);
CREATE TABLE IF NOT EXISTS day_stats (
    tenant_id TEXT NOT NULL,
    day TEXT NOT NULL,
    questions INTEGER NOT NULL DEFAULT 0,
    unanswered INTEGER NOT NULL DEFAULT 0,
    cached INTEGER NOT NULL DEFAULT 0,
    rating_sum INTEGER NOT NULL DEFAULT 0,
    rating_count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS latency_days (
    tenant_id TEXT NOT NULL,
    day TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, day, bucket)
) WITHOUT ROWID;
-- The text apart from the day counts: popular questions sum narrow rows, then look up ten texts.
CREATE TABLE IF NOT EXISTS question_days (
    tenant_id TEXT NOT NULL,
    day TEXT NOT NULL,
    qhash TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, day, qhash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS question_texts (
    tenant_id TEXT NOT NULL,
    qhash TEXT NOT NULL,
    question TEXT NOT NULL,
    PRIMARY KEY (tenant_id, qhash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS document_days (
    tenant_id TEXT NOT NULL,
    day TEXT NOT NULL,
    document_id TEXT NOT NULL,
    title TEXT,
    count INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, day, document_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS document_refs (
    tenant_id TEXT NOT NULL,
    document_id TEXT NOT NULL,
    count INTEGER NOT NULL,
    last_referenced_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, document_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS corpus_versions (
    tenant_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kb_corpus_versions (
    tenant_id TEXT NOT NULL,
    kb_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, kb_id)
) WITHOUT ROWID;
"""

# Expired records are removed every this many writes (reads skip them meanwhile).
PRUNE_EVERY = 500


class SqliteHistoryStore(SqliteDatabase):
    """HistoryStore over one SQLite file."""

    def __init__(self, path: Path, *, retention_days: int = 90, busy_timeout: float = 30.0) -> None:
        super().__init__(path, _SCHEMA, what="the history database", busy_timeout=busy_timeout)
        self.retention_days = retention_days  # the per-day counters' (records carry their own delete_after)
        self._writes = 0

    def add_query(self, record: QueryRecord, *, delete_after: int) -> None:
        t, day = record.tenant_id, record.day
        with self._write() as db:
            db.execute(
                "INSERT INTO queries (tenant_id, query_id, delete_after, doc) VALUES (?, ?, ?, ?)",
                (t, record.query_id, delete_after, record.model_dump_json()),
            )
            db.execute(
                "INSERT INTO day_stats (tenant_id, day, questions, unanswered, cached) VALUES (?, ?, 1, ?, ?) "
                "ON CONFLICT (tenant_id, day) DO UPDATE SET questions = questions + 1, "
                "unanswered = unanswered + excluded.unanswered, cached = cached + excluded.cached",
                (t, day, int(not record.answered), int(record.cached)),
            )
            db.execute(
                "INSERT INTO latency_days (tenant_id, day, bucket, count) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (tenant_id, day, bucket) DO UPDATE SET count = count + 1",
                (t, day, latency_bucket(record.query_time_ms)),
            )
            qhash = question_hash(record.question_key)
            db.execute(
                "INSERT INTO question_days (tenant_id, day, qhash, count) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (tenant_id, day, qhash) DO UPDATE SET count = count + 1",
                (t, day, qhash),
            )
            db.execute(
                "INSERT OR IGNORE INTO question_texts (tenant_id, qhash, question) VALUES (?, ?, ?)",
                (t, qhash, record.question_key),
            )
            for document_id, title in record.cited_documents().items():
                db.execute(
                    "INSERT INTO document_days (tenant_id, day, document_id, title, count) VALUES (?, ?, ?, ?, 1) "
                    "ON CONFLICT (tenant_id, day, document_id) DO UPDATE SET count = count + 1, "
                    "title = COALESCE(excluded.title, title)",
                    (t, day, document_id, title),
                )
                db.execute(
                    "INSERT INTO document_refs (tenant_id, document_id, count, last_referenced_at) "
                    "VALUES (?, ?, 1, ?) ON CONFLICT (tenant_id, document_id) DO UPDATE SET count = count + 1, "
                    "last_referenced_at = MAX(last_referenced_at, excluded.last_referenced_at)",
                    (t, document_id, record.timestamp),
                )
        self._writes += 1
        if self._writes % PRUNE_EVERY == 0:
            self.prune(int(time.time()))

    def prune(self, now: int) -> None:
        """Drop what retention has passed: records by their ``delete_after``, counters by their day
        (DynamoDB's TTL does this on the table)."""
        cutoff = (datetime.fromtimestamp(now, UTC) - timedelta(days=self.retention_days)).date().isoformat()
        with self._write() as db:
            db.execute("DELETE FROM queries WHERE delete_after < ?", (now,))
            for table in ("day_stats", "latency_days", "question_days", "document_days"):
                db.execute(f"DELETE FROM {table} WHERE day < ?", (cutoff,))
            db.execute(
                "DELETE FROM question_texts WHERE NOT EXISTS (SELECT 1 FROM question_days d "
                "WHERE d.tenant_id = question_texts.tenant_id AND d.qhash = question_texts.qhash)"
            )

    def _record(self, db: sqlite3.Connection, tenant_id: str, query_id: str, now: int) -> QueryRecord | None:
        row = db.execute(
            "SELECT doc FROM queries WHERE tenant_id = ? AND query_id = ? AND delete_after >= ?",
            (tenant_id, query_id, now),
        ).fetchone()
        return QueryRecord.model_validate_json(row["doc"]) if row else None

    def get_query(self, tenant_id: str, query_id: str, *, now: int) -> QueryRecord | None:
        with self._connection() as db:
            return self._record(db, tenant_id, query_id, now)

    def list_queries(self, tenant_id: str, *, limit: int, offset: int, now: int) -> tuple[list[QueryRecord], int]:
        with self._connection() as db:
            total = db.execute(
                "SELECT COUNT(*) FROM queries WHERE tenant_id = ? AND delete_after >= ?", (tenant_id, now)
            ).fetchone()[0]
            rows = db.execute(
                "SELECT doc FROM queries WHERE tenant_id = ? AND delete_after >= ? "
                "ORDER BY query_id DESC LIMIT ? OFFSET ?",
                (tenant_id, now, limit, offset),
            ).fetchall()
        return [QueryRecord.model_validate_json(row["doc"]) for row in rows], int(total)

    def delete_query(self, tenant_id: str, query_id: str) -> bool:
        with self._write() as db:
            row = db.execute(
                "SELECT doc FROM queries WHERE tenant_id = ? AND query_id = ?", (tenant_id, query_id)
            ).fetchone()
            if row is None:
                return False
            record = QueryRecord.model_validate_json(row["doc"])
            db.execute("DELETE FROM queries WHERE tenant_id = ? AND query_id = ?", (tenant_id, query_id))
            # The deleted question must not live on among the popular ones.
            db.execute(
                "UPDATE question_days SET count = count - 1 WHERE tenant_id = ? AND day = ? AND qhash = ?",
                (tenant_id, record.day, question_hash(record.question_key)),
            )
            db.execute(
                "DELETE FROM question_days WHERE tenant_id = ? AND day = ? AND qhash = ? AND count <= 0",
                (tenant_id, record.day, question_hash(record.question_key)),
            )
            db.execute(
                "DELETE FROM question_texts WHERE tenant_id = ? AND qhash = ? AND NOT EXISTS "
                "(SELECT 1 FROM question_days WHERE tenant_id = ? AND qhash = ?)",
                (tenant_id, question_hash(record.question_key)) * 2,
            )
        return True

    def rate_query(
        self, tenant_id: str, query_id: str, rating: int, comment: str | None, *, now: int
    ) -> QueryRecord | None:
        with self._write() as db:
            record = self._record(db, tenant_id, query_id, now)
            if record is None:
                return None
            previous = record.rating
            record = record.model_copy(update={"rating": rating, "comment": comment})
            db.execute(
                "UPDATE queries SET doc = ? WHERE tenant_id = ? AND query_id = ?",
                (record.model_dump_json(), tenant_id, query_id),
            )
            db.execute(
                "UPDATE day_stats SET rating_sum = rating_sum + ?, rating_count = rating_count + ? "
                "WHERE tenant_id = ? AND day = ?",
                (rating - (previous or 0), 0 if previous is not None else 1, tenant_id, record.day),
            )
        return record

    def day_stats(self, tenant_id: str, since_day: str) -> list[DayStats]:
        with self._connection() as db:
            days = {
                row["day"]: DayStats(
                    day=row["day"],
                    questions=row["questions"],
                    unanswered=row["unanswered"],
                    cached=row["cached"],
                    rating_sum=row["rating_sum"],
                    rating_count=row["rating_count"],
                )
                for row in db.execute(
                    "SELECT * FROM day_stats WHERE tenant_id = ? AND day >= ? ORDER BY day", (tenant_id, since_day)
                )
            }
            for row in db.execute(
                "SELECT day, bucket, count FROM latency_days WHERE tenant_id = ? AND day >= ?", (tenant_id, since_day)
            ):
                if row["day"] in days:
                    days[row["day"]].latency_buckets[row["bucket"]] = row["count"]
        return list(days.values())

    def question_counts(self, tenant_id: str, since_day: str, limit: int) -> list[tuple[str, int]]:
        with self._connection() as db:
            totals = db.execute(
                "SELECT qhash, SUM(count) AS total FROM question_days WHERE tenant_id = ? AND day >= ? "
                "GROUP BY qhash HAVING total > 0 ORDER BY total DESC",
                (tenant_id, since_day),
            )
            # Ties are ordered by the text: read past ``limit`` until the count changes.
            top: list[tuple[str, int]] = []
            for row in totals:
                if len(top) >= limit and int(row["total"]) < top[-1][1]:
                    break
                top.append((row["qhash"], int(row["total"])))
            marks = ",".join("?" * len(top))
            texts = dict(
                db.execute(
                    f"SELECT qhash, question FROM question_texts WHERE tenant_id = ? AND qhash IN ({marks})",
                    (tenant_id, *[h for h, _ in top]),
                ).fetchall()
            )
        ranked = sorted(((texts.get(h, ""), n) for h, n in top), key=lambda item: (-item[1], item[0]))
        return ranked[:limit]

    def document_counts(self, tenant_id: str, since_day: str, limit: int) -> list[tuple[str, str | None, int]]:
        with self._connection() as db:
            rows = db.execute(
                "SELECT document_id, MAX(title) AS title, SUM(count) AS total FROM document_days "
                "WHERE tenant_id = ? AND day >= ? GROUP BY document_id ORDER BY total DESC, document_id LIMIT ?",
                (tenant_id, since_day, limit),
            ).fetchall()
        return [(row["document_id"], row["title"], int(row["total"])) for row in rows]

    def document_references(self, tenant_id: str, document_id: str) -> tuple[int, str | None]:
        with self._connection() as db:
            row = db.execute(
                "SELECT count, last_referenced_at FROM document_refs WHERE tenant_id = ? AND document_id = ?",
                (tenant_id, document_id),
            ).fetchone()
        return (int(row["count"]), row["last_referenced_at"]) if row else (0, None)

    def corpus_version(self, tenant_id: str, kb_id: str | None = None) -> int:
        with self._connection() as db:
            if kb_id is None:
                row = db.execute("SELECT version FROM corpus_versions WHERE tenant_id = ?", (tenant_id,)).fetchone()
            else:
                row = db.execute(
                    "SELECT version FROM kb_corpus_versions WHERE tenant_id = ? AND kb_id = ?", (tenant_id, kb_id)
                ).fetchone()
        return int(row["version"]) if row else 0

    def bump_corpus(self, tenant_id: str, kb_id: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO corpus_versions (tenant_id, version) VALUES (?, 1) "
                "ON CONFLICT (tenant_id) DO UPDATE SET version = version + 1",
                (tenant_id,),
            )
            db.execute(
                "INSERT INTO kb_corpus_versions (tenant_id, kb_id, version) VALUES (?, ?, 1) "
                "ON CONFLICT (tenant_id, kb_id) DO UPDATE SET version = version + 1",
                (tenant_id, kb_id),
            )
