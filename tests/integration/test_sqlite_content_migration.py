"""Opening a database from before the unique-content index: the index is added, unless duplicates
the old race made are there (they are kept, and the index waits until they are deleted)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ragline.adapters.local.sqlite_store import SqliteMetadataStore
from ragline.errors import DuplicateContent
from ragline.models import Document, Job, new_id


def document(sha: str) -> Document:
    document_id = new_id("doc")
    return Document(
        id=document_id,
        tenant_id="t1",
        content_type="text/plain",
        content_sha256=sha,
        blob_key=f"t1/{document_id}/v1/a.txt",
        chunk_size=200,
        chunk_overlap=40,
    )


def enqueue(store: SqliteMetadataStore, doc: Document) -> None:
    store.enqueue(Job(id=new_id("job"), tenant_id="t1", document_id=doc.id), doc)


def old_database(path: Path, *shas: str) -> list[Document]:
    """A database as the old code left it: no unique-content index, documents with these bytes."""
    store = SqliteMetadataStore(path)
    with sqlite3.connect(path) as db:
        db.execute("DROP INDEX documents_unique_content")
    documents = [document(sha) for sha in shas]
    for doc in documents:
        enqueue(store, doc)
    return documents


def test_an_old_database_gets_the_index(tmp_path: Path) -> None:
    old_database(tmp_path / "m.db", "a", "b")
    store = SqliteMetadataStore(tmp_path / "m.db")
    with pytest.raises(DuplicateContent):
        enqueue(store, document("a"))


def test_an_old_database_with_duplicates_keeps_them_and_waits_for_their_delete(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, second = old_database(tmp_path / "m.db", "a", "a")
    store = SqliteMetadataStore(tmp_path / "m.db")
    assert "share their bytes" in caplog.text
    assert len(store.list_documents("t1")[0]) == 2
    store.delete_document("t1", second.id)
    store = SqliteMetadataStore(tmp_path / "m.db")
    with pytest.raises(DuplicateContent):
        enqueue(store, document("a"))
