"""MetadataStore + JobQueue contract: SQLite and DynamoDB (one table, under moto) behave the same."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from ragline.adapters.aws.dynamodb import documents as dynamodb_documents
from ragline.errors import Conflict, DuplicateContent, NotFound
from ragline.models import ApiKey, Document, DocumentStatus, Job, JobStatus, Scope, new_id

_sequence = itertools.count()


def ordered_id(prefix: str) -> str:
    """Time-ordered like new_id, and strictly increasing even within one millisecond."""
    return f"{prefix}_{next(_sequence):06d}{new_id('x')[2:]}"


def make_document(tenant_id: str = "t1", **fields: Any) -> Document:
    document_id = fields.pop("id", None) or ordered_id("doc")
    defaults: dict[str, Any] = {
        "content_type": "text/plain",
        "content_sha256": f"sha-of-{document_id}",
        "blob_key": f"{tenant_id}/{document_id}/v1/a.txt",
        "chunk_size": 200,
        "chunk_overlap": 40,
    }
    return Document(id=document_id, tenant_id=tenant_id, **{**defaults, **fields})


def make_job(document: Document, **fields: Any) -> Job:
    return Job(
        id=fields.pop("id", None) or ordered_id("job"), tenant_id=document.tenant_id, document_id=document.id, **fields
    )


def add(store: Any, document: Document) -> Job:
    """Store a document as the service does: with its job, in one write (enqueue)."""
    job = make_job(document)
    store.enqueue(job, document)
    return job


METADATA = {
    "int": 3,
    "zero": 0,
    "big": 2**53 + 1,
    "float": 0.1,
    "whole_float": 2.0,
    "negative": -1.5e-7,
    "true": True,
    "false": False,
    "none": None,
    "text": "naïve café — 東京 🚀",
    "empty": "",
    "list": [1, 2.5, "three", False, None, {"deep": [[]]}],
    "nested": {"a": {"b": {"c": 1.25}}, "empty": {}},
    "tag_ids": ["x", "y"],
}


# ---- documents ------------------------------------------------------------------------------------------
def test_create_then_get_round_trips_every_field(metadata_store) -> None:
    document = make_document(
        title="Title ü",
        filename="a.txt",
        metadata=METADATA,
        external_id="ext-1",
        source="inbox",
        kb_id="kb-2",
        size_bytes=123,
        page_count=4,
        chunk_count=9,
        version=3,
        indexed_at="2026-01-02T03:04:05.678Z",
        error="old error",
    )
    add(metadata_store, document)
    stored = metadata_store.get_document("t1", document.id)
    assert stored == document
    assert type(stored.metadata["whole_float"]) is float and type(stored.metadata["int"]) is int
    assert type(stored.metadata["big"]) is int and stored.metadata["big"] == 2**53 + 1
    assert stored.metadata["true"] is True and stored.metadata["none"] is None


def test_optional_fields_round_trip_as_none(metadata_store) -> None:
    document = make_document()
    add(metadata_store, document)
    stored = metadata_store.get_document("t1", document.id)
    assert stored == document
    assert (stored.title, stored.filename, stored.external_id, stored.error, stored.indexed_at) == (None,) * 5
    assert stored.metadata == {}


def test_get_is_scoped_to_the_tenant(metadata_store) -> None:
    document = make_document("t1")
    add(metadata_store, document)
    assert metadata_store.get_document("t2", document.id) is None
    assert metadata_store.get_document("t1", "doc_missing") is None


def test_find_by_content_sha256_returns_the_oldest_match_in_the_tenant(metadata_store) -> None:
    first = make_document(content_sha256="same")
    second = make_document(content_sha256="same", external_id="named")  # only named documents repeat bytes
    other_tenant = make_document("t2", content_sha256="same")
    for document in (first, second, other_tenant):
        add(metadata_store, document)
    assert metadata_store.find_document("t1", content_sha256="same") == first
    assert metadata_store.find_document("t2", content_sha256="same") == other_tenant
    assert metadata_store.find_document("t3", content_sha256="same") is None
    assert metadata_store.find_document("t1", content_sha256="other") is None


def test_find_by_external_id(metadata_store) -> None:
    document = make_document(external_id="crm-42")
    add(metadata_store, document)
    add(metadata_store, make_document(external_id="crm-43"))
    assert metadata_store.find_document("t1", external_id="crm-42") == document
    assert metadata_store.find_document("t2", external_id="crm-42") is None
    assert metadata_store.find_document("t1", external_id="crm-44") is None


def test_find_needs_exactly_one_key(metadata_store) -> None:
    with pytest.raises(ValueError):
        metadata_store.find_document("t1")
    with pytest.raises(ValueError):
        metadata_store.find_document("t1", content_sha256="a", external_id="b")


def test_external_id_is_unique_within_a_tenant(metadata_store) -> None:
    first = make_document(external_id="crm-42")
    add(metadata_store, first)
    second = make_document(external_id="crm-42")
    with pytest.raises(Conflict):
        add(metadata_store, second)
    assert metadata_store.get_document("t1", second.id) is None  # nothing half-written
    assert metadata_store.find_document("t1", external_id="crm-42") == first
    add(metadata_store, make_document("t2", external_id="crm-42"))  # other tenant: fine


def test_a_deleted_documents_external_id_can_be_used_again(metadata_store) -> None:
    first = make_document(external_id="crm-42")
    add(metadata_store, first)
    metadata_store.delete_document("t1", first.id)
    second = make_document(external_id="crm-42")
    add(metadata_store, second)
    assert metadata_store.find_document("t1", external_id="crm-42") == second


def test_update_changes_fields_and_stamps_updated_at(metadata_store) -> None:
    document = make_document(updated_at="2000-01-01T00:00:00.000Z", title="old")
    add(metadata_store, document)
    updated = metadata_store.update_document(
        "t1",
        document.id,
        status=DocumentStatus.INDEXED,
        chunk_count=12,
        title=None,
        metadata={"f": 1.5, "i": 2},
        indexed_at="2026-05-05T05:05:05.555Z",
    )
    assert updated.status is DocumentStatus.INDEXED
    assert (updated.chunk_count, updated.title, updated.indexed_at) == (12, None, "2026-05-05T05:05:05.555Z")
    assert updated.metadata == {"f": 1.5, "i": 2} and type(updated.metadata["i"]) is int
    assert updated.updated_at > document.updated_at
    assert metadata_store.get_document("t1", document.id) == updated
    assert updated.model_dump(exclude={"status", "chunk_count", "title", "metadata", "indexed_at", "updated_at"}) == (
        document.model_dump(exclude={"status", "chunk_count", "title", "metadata", "indexed_at", "updated_at"})
    )


def test_update_of_a_missing_document_is_not_found_and_creates_nothing(metadata_store) -> None:
    with pytest.raises(NotFound):
        metadata_store.update_document("t1", "doc_missing", status=DocumentStatus.FAILED)
    assert metadata_store.get_document("t1", "doc_missing") is None
    document = make_document("t1")
    add(metadata_store, document)
    with pytest.raises(NotFound):
        metadata_store.update_document("t2", document.id, status=DocumentStatus.FAILED)  # another tenant's


def test_update_rejects_unknown_fields(metadata_store) -> None:
    document = make_document()
    add(metadata_store, document)
    with pytest.raises(ValueError):
        metadata_store.update_document("t1", document.id, colour="red")


def test_update_moves_the_external_id(metadata_store) -> None:
    document = make_document(external_id="old")
    add(metadata_store, document)
    metadata_store.update_document("t1", document.id, external_id="new")
    assert metadata_store.find_document("t1", external_id="old") is None
    assert metadata_store.find_document("t1", external_id="new").id == document.id
    add(metadata_store, make_document(external_id="old"))  # the old one is free again


def test_updated_status_and_sha_are_what_lookups_see(metadata_store) -> None:
    document = make_document(content_sha256="before")
    add(metadata_store, document)
    metadata_store.update_document("t1", document.id, status=DocumentStatus.DELETING, content_sha256="after")
    assert [d.id for d in metadata_store.documents_with_status(DocumentStatus.DELETING)] == [document.id]
    assert metadata_store.documents_with_status(DocumentStatus.QUEUED) == []
    assert metadata_store.find_document("t1", content_sha256="before") is None
    assert metadata_store.find_document("t1", content_sha256="after").id == document.id


# ---- listing ----------------------------------------------------------------------------------------------
def list_all(metadata_store, tenant_id: str, limit: int, **filters: Any) -> tuple[list[str], int]:
    """Every id of a listing, page after page, and how many pages it took."""
    ids: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page, cursor = metadata_store.list_documents(tenant_id, limit=limit, cursor=cursor, **filters)
        pages += 1
        assert len(page) == limit or cursor is None, "a page short of the limit must be the last"
        ids += [document.id for document in page]
        if cursor is None:
            return ids, pages


def test_list_pages_through_a_tenants_documents_in_id_order(metadata_store) -> None:
    documents = [make_document("t1") for _ in range(7)]
    for document in reversed(documents):  # creation order must not matter, ids do
        add(metadata_store, document)
    add(metadata_store, make_document("t2"))
    add(metadata_store, make_document("t10"))
    page, cursor = metadata_store.list_documents("t1", limit=3)
    assert [d.id for d in page] == [d.id for d in documents[:3]] and cursor == documents[2].id
    assert page[0] == documents[0]
    ids, pages = list_all(metadata_store, "t1", limit=3)
    assert ids == [d.id for d in documents] and pages == 3


def test_list_of_exactly_limit_documents_has_no_next_cursor(metadata_store) -> None:
    for _ in range(3):
        add(metadata_store, make_document())
    page, cursor = metadata_store.list_documents("t1", limit=3)
    assert len(page) == 3 and cursor is None
    assert metadata_store.list_documents("t9", limit=3) == ([], None)


def test_list_after_a_deleted_cursor_continues(metadata_store) -> None:
    documents = [make_document() for _ in range(4)]
    for document in documents:
        add(metadata_store, document)
    _, cursor = metadata_store.list_documents("t1", limit=2)
    metadata_store.delete_document("t1", cursor)
    rest, next_cursor = metadata_store.list_documents("t1", limit=2, cursor=cursor)
    assert [d.id for d in rest] == [d.id for d in documents[2:]] and next_cursor is None


def test_filtered_pages_are_full_while_more_matches_exist(metadata_store, monkeypatch: pytest.MonkeyPatch) -> None:
    # DynamoDB filters after it reads a page: small pages make the store read several per listing.
    monkeypatch.setattr(dynamodb_documents, "FILTERED_PAGE_SIZE", 1)
    wanted = []
    for number in range(30):
        indexed = number % 5 == 4  # 6 matches, spread thinly among 24 others
        document = make_document(
            status=DocumentStatus.INDEXED if indexed else DocumentStatus.QUEUED, kb_id="kb-a" if number % 2 else "kb-b"
        )
        add(metadata_store, document)
        if indexed:
            wanted.append(document)
    page, cursor = metadata_store.list_documents("t1", status=DocumentStatus.INDEXED, limit=4)
    assert [d.id for d in page] == [d.id for d in wanted[:4]] and cursor == wanted[3].id
    ids, pages = list_all(metadata_store, "t1", limit=4, status=DocumentStatus.INDEXED)
    assert ids == [d.id for d in wanted] and pages == 2
    in_kb_a = [d.id for d in wanted if d.kb_id == "kb-a"]
    assert list_all(metadata_store, "t1", limit=2, status=DocumentStatus.INDEXED, kb_id="kb-a")[0] == in_kb_a
    assert len(list_all(metadata_store, "t1", limit=5, kb_id="kb-b")[0]) == 15


def test_list_with_a_filter_nothing_matches(metadata_store) -> None:
    for _ in range(5):
        add(metadata_store, make_document())
    assert metadata_store.list_documents("t1", status=DocumentStatus.FAILED, limit=2) == ([], None)
    assert metadata_store.list_documents("t1", kb_id="nope", limit=2) == ([], None)


# ---- cross-tenant queries -----------------------------------------------------------------------------------
def test_documents_with_status_spans_tenants_in_id_order(metadata_store) -> None:
    deleting = [make_document(tenant, status=DocumentStatus.DELETING) for tenant in ("t2", "t1", "t3")]
    for document in deleting:
        add(metadata_store, document)
    add(metadata_store, make_document("t1", status=DocumentStatus.INDEXED))
    found = metadata_store.documents_with_status(DocumentStatus.DELETING)
    assert found == sorted(deleting, key=lambda d: d.id)
    assert metadata_store.documents_with_status(DocumentStatus.FAILED) == []


def test_documents_from_source_spans_tenants(metadata_store) -> None:
    inbox = [make_document("t1", source="inbox"), make_document("t2", source="inbox")]
    for document in inbox:
        add(metadata_store, document)
    add(metadata_store, make_document("t1", source="api"))
    assert metadata_store.documents_from_source("inbox") == inbox
    assert metadata_store.documents_from_source("sync") == []


# ---- delete -------------------------------------------------------------------------------------------------
def test_delete_removes_the_document_and_its_jobs_only(metadata_store) -> None:
    doomed = make_document(external_id="ext", content_sha256="s", status=DocumentStatus.DELETING, source="inbox")
    kept = make_document()
    doomed_jobs = [make_job(doomed) for _ in range(3)]
    kept_job = make_job(kept)
    metadata_store.enqueue(doomed_jobs[0], doomed)
    for job in doomed_jobs[1:]:
        metadata_store.enqueue(job)
    metadata_store.enqueue(kept_job, kept)
    metadata_store.delete_document("t1", doomed.id)
    assert metadata_store.get_document("t1", doomed.id) is None
    assert [metadata_store.get_job("t1", job.id) for job in doomed_jobs] == [None] * 3
    assert metadata_store.latest_job_id("t1", doomed.id) is None
    assert metadata_store.find_document("t1", external_id="ext") is None
    assert metadata_store.find_document("t1", content_sha256="s") is None
    assert metadata_store.documents_with_status(DocumentStatus.DELETING) == []
    assert metadata_store.documents_from_source("inbox") == []
    assert metadata_store.get_document("t1", kept.id) == kept
    assert metadata_store.get_job("t1", kept_job.id) == kept_job
    metadata_store.delete_document("t1", doomed.id)  # again: no error


def test_delete_is_scoped_to_the_tenant(metadata_store) -> None:
    document = make_document("t1")
    add(metadata_store, document)
    metadata_store.delete_document("t2", document.id)
    assert metadata_store.get_document("t1", document.id) == document


# ---- API keys -----------------------------------------------------------------------------------------------
def test_keys_create_find_count(metadata_store) -> None:
    assert metadata_store.count_keys() == 0
    key = ApiKey(
        id="key_1",
        tenant_id="t1",
        key_hash="h" * 64,
        prefix="rl_abc",
        scopes=frozenset({Scope.SEARCH, Scope.CHAT}),
        expires_at="2030-01-01T00:00:00.000Z",
    )
    bare = ApiKey(id="key_2", tenant_id="t2", key_hash="g" * 64, prefix="rl_def", scopes=frozenset())
    metadata_store.create_key(key)
    metadata_store.create_key(bare)
    assert metadata_store.find_key("h" * 64) == key
    assert metadata_store.find_key("g" * 64) == bare
    assert metadata_store.find_key("nope") is None
    assert metadata_store.count_keys() == 2


def test_ping_answers(metadata_store) -> None:
    metadata_store.ping()


# ---- jobs and the queue -------------------------------------------------------------------------------------
def test_create_and_get_job_scoped_to_the_tenant(metadata_store) -> None:
    document = make_document()
    job = make_job(document, error="earlier")
    metadata_store.enqueue(job)
    assert metadata_store.get_job("t1", job.id) == job
    assert metadata_store.get_job("t2", job.id) is None
    assert metadata_store.get_job("t1", "job_missing") is None


def test_enqueue_writes_document_and_job_together(metadata_store) -> None:
    document = make_document(external_id="ext")
    job = make_job(document)
    metadata_store.enqueue(job, document)
    assert metadata_store.get_document("t1", document.id) == document
    assert metadata_store.get_job("t1", job.id) == job
    assert metadata_store.latest_job_id("t1", document.id) == job.id
    assert metadata_store.queued_count() == 1


def test_enqueue_that_conflicts_writes_neither(metadata_store) -> None:
    add(metadata_store, make_document(external_id="ext"))
    document = make_document(external_id="ext")
    job = make_job(document)
    with pytest.raises(Conflict):
        metadata_store.enqueue(job, document)
    assert metadata_store.get_document("t1", document.id) is None
    assert metadata_store.get_job("t1", job.id) is None


def test_enqueue_of_the_same_bytes_again_is_a_duplicate_until_deleted(metadata_store) -> None:
    first = make_document(content_sha256="same")
    add(metadata_store, first)
    again = make_document(content_sha256="same")
    job = make_job(again)
    with pytest.raises(DuplicateContent):
        metadata_store.enqueue(job, again)
    assert metadata_store.get_document("t1", again.id) is None
    assert metadata_store.get_job("t1", job.id) is None
    add(metadata_store, make_document("t2", content_sha256="same"))  # another tenant's bytes are its own
    add(metadata_store, make_document(content_sha256="same", external_id="named"))  # a named version may repeat
    metadata_store.delete_document("t1", first.id)
    add(metadata_store, again)
    assert metadata_store.get_document("t1", again.id) == again


def test_enqueue_of_a_new_version_replaces_the_document(metadata_store) -> None:
    first = make_document(external_id="ext", content_sha256="v1", metadata={"a": 1}, title="T")
    first_job = make_job(first)
    metadata_store.enqueue(first_job, first)
    metadata_store.update_document("t1", first.id, status=DocumentStatus.INDEXED, chunk_count=5)
    second = first.model_copy(
        update={"version": 2, "content_sha256": "v2", "metadata": {"b": 2.5}, "blob_key": "t1/x/v2/a.txt"}
    )
    second_job = make_job(second)
    metadata_store.enqueue(second_job, second)
    assert metadata_store.get_document("t1", first.id) == second
    assert metadata_store.find_document("t1", external_id="ext") == second
    assert metadata_store.find_document("t1", content_sha256="v2") == second
    assert metadata_store.find_document("t1", content_sha256="v1") is None
    assert metadata_store.documents_with_status(DocumentStatus.INDEXED) == []
    assert metadata_store.latest_job_id("t1", first.id) == second_job.id
    assert [d.id for d in metadata_store.list_documents("t1")[0]] == [first.id]


def test_enqueue_of_a_new_version_can_change_the_external_id(metadata_store) -> None:
    first = make_document(external_id=None, status=DocumentStatus.FAILED)
    metadata_store.enqueue(make_job(first), first)
    retried = first.model_copy(update={"external_id": "ext", "version": 2, "status": DocumentStatus.QUEUED})
    metadata_store.enqueue(make_job(retried), retried)
    assert metadata_store.find_document("t1", external_id="ext") == retried
    dropped = retried.model_copy(update={"external_id": None, "version": 3})
    metadata_store.enqueue(make_job(dropped), dropped)
    assert metadata_store.find_document("t1", external_id="ext") is None
    assert metadata_store.get_document("t1", first.id) == dropped


def test_enqueue_without_a_document_queues_a_job_for_an_existing_one(metadata_store) -> None:
    document = make_document()
    add(metadata_store, document)
    job = make_job(document)
    metadata_store.enqueue(job)
    assert metadata_store.get_job("t1", job.id) == job
    assert metadata_store.get_document("t1", document.id) == document


def test_claim_by_id_takes_a_queued_job_once(metadata_store) -> None:
    document = make_document()
    job = make_job(document)
    metadata_store.enqueue(job, document)
    claimed = metadata_store.claim(job.id)
    assert claimed is not None
    assert (claimed.id, claimed.status, claimed.attempts) == (job.id, JobStatus.PROCESSING, 1)
    assert claimed.updated_at >= job.updated_at
    assert metadata_store.get_job("t1", job.id) == claimed
    assert metadata_store.claim(job.id) is None  # a second delivery claims nothing
    assert metadata_store.get_job("t1", job.id).attempts == 1
    assert metadata_store.claim("job_missing") is None
    assert metadata_store.get_job("t1", "job_missing") is None
    assert metadata_store.queued_count() == 0


def test_claim_takes_back_a_stale_processing_job_only(metadata_store) -> None:
    """A redelivered message whose claim was left by a dead worker takes the job back; a live claim holds."""
    document = make_document()
    job = make_job(document)
    metadata_store.enqueue(job, document)
    first = metadata_store.claim(job.id)
    assert first is not None
    long_ago = "2000-01-01T00:00:00.000Z"
    assert metadata_store.claim(job.id, stale_before=long_ago) is None  # claimed after then: still live
    far_future = "2999-01-01T00:00:00.000Z"
    again = metadata_store.claim(job.id, stale_before=far_future)
    assert again is not None
    assert (again.status, again.attempts) == (JobStatus.PROCESSING, 2)
    metadata_store.finish(job.id)
    assert metadata_store.claim(job.id, stale_before=far_future) is None  # finished jobs are never taken back
    assert metadata_store.get_job("t1", job.id).status == JobStatus.SUCCEEDED
    assert metadata_store.claim("job_missing", stale_before=far_future) is None


def test_claim_without_id_takes_the_oldest_queued_job(metadata_store) -> None:
    documents = [make_document(tenant) for tenant in ("t2", "t1", "t3")]
    jobs = [make_job(document) for document in documents]
    for job, document in reversed(list(zip(jobs, documents, strict=True))):
        metadata_store.enqueue(job, document)
    metadata_store.claim(jobs[1].id)
    assert metadata_store.queued_count() == 2
    assert metadata_store.claim().id == jobs[0].id
    assert metadata_store.claim().id == jobs[2].id
    assert metadata_store.claim() is None


def test_finish_and_release(metadata_store) -> None:
    document = make_document()
    good, bad, flaky = (make_job(document) for _ in range(3))
    for job in (good, bad, flaky):
        metadata_store.enqueue(job, document if job is good else None)
        metadata_store.claim(job.id)
    metadata_store.finish(good.id)
    metadata_store.finish(bad.id, error="cannot parse")
    metadata_store.release(flaky.id, error="timeout")
    assert (metadata_store.get_job("t1", good.id).status, metadata_store.get_job("t1", good.id).error) == (
        JobStatus.SUCCEEDED,
        None,
    )
    assert (metadata_store.get_job("t1", bad.id).status, metadata_store.get_job("t1", bad.id).error) == (
        JobStatus.FAILED,
        "cannot parse",
    )
    released = metadata_store.get_job("t1", flaky.id)
    assert (released.status, released.error, released.attempts) == (JobStatus.QUEUED, "timeout", 1)
    assert metadata_store.queued_count() == 1
    again = metadata_store.claim()
    assert (again.id, again.attempts, again.error) == (flaky.id, 2, "timeout")
    metadata_store.finish(flaky.id)
    assert metadata_store.get_job("t1", flaky.id).error is None
    assert metadata_store.claim(good.id) is None  # finished jobs cannot be claimed


def test_finish_and_release_of_unknown_jobs_change_nothing(metadata_store) -> None:
    metadata_store.finish("job_missing")
    metadata_store.release("job_missing", error="x")
    assert metadata_store.get_job("t1", "job_missing") is None
    assert metadata_store.queued_count() == 0
    assert metadata_store.claim() is None


def test_latest_job_id_is_the_newest_job_of_that_document(metadata_store) -> None:
    document, other = make_document(), make_document()
    add(metadata_store, document)
    add(metadata_store, other)
    jobs = [make_job(document) for _ in range(3)]
    for job in jobs:
        metadata_store.enqueue(job)
    metadata_store.enqueue(make_job(other))
    assert metadata_store.latest_job_id("t1", document.id) == jobs[-1].id
    assert metadata_store.latest_job_id("t2", document.id) is None
    assert metadata_store.latest_job_id("t1", "doc_missing") is None


def test_recover_interrupted_requeues_or_fails_jobs_left_processing(metadata_store) -> None:
    document = make_document()
    fresh, worn, finished = (make_job(document) for _ in range(3))
    metadata_store.enqueue(fresh, document)
    metadata_store.enqueue(worn)
    metadata_store.enqueue(finished)
    for job in (fresh, worn, finished):
        metadata_store.claim(job.id)
    metadata_store.release(worn.id, error="transient")
    worn_processing = metadata_store.claim(worn.id)  # its second attempt
    metadata_store.finish(finished.id)
    exhausted = metadata_store.recover_interrupted(max_attempts=2)
    assert exhausted == [worn_processing]  # as it was when recovery found it
    assert metadata_store.get_job("t1", worn.id).status is JobStatus.FAILED
    assert metadata_store.get_job("t1", worn.id).error == "interrupted too many times"
    recovered = metadata_store.get_job("t1", fresh.id)
    assert (recovered.status, recovered.attempts) == (JobStatus.QUEUED, 1)
    assert metadata_store.get_job("t1", finished.id).status is JobStatus.SUCCEEDED
    assert metadata_store.queued_count() == 1
    assert metadata_store.claim().id == fresh.id
