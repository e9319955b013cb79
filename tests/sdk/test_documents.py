"""Documents through the SDK against a real `ragline serve`: every way of uploading, wait, get, list across pages,
stats, jobs, delete and delete by filters; with the sync and the async client."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from ragline_client import (
    BadRequestError,
    NotFoundError,
    RequestTooLargeError,
    UnsupportedMediaTypeError,
    WaitTimeoutError,
)
from ragline_client.models import Document, UploadResult

from tests.sdk.conftest import UPLOAD_LIMIT, Both
from tests.sdk.scripted import ScriptedServer, json_reply
from tests.support import Server, make_pdf


def unique(text: str) -> bytes:
    """Distinct bytes per call: identical bytes would be answered with the existing document."""
    return f"{text}\n\nReference {uuid.uuid4().hex}.".encode()


def test_upload_a_path_wait_get_and_stats(both: Both, s1: Any, tmp_path: Path) -> None:
    path = tmp_path / "handbook.pdf"
    path.write_bytes(
        make_pdf([f"Expense reports are due monthly. {uuid.uuid4().hex}", "Travel is booked through the portal."])
    )
    accepted = both(s1.documents.upload(path, metadata={"team": "ops"}, title="Handbook"))
    assert isinstance(accepted, UploadResult) and accepted.job_id and accepted.duplicate is False

    document = both(s1.documents.wait(accepted.document_id, timeout=90))
    assert isinstance(document, Document)
    assert (document.status, document.page_count, document.filename) == ("indexed", 2, "handbook.pdf")
    assert document.title == "Handbook" and document.metadata == {"team": "ops"} and document.indexed_at is not None
    assert both(s1.documents.get(accepted.document_id)) == document

    stats = both(s1.documents.stats(accepted.document_id))
    assert stats.document_id == accepted.document_id and stats.page_count == 2 and stats.processing_time_ms > 0
    job = both(s1.jobs.get(accepted.job_id))
    assert job.document_id == accepted.document_id and job.status == "succeeded"

    again = both(s1.documents.upload(path))  # the same bytes: the existing document
    assert again.duplicate is True and again.document_id == accepted.document_id


def test_upload_bytes_and_a_file_object(both: Both, s1: Any, tmp_path: Path) -> None:
    from_bytes = both(s1.documents.upload(unique("Shipping takes two days."), filename="shipping.md"))
    path = tmp_path / "returns.html"
    path.write_bytes(b"<h1>Returns</h1><p>" + unique("Returns are free within 30 days.") + b"</p>")
    with path.open("rb") as file:
        from_file = both(s1.documents.upload(file))
    for accepted, filename, content_type in (
        (from_bytes, "shipping.md", "text/markdown"),
        (from_file, "returns.html", "text/html"),
    ):
        document = both(s1.documents.wait(accepted.document_id, timeout=90))
        assert (document.status, document.filename, document.content_type) == ("indexed", filename, content_type)

    with pytest.raises(ValueError, match="filename="):
        both(s1.documents.upload(b"no name"))


def test_upload_text(both: Both, s1: Any) -> None:
    external_id = f"faq-{uuid.uuid4().hex}"
    accepted = both(
        s1.documents.upload_text(
            f"Our office opens at nine and closes at five. {external_id}",
            title="Hours",
            external_id=external_id,
            metadata={"v": 1},
        )
    )
    document = both(s1.documents.wait(accepted.document_id, timeout=90))
    assert (document.status, document.title, document.external_id, document.metadata) == (
        "indexed",
        "Hours",
        external_id,
        {"v": 1},
    )


def test_large_files_go_through_a_presigned_url(both: Both, sdk_server: Server) -> None:
    sent: list[httpx.Request] = []
    client = both.client(sdk_server.keys["s1"], sdk_server.url, record=sent, presigned_upload_threshold=64)
    big = unique("Warranty covers manufacturing defects for two years. " * 4)
    assert len(big) > 64

    accepted = both(client.documents.upload(big, filename="warranty.txt", metadata={"kind": "policy"}))
    document = both(client.documents.wait(accepted.document_id, timeout=90))
    assert (document.status, document.filename, document.metadata) == ("indexed", "warranty.txt", {"kind": "policy"})

    ticket, put = sent[0], sent[1]
    assert (ticket.method, ticket.url.path) == ("POST", "/v1/kb/uploads")
    assert (put.method, put.url.path) == ("PUT", f"/v1/kb/uploads/{accepted.document_id}")
    assert "token" in put.url.params and put.content == big
    assert "x-api-key" not in put.headers  # the URL's token is the authorization: the key never goes with the bytes
    assert put.headers["content-type"] == "text/plain"  # the type the URL was issued for

    # Below the threshold, or when asked, the file goes as multipart.
    small = both(client.documents.upload(b"tiny", filename="tiny.txt"))
    forced = both(client.documents.upload(unique("x" * 100), filename="forced.txt", presigned=False))
    assert [r.url.path for r in sent[-2:]] == ["/v1/kb/documents", "/v1/kb/documents"]
    assert small.document_id and forced.document_id
    with pytest.raises(ValueError, match="title"):
        both(client.documents.upload(big, filename="w.txt", title="W", presigned=True))


def test_upload_many_reports_each_file(both: Both, s1: Any) -> None:
    files = [_named("parking.txt", "Parking is free for visitors."), _named("tool.exe", "MZ")]
    result = both(s1.documents.upload_many(files, metadata={"batch": "b1"}))
    assert (result.successful, result.failed) == (1, 1)
    accepted, rejected = result.documents
    assert accepted.filename == "parking.txt" and accepted.document_id and accepted.status == "queued"
    assert rejected.filename == "tool.exe" and rejected.status == "rejected" and rejected.code == 415


def _named(name: str, text: str) -> Any:
    """A file object with a name, as open() gives."""
    file = io.BytesIO(unique(text))
    file.name = name
    return file


def test_list_iterates_every_page(both: Both, s1: Any, sdk_server: Server) -> None:
    kb = both(s1.knowledge_bases.create(f"paging {uuid.uuid4().hex[:8]}"))
    ids = [
        both(s1.documents.upload_text(f"Paging document {n} {uuid.uuid4().hex}.", kb_id=kb.id)).document_id
        for n in range(5)
    ]
    sent: list[httpx.Request] = []
    recording = both.client(sdk_server.keys["s1"], sdk_server.url, record=sent)

    listed = both.all(recording.documents.list(kb_id=kb.id, page_size=2))
    assert [d.id for d in listed] == ids  # creation order, across three pages
    assert [r.url.params.get("cursor") is None for r in sent] == [True, False, False]

    page = both(recording.documents.list_page(kb_id=kb.id, limit=2))
    assert len(page.documents) == 2 and page.next_cursor
    assert [d.id for d in both.all(recording.knowledge_bases.documents(kb.id, page_size=2))] == ids
    for document_id in ids:
        both(s1.documents.wait(document_id, timeout=90))
    assert {d.id for d in both.all(s1.documents.list(kb_id=kb.id, status="indexed"))} == set(ids)


def test_delete_and_delete_by_filters(both: Both, s1: Any) -> None:
    kb = both(s1.knowledge_bases.create(f"deleting {uuid.uuid4().hex[:8]}"))
    first, second, third = (
        both(s1.documents.upload_text(f"Deletable document {n} {uuid.uuid4().hex}.", kb_id=kb.id)).document_id
        for n in range(3)
    )
    for document_id in (first, second, third):
        both(s1.documents.wait(document_id, timeout=90))

    assert both(s1.documents.delete(first)).document_id == first
    with pytest.raises(NotFoundError):
        both(s1.documents.get(first))

    with pytest.raises(BadRequestError) as empty:
        both(s1.documents.delete_by_filters({}))  # empty filters delete nothing unless all=True
    assert empty.value.status_code == 400

    deleted = both(s1.documents.delete_by_filters({"kb_id": kb.id}))
    assert deleted.deleted_documents == 2 and deleted.filters["kb_id"] == kb.id
    assert both.all(s1.documents.list(kb_id=kb.id)) == []


def test_refused_uploads_raise_typed_errors(both: Both, s1: Any) -> None:
    with pytest.raises(UnsupportedMediaTypeError) as unsupported:
        both(s1.documents.upload(b"MZ\x90\x00", filename="tool.exe"))
    assert unsupported.value.status_code == 415 and unsupported.value.code == 415
    with pytest.raises(RequestTooLargeError) as too_large:
        both(s1.documents.upload(b"a" * (UPLOAD_LIMIT + 1), filename="big.txt", presigned=False))
    assert too_large.value.status_code == 413 and too_large.value.error


def test_another_tenants_documents_are_not_found(both: Both, s1: Any, s2: Any) -> None:
    accepted = both(s1.documents.upload_text(f"Tenant s1's secret plan {uuid.uuid4().hex}."))
    for attempt in (
        lambda: s2.documents.get(accepted.document_id),
        lambda: s2.documents.wait(accepted.document_id, timeout=5),
        lambda: s2.documents.stats(accepted.document_id),
        lambda: s2.documents.delete(accepted.document_id),
        lambda: s2.jobs.get(accepted.job_id),
    ):
        with pytest.raises(NotFoundError) as missing:
            both(attempt())
        assert missing.value.status_code == 404 and missing.value.body["code"] == 404
    assert both(s1.documents.get(accepted.document_id)).id == accepted.document_id  # untouched


def test_wait_gives_up_after_its_timeout(both: Both) -> None:
    document = {"id": "doc_slow", "status": "processing", "content_type": "text/plain"}
    with ScriptedServer(lambda n, request: json_reply(200, document)) as slow:
        client = both.client("rl_test", slow.url)
        with pytest.raises(WaitTimeoutError) as waited:
            both(client.documents.wait("doc_slow", timeout=0.5, poll_interval=0.1))
    assert waited.value.document.status == "processing"
    assert 3 <= len(slow.requests) <= 10  # polled, quickly, until the deadline
