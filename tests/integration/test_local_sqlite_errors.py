"""A locked or unreachable SQLite database is the domain's DependencyUnavailable, in every local
store (one mapping: adapters/local/sqlite_errors.py); other SQLite errors are bugs and stay as they are."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from ragline.adapters.local.sqlite_errors import unavailable_when_locked
from ragline.adapters.local.sqlite_store import SqliteMetadataStore
from ragline.adapters.local.vector_engine import EmbeddedVectorIndex
from ragline.errors import DependencyUnavailable
from ragline.models import Document, IndexedChunk, Job


@contextmanager
def write_locked(path: Path) -> Iterator[None]:
    """Another connection (another process, say) holds the database's write lock."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def locked(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    sqlite3.connect(path, isolation_level=None).execute("CREATE TABLE t (x)")
    with write_locked(path):
        sqlite3.connect(path, isolation_level=None, timeout=0).execute("BEGIN IMMEDIATE")


def cannot_open(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path)  # a directory


def wrong_statement(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "x.db").execute("SELECT * FROM missing")


def broken_constraint(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "x.db")
    db.execute("CREATE TABLE t (x PRIMARY KEY)")
    db.executemany("INSERT INTO t VALUES (?)", [(1,), (1,)])


@pytest.mark.parametrize(
    "cause, raised",
    [
        (locked, DependencyUnavailable),
        (cannot_open, DependencyUnavailable),
        (wrong_statement, sqlite3.OperationalError),
        (broken_constraint, sqlite3.IntegrityError),
    ],
)
def test_which_sqlite_errors_mean_unavailable(tmp_path: Path, cause: Callable[[Path], None], raised: type) -> None:
    with pytest.raises(raised) as info, unavailable_when_locked("the test database"):
        cause(tmp_path)
    if raised is DependencyUnavailable:
        assert info.value.status == 503 and info.value.message.startswith("the test database is unavailable: ")


def document(document_id: str) -> Document:
    return Document(
        id=document_id,
        tenant_id="t1",
        content_type="text/plain",
        content_sha256=document_id,
        blob_key=f"t1/{document_id}/v1/x.txt",
        chunk_size=256,
        chunk_overlap=32,
    )


def test_the_metadata_store_says_unavailable_while_another_connection_holds_the_lock(tmp_path: Path) -> None:
    store = SqliteMetadataStore(tmp_path / "metadata.db", busy_timeout=0.05)
    with write_locked(store.path), pytest.raises(DependencyUnavailable, match="database is locked"):
        store.enqueue(Job(id="job_1", tenant_id="t1", document_id="doc_1"), document("doc_1"))
    store.enqueue(Job(id="job_1", tenant_id="t1", document_id="doc_1"), document("doc_1"))  # lock gone: writes work
    assert store.get_document("t1", "doc_1") is not None


def test_a_metadata_store_that_cannot_open_its_file_says_unavailable(tmp_path: Path) -> None:
    (tmp_path / "metadata.db").mkdir()
    with pytest.raises(DependencyUnavailable, match="unable to open"):
        SqliteMetadataStore(tmp_path / "metadata.db")


def test_the_chunk_store_says_unavailable_while_another_connection_holds_the_lock(tmp_path: Path) -> None:
    index = EmbeddedVectorIndex(tmp_path / "vectors", 2, snapshot_interval_seconds=0)
    index._db.execute("PRAGMA busy_timeout=50")  # not 30 s: the test waits for it
    chunk = IndexedChunk(id="d-v1-00000", tenant_id="t1", document_id="d", text="x", payload={})
    try:
        with write_locked(tmp_path / "vectors" / "chunks.db"):
            with pytest.raises(DependencyUnavailable, match="chunk store"):
                index.replace_document("t1", "d", [chunk], np.ones((1, 2), dtype=np.float32))
            with pytest.raises(DependencyUnavailable, match="chunk store"):
                index.delete_document("t1", "d")
        index.replace_document("t1", "d", [chunk], np.ones((1, 2), dtype=np.float32))
        assert index.delete_document("t1", "d") == 1
    finally:
        index.close()
