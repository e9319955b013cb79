"""Documents, jobs, knowledge bases and API keys in SQLite (WAL). The jobs table is also the local job queue.

One connection per thread; writes that must not race use BEGIN IMMEDIATE.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

from ragline.adapters.local.sqlite_database import SqliteDatabase
from ragline.errors import Conflict, DuplicateContent, NotFound
from ragline.knowledge_bases import KnowledgeBase, KnowledgeBaseStatus, name_key
from ragline.models import ApiKey, Document, DocumentStatus, Job, JobStatus, Scope, utcnow

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    kb_id TEXT NOT NULL,
    title TEXT,
    filename TEXT,
    content_type TEXT NOT NULL,
    status TEXT NOT NULL,
    chunk_count INTEGER NOT NULL DEFAULT 0,
    page_count INTEGER NOT NULL DEFAULT 0,
    size_bytes INTEGER NOT NULL DEFAULT 0,
    content_sha256 TEXT NOT NULL,
    external_id TEXT,
    source TEXT NOT NULL,
    metadata TEXT NOT NULL,
    error TEXT,
    blob_key TEXT NOT NULL,
    chunk_size INTEGER NOT NULL,
    chunk_overlap INTEGER NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    indexed_at TEXT
);
CREATE INDEX IF NOT EXISTS documents_by_tenant ON documents(tenant_id, id);
CREATE INDEX IF NOT EXISTS documents_by_sha ON documents(tenant_id, content_sha256);
CREATE UNIQUE INDEX IF NOT EXISTS documents_by_external_id ON documents(tenant_id, external_id)
    WHERE external_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    document_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status, id);
CREATE TABLE IF NOT EXISTS knowledge_bases (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    description TEXT NOT NULL,
    chunk_size INTEGER,
    chunk_overlap INTEGER,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS knowledge_bases_by_name ON knowledge_bases(tenant_id, name_key);
CREATE INDEX IF NOT EXISTS knowledge_bases_by_status ON knowledge_bases(status, tenant_id);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);
"""
# Columns api_keys gained with the Keys API; a database from before gets them on open.
_KEY_COLUMNS_ADDED = {
    "name": "TEXT",
    "replaced_by": "TEXT",
    "rotated_from": "TEXT",
    "rate_limit_per_minute": "INTEGER",
}
_KEYS_BY_TENANT = "CREATE INDEX IF NOT EXISTS api_keys_by_tenant ON api_keys(tenant_id, id)"
_KEY_COLUMNS = tuple(ApiKey.model_fields)

# Two uploads of the same bytes racing must not both create a document. A document under an
# external id may repeat another's bytes (a new version names its document), so it is left out.
_UNIQUE_CONTENT = """
CREATE UNIQUE INDEX IF NOT EXISTS documents_unique_content ON documents(tenant_id, content_sha256)
    WHERE external_id IS NULL
"""
_CONTENT_DUPLICATES = """
SELECT COUNT(*) FROM (SELECT 1 FROM documents WHERE external_id IS NULL
    GROUP BY tenant_id, content_sha256 HAVING COUNT(*) > 1)
"""

log = logging.getLogger(__name__)

_DOC_COLUMNS = tuple(Document.model_fields)
_KB_COLUMNS = (*KnowledgeBase.model_fields, "name_key")
_KB_CHANGEABLE = frozenset({"name", "description", "chunk_size", "chunk_overlap"})
_JOB_COLUMNS = tuple(Job.model_fields)


def _doc_from_row(row: sqlite3.Row) -> Document:
    data = dict(row)
    data["metadata"] = json.loads(data["metadata"])
    return Document.model_validate(data)


def _doc_to_row(doc: Document) -> dict[str, Any]:
    data = doc.model_dump(mode="json")
    data["metadata"] = json.dumps(data["metadata"], ensure_ascii=False)
    return data


class SqliteMetadataStore(SqliteDatabase):
    """MetadataStore and JobQueue over one SQLite file."""

    def __init__(self, path: Path, *, busy_timeout: float = 30.0) -> None:
        super().__init__(path, _SCHEMA, what="the metadata database", busy_timeout=busy_timeout)
        with self._connection() as db:
            self._migrate_unique_content(db)
            self._migrate_key_columns(db)

    @staticmethod
    def _migrate_key_columns(db: sqlite3.Connection) -> None:
        present = {row["name"] for row in db.execute("PRAGMA table_info(api_keys)")}
        for column, kind in _KEY_COLUMNS_ADDED.items():
            if column not in present:
                db.execute(f"ALTER TABLE api_keys ADD COLUMN {column} {kind}")
        db.execute(_KEYS_BY_TENANT)

    @staticmethod
    def _migrate_unique_content(db: sqlite3.Connection) -> None:
        """Databases from before the index may hold duplicates the race made: they are left alone
        (they are someone's documents) and the index waits until they are deleted."""
        duplicated = db.execute(_CONTENT_DUPLICATES).fetchone()[0]
        if duplicated:
            log.warning(
                "%d sets of documents share their bytes; concurrent duplicate uploads are not prevented "
                "until all but one of each set are deleted",
                duplicated,
            )
            return
        db.execute(_UNIQUE_CONTENT)

    # ---- documents ----------------------------------------------------------------------
    def _insert_document(self, db: sqlite3.Connection, document: Document) -> None:
        row = _doc_to_row(document)
        marks = ",".join(f":{c}" for c in _DOC_COLUMNS)
        db.execute(f"INSERT INTO documents ({','.join(_DOC_COLUMNS)}) VALUES ({marks})", row)

    def get_document(self, tenant_id: str, document_id: str) -> Document | None:
        with self._connection() as db:
            row = db.execute(
                "SELECT * FROM documents WHERE tenant_id = ? AND id = ?", (tenant_id, document_id)
            ).fetchone()
        return _doc_from_row(row) if row else None

    def find_document(
        self, tenant_id: str, *, content_sha256: str | None = None, external_id: str | None = None
    ) -> Document | None:
        if (content_sha256 is None) == (external_id is None):
            raise ValueError("look up by exactly one of content_sha256 or external_id")
        column, value = ("content_sha256", content_sha256) if content_sha256 else ("external_id", external_id)
        with self._connection() as db:
            row = db.execute(
                f"SELECT * FROM documents WHERE tenant_id = ? AND {column} = ? ORDER BY id LIMIT 1", (tenant_id, value)
            ).fetchone()
        return _doc_from_row(row) if row else None

    def update_document(self, tenant_id: str, document_id: str, **fields: Any) -> Document:
        unknown = set(fields) - set(_DOC_COLUMNS)
        if unknown:
            raise ValueError(f"unknown document fields {sorted(unknown)}")
        fields["updated_at"] = utcnow()
        if "metadata" in fields:
            fields["metadata"] = json.dumps(fields["metadata"], ensure_ascii=False)
        for name, value in list(fields.items()):
            if isinstance(value, DocumentStatus):
                fields[name] = value.value
        assignments = ", ".join(f"{name} = :{name}" for name in fields)
        with self._write() as db:
            cur = db.execute(
                f"UPDATE documents SET {assignments} WHERE tenant_id = :_tenant AND id = :_id",
                {**fields, "_tenant": tenant_id, "_id": document_id},
            )
            if cur.rowcount == 0:
                raise NotFound(f"document {document_id} does not exist")
            row = db.execute("SELECT * FROM documents WHERE id = ?", (document_id,)).fetchone()
        return _doc_from_row(row)

    def list_documents(
        self,
        tenant_id: str,
        *,
        status: DocumentStatus | None = None,
        kb_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Document], str | None]:
        clauses, params = ["tenant_id = ?"], [tenant_id]
        if status is not None:
            clauses.append("status = ?")
            params.append(status.value)
        if kb_id is not None:
            clauses.append("kb_id = ?")
            params.append(kb_id)
        if cursor is not None:
            clauses.append("id > ?")
            params.append(cursor)
        with self._connection() as db:
            rows = db.execute(
                f"SELECT * FROM documents WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ?", (*params, limit + 1)
            ).fetchall()
        documents = [_doc_from_row(r) for r in rows[:limit]]
        next_cursor = documents[-1].id if len(rows) > limit else None
        return documents, next_cursor

    def delete_document(self, tenant_id: str, document_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM documents WHERE tenant_id = ? AND id = ?", (tenant_id, document_id))
            db.execute("DELETE FROM jobs WHERE tenant_id = ? AND document_id = ?", (tenant_id, document_id))

    def documents_with_status(self, status: DocumentStatus) -> list[Document]:
        with self._connection() as db:
            rows = db.execute("SELECT * FROM documents WHERE status = ? ORDER BY id", (status.value,)).fetchall()
        return [_doc_from_row(r) for r in rows]

    def documents_from_source(self, source: str) -> list[Document]:
        with self._connection() as db:
            rows = db.execute("SELECT * FROM documents WHERE source = ? ORDER BY id", (source,)).fetchall()
        return [_doc_from_row(r) for r in rows]

    # ---- jobs (and the local job queue) ---------------------------------------------------
    def _insert_job(self, db: sqlite3.Connection, job: Job) -> None:
        marks = ",".join(f":{c}" for c in _JOB_COLUMNS)
        db.execute(f"INSERT INTO jobs ({','.join(_JOB_COLUMNS)}) VALUES ({marks})", job.model_dump(mode="json"))

    def get_job(self, tenant_id: str, job_id: str) -> Job | None:
        with self._connection() as db:
            row = db.execute("SELECT * FROM jobs WHERE tenant_id = ? AND id = ?", (tenant_id, job_id)).fetchone()
        return Job.model_validate(dict(row)) if row else None

    def latest_job_id(self, tenant_id: str, document_id: str) -> str | None:
        with self._connection() as db:
            row = db.execute(
                "SELECT id FROM jobs WHERE tenant_id = ? AND document_id = ? ORDER BY id DESC LIMIT 1",
                (tenant_id, document_id),
            ).fetchone()
        return row["id"] if row else None

    def enqueue(self, job: Job, document: Document | None = None) -> None:
        """Write the document (new, or its new version) and its job in one transaction.

        DuplicateContent: another live document without an external id has these bytes."""
        with self._write() as db:
            if document is not None:
                try:
                    self._write_document(db, document)
                except sqlite3.IntegrityError as exc:
                    if "content_sha256" not in str(exc):
                        raise
                    raise DuplicateContent(f"tenant {document.tenant_id} already has these bytes") from exc
            self._insert_job(db, job)

    def _write_document(self, db: sqlite3.Connection, document: Document) -> None:
        exists = db.execute("SELECT 1 FROM documents WHERE id = ?", (document.id,)).fetchone()
        if exists:
            row = _doc_to_row(document)
            assignments = ", ".join(f"{c} = :{c}" for c in _DOC_COLUMNS if c != "id")
            db.execute(f"UPDATE documents SET {assignments} WHERE id = :id", row)
        else:
            self._insert_document(db, document)

    def claim(self, job_id: str | None = None, *, stale_before: str | None = None) -> Job | None:
        now = utcnow()
        with self._write() as db:
            if job_id is None:
                row = db.execute(
                    "SELECT id FROM jobs WHERE status = ? ORDER BY id LIMIT 1", (JobStatus.QUEUED.value,)
                ).fetchone()
            else:
                row = db.execute(
                    "SELECT id FROM jobs WHERE id = ? AND (status = ? OR (status = ? AND updated_at < ?))",
                    (job_id, JobStatus.QUEUED.value, JobStatus.PROCESSING.value, stale_before or ""),
                ).fetchone()
            if row is None:
                return None
            claimed = db.execute(
                "UPDATE jobs SET status = ?, attempts = attempts + 1, updated_at = ? WHERE id = ? RETURNING *",
                (JobStatus.PROCESSING.value, now, row["id"]),
            ).fetchone()
        return Job.model_validate(dict(claimed))

    def finish(self, job_id: str, *, error: str | None = None) -> None:
        status = JobStatus.FAILED if error else JobStatus.SUCCEEDED
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET status = ?, error = ?, updated_at = ? WHERE id = ?",
                (status.value, error, utcnow(), job_id),
            )

    def release(self, job_id: str, *, error: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET status = ?, error = ?, updated_at = ? WHERE id = ?",
                (JobStatus.QUEUED.value, error, utcnow(), job_id),
            )

    def recover_interrupted(self, max_attempts: int) -> list[Job]:
        """Jobs a crash left processing go back to the queue; those out of attempts are returned failed."""
        exhausted: list[Job] = []
        with self._write() as db:
            rows = db.execute("SELECT * FROM jobs WHERE status = ?", (JobStatus.PROCESSING.value,)).fetchall()
            for row in rows:
                job = Job.model_validate(dict(row))
                if job.attempts >= max_attempts:
                    db.execute(
                        "UPDATE jobs SET status = ?, error = ?, updated_at = ? WHERE id = ?",
                        (JobStatus.FAILED.value, "interrupted too many times", utcnow(), job.id),
                    )
                    exhausted.append(job)
                else:
                    db.execute(
                        "UPDATE jobs SET status = ?, updated_at = ? WHERE id = ?",
                        (JobStatus.QUEUED.value, utcnow(), job.id),
                    )
        return exhausted

    def queued_count(self) -> int:
        with self._connection() as db:
            return db.execute("SELECT COUNT(*) FROM jobs WHERE status = ?", (JobStatus.QUEUED.value,)).fetchone()[0]

    # ---- API keys ---------------------------------------------------------------------------
    @staticmethod
    def _insert_key(db: sqlite3.Connection, key: ApiKey) -> None:
        row = key.model_dump(mode="json")
        row["scopes"] = ",".join(sorted(s.value for s in key.scopes))
        marks = ",".join(f":{c}" for c in _KEY_COLUMNS)
        db.execute(f"INSERT INTO api_keys ({','.join(_KEY_COLUMNS)}) VALUES ({marks})", row)

    def create_key(self, key: ApiKey) -> None:
        with self._write() as db:
            self._insert_key(db, key)

    @staticmethod
    def _key(row: sqlite3.Row | None) -> ApiKey | None:
        if row is None:
            return None
        data = dict(row)
        data["scopes"] = frozenset(Scope(s) for s in data["scopes"].split(",") if s)
        return ApiKey.model_validate(data)

    def find_key(self, key_hash: str) -> ApiKey | None:
        with self._connection() as db:
            return self._key(db.execute("SELECT * FROM api_keys WHERE key_hash = ?", (key_hash,)).fetchone())

    def get_key(self, key_id: str) -> ApiKey | None:
        with self._connection() as db:
            return self._key(db.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone())

    def list_keys(self, tenant_id: str, *, limit: int, cursor: str | None) -> tuple[list[ApiKey], str | None]:
        with self._connection() as db:
            rows = db.execute(
                "SELECT * FROM api_keys WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?",
                (tenant_id, cursor or "", limit + 1),
            ).fetchall()
        keys = [key for key in map(self._key, rows[:limit]) if key is not None]
        return keys, (keys[-1].id if len(rows) > limit else None)

    def revoke_key(self, key_id: str, revoked_at: str) -> ApiKey | None:
        with self._write() as db:
            return self._key(
                db.execute(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? RETURNING *",
                    (revoked_at, key_id),
                ).fetchone()
            )

    def rotate_key(self, old_id: str, expires_at: str, new: ApiKey) -> None:
        with self._write() as db:
            changed = db.execute(
                "UPDATE api_keys SET replaced_by = ?, expires_at = ? "
                "WHERE id = ? AND revoked_at IS NULL AND replaced_by IS NULL",
                (new.id, expires_at, old_id),
            )
            if changed.rowcount != 1:
                raise Conflict(f"key {old_id} is revoked, rotated already, or gone", error="Key not rotatable")
            self._insert_key(db, new)

    def count_keys(self) -> int:
        with self._connection() as db:
            return db.execute("SELECT COUNT(*) FROM api_keys").fetchone()[0]

    # ---- knowledge bases ------------------------------------------------------------------------
    @staticmethod
    def _kb(row: sqlite3.Row | None) -> KnowledgeBase | None:
        if row is None:
            return None
        data = dict(row)
        del data["name_key"]
        return KnowledgeBase.model_validate(data)

    def create_kb(self, kb: KnowledgeBase) -> None:
        row = {**kb.model_dump(mode="json"), "name_key": name_key(kb.name)}
        marks = ",".join(f":{c}" for c in _KB_COLUMNS)
        try:
            with self._write() as db:
                db.execute(f"INSERT INTO knowledge_bases ({','.join(_KB_COLUMNS)}) VALUES ({marks})", row)
        except Conflict as exc:
            raise _duplicate_name(kb.name) from exc

    def get_kb(self, tenant_id: str, kb_id: str) -> KnowledgeBase | None:
        with self._connection() as db:
            return self._kb(
                db.execute(
                    "SELECT * FROM knowledge_bases WHERE tenant_id = ? AND id = ?", (tenant_id, kb_id)
                ).fetchone()
            )

    def list_kbs(self, tenant_id: str) -> list[KnowledgeBase]:
        with self._connection() as db:
            rows = db.execute("SELECT * FROM knowledge_bases WHERE tenant_id = ? ORDER BY id", (tenant_id,)).fetchall()
        return [kb for kb in map(self._kb, rows) if kb is not None]

    def update_kb(self, tenant_id: str, kb_id: str, changes: dict[str, Any]) -> KnowledgeBase:
        unknown = set(changes) - _KB_CHANGEABLE
        if unknown:
            raise ValueError(f"unchangeable knowledge base fields {sorted(unknown)}")
        fields = {**changes, "updated_at": utcnow()}
        if "name" in fields:
            fields["name_key"] = name_key(fields["name"])
        assignments = ", ".join(f"{name} = :{name}" for name in fields)
        try:
            with self._write() as db:
                row = db.execute(
                    f"UPDATE knowledge_bases SET {assignments} WHERE tenant_id = :_tenant AND id = :_id RETURNING *",
                    {**fields, "_tenant": tenant_id, "_id": kb_id},
                ).fetchone()
        except Conflict as exc:
            raise _duplicate_name(str(changes.get("name"))) from exc
        kb = self._kb(row)
        if kb is None:
            raise NotFound(f"knowledge base {kb_id} does not exist", error="Knowledge base not found")
        return kb

    def mark_kb_deleting(self, tenant_id: str, kb_id: str) -> KnowledgeBase | None:
        with self._write() as db:
            return self._kb(
                db.execute(
                    "UPDATE knowledge_bases SET status = ?, updated_at = ? WHERE tenant_id = ? AND id = ? RETURNING *",
                    (KnowledgeBaseStatus.DELETING.value, utcnow(), tenant_id, kb_id),
                ).fetchone()
            )

    def delete_kb(self, tenant_id: str, kb_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM knowledge_bases WHERE tenant_id = ? AND id = ?", (tenant_id, kb_id))

    def deleting_kb_ids(self, tenant_id: str) -> set[str]:
        with self._connection() as db:
            rows = db.execute(
                "SELECT id FROM knowledge_bases WHERE status = ? AND tenant_id = ?",
                (KnowledgeBaseStatus.DELETING.value, tenant_id),
            ).fetchall()
        return {row["id"] for row in rows}

    def kbs_deleting(self) -> list[KnowledgeBase]:
        with self._connection() as db:
            rows = db.execute(
                "SELECT * FROM knowledge_bases WHERE status = ? ORDER BY tenant_id, id",
                (KnowledgeBaseStatus.DELETING.value,),
            ).fetchall()
        return [kb for kb in map(self._kb, rows) if kb is not None]

    def kb_document_counts(self, tenant_id: str) -> dict[str, tuple[int, int]]:
        with self._connection() as db:
            rows = db.execute(
                "SELECT kb_id, COUNT(*) AS documents, COALESCE(SUM(chunk_count), 0) AS chunks "
                "FROM documents WHERE tenant_id = ? GROUP BY kb_id",
                (tenant_id,),
            ).fetchall()
        return {row["kb_id"]: (int(row["documents"]), int(row["chunks"])) for row in rows}


def _duplicate_name(name: str) -> Conflict:
    return Conflict(f"a knowledge base named {name!r} exists already", error="Duplicate knowledge base name")
