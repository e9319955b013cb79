"""The webhook event catalogue (docs/events.md), from the flows that emit it, on the in-process bus:
which event each flow publishes, with which ``data``, for which tenant, and never any document text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragline.chat.extractive import ExtractiveAnswerer
from ragline.chat.service import ChatBounds, ChatService
from ragline.errors import DependencyUnavailable
from ragline.ingest.dropfolder import Change, DropBurst
from ragline.models import ChatRequest, DocumentStatus, IndexedChunk
from ragline.retrieval.filters import Term
from ragline.retrieval.service import SearchService
from ragline.webhooks.models import EVENT_TYPES
from tests.integration.local_world import World, open_world
from tests.integration.test_drop_folder_rule import EXE, LocalInbox, S3Inbox
from tests.support import make_blank_pdf, make_pdf

OTTERS = "Sea otters hold hands while they sleep so that they do not drift apart on the water."
BRIDGES = "Suspension bridges carry their deck on vertical hangers hung from two main cables."
GLACIERS = "Glaciers carve U-shaped valleys as they grind slowly downhill over thousands of years."
CORAL = "Coral reefs are built by colonies of tiny animals that secrete calcium carbonate skeletons."
TEXTS = (OTTERS, BRIDGES, GLACIERS, CORAL)


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    opened = open_world(tmp_path / "data")
    yield opened
    opened.close()


def index_all(world: World) -> None:
    while world.worker().run_once():
        pass


def data_of(world: World, event_type: str) -> list[dict[str, Any]]:
    return [event["data"] for event in world.published(event_type)]


# ---- document.uploaded, document.indexed -------------------------------------------------------------------
def test_uploaded_then_indexed_with_chunk_and_page_counts(world: World) -> None:
    pdf = make_pdf([OTTERS, BRIDGES, GLACIERS])
    accepted = world.ingest.accept("t1", pdf, filename="nature.pdf")
    index_all(world)
    doc = world.store.get_document("t1", accepted.document.id)
    assert doc.status == DocumentStatus.INDEXED and doc.chunk_count >= 1
    assert data_of(world, "document.uploaded") == [
        {"document_id": doc.id, "filename": "nature.pdf", "version": 1, "job_id": accepted.job_id}
    ]
    assert data_of(world, "document.indexed") == [
        {"document_id": doc.id, "chunk_count": doc.chunk_count, "page_count": 3, "version": 1}
    ]
    assert world.published("document.updated") == []  # a first version is no update


# ---- document.updated --------------------------------------------------------------------------------------
def test_a_new_version_under_the_same_external_id_is_updated(world: World) -> None:
    first = world.ingest.accept("t1", OTTERS.encode(), filename="a.txt", external_id="crm-42")
    index_all(world)
    second = world.ingest.accept("t1", BRIDGES.encode(), filename="a.txt", external_id="crm-42")
    index_all(world)
    assert second.document.id == first.document.id
    doc = world.store.get_document("t1", first.document.id)
    assert data_of(world, "document.updated") == [
        {"document_id": doc.id, "chunk_count": doc.chunk_count, "page_count": doc.page_count, "version": 2}
    ]
    assert [d["version"] for d in data_of(world, "document.indexed")] == [1, 2]


def test_a_failed_document_indexed_at_its_retry_is_not_an_update(world: World, monkeypatch) -> None:
    """No version of it was ever searchable: its first indexing is `indexed`, not `updated`."""
    world.ingest.settings = world.ingest.settings.model_copy(update={"max_ingest_attempts": 1})

    def embedder_down(texts: Sequence[str]) -> np.ndarray:
        raise DependencyUnavailable("the embedding model is down")

    with monkeypatch.context() as patched:
        patched.setattr(world.embedder, "embed_documents", embedder_down)
        failed = world.ingest.accept("t1", OTTERS.encode(), filename="a.txt")
        index_all(world)
    assert world.store.get_document("t1", failed.document.id).status == DocumentStatus.FAILED
    retried = world.ingest.accept("t1", OTTERS.encode(), filename="a.txt")  # the same bytes: retried
    index_all(world)
    assert (retried.document.id, retried.document.version) == (failed.document.id, 2)
    assert [d["version"] for d in data_of(world, "document.indexed")] == [2]
    assert world.published("document.updated") == []


@pytest.mark.parametrize("source", [LocalInbox, S3Inbox])
def test_an_overwritten_drop_folder_file_is_updated(world: World, tmp_path: Path, source) -> None:
    inbox = source(world, tmp_path / "inbox")
    inbox.put("t1/notes.txt", OTTERS.encode())
    inbox.event("t1/notes.txt", True)
    index_all(world)
    inbox.put("t1/notes.txt", BRIDGES.encode())
    inbox.event("t1/notes.txt", True)
    index_all(world)
    doc = world.store.find_document("t1", external_id="inbox:t1/notes.txt")
    assert doc is not None and doc.version == 2
    assert data_of(world, "document.updated") == [
        {"document_id": doc.id, "chunk_count": doc.chunk_count, "page_count": doc.page_count, "version": 2}
    ]
    where = "local" if source is LocalInbox else "s3"
    synced = [(d["inbox"], d["added"], d["updated"]) for d in data_of(world, "sync.completed")]
    assert synced == [(where, 1, 0), (where, 0, 1)]  # each event a burst of its own


# ---- sync.completed ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", [LocalInbox, S3Inbox])
def test_one_burst_is_one_sync_completed_per_tenant_with_its_counts(world: World, tmp_path: Path, source) -> None:
    inbox = source(world, tmp_path / "inbox")
    inbox.put("t1/old.txt", CORAL.encode())
    inbox.event("t1/old.txt", True)  # a burst of its own
    index_all(world)
    world.events.clear()

    inbox.put("t1/a.txt", OTTERS.encode())
    inbox.put("t1/b.txt", BRIDGES.encode())
    inbox.put("t1/sub/c.txt", GLACIERS.encode())
    inbox.put("t1/tool.exe", EXE)
    inbox.remove("t1/old.txt")
    inbox.put("t1/.~lock.a.txt", b"editor noise")  # not a drop-folder file: counts nowhere
    inbox.put("t2/d.txt", CORAL.encode())  # another tenant in the same burst: its own event
    burst = inbox.sync.burst() if source is LocalInbox else inbox.handler.drop_folder_burst()
    with burst:
        for relative in ("t1/a.txt", "t1/b.txt", "t1/sub/c.txt", "t1/tool.exe", "t1/.~lock.a.txt", "t2/d.txt"):
            inbox.event(relative, True)
        inbox.event("t1/old.txt", False)
        inbox.event("t1/a.txt", True)  # delivered twice: identical bytes change nothing
        assert world.published("sync.completed") == []  # not before the burst ends
    events = world.published("sync.completed")
    assert [e["tenant_id"] for e in events] == ["t1", "t2"]
    t1, t2 = (e["data"] for e in events)
    counts = ("added", "updated", "deleted", "failed", "unchanged")
    assert {name: t1[name] for name in counts} == {"added": 3, "updated": 0, "deleted": 1, "failed": 1, "unchanged": 1}
    assert {name: t2[name] for name in counts} == {"added": 1, "updated": 0, "deleted": 0, "failed": 0, "unchanged": 0}
    assert (t1["source"], t1["inbox"]) == ("inbox", "local" if source is LocalInbox else "s3")
    assert t1["started_at"] <= t1["finished_at"]
    assert set(t1) == {*counts, "source", "inbox", "started_at", "finished_at"}
    # The refused file is told by error.ingestion as well; the others are queued and deleted.
    assert [(e["tenant_id"], e["data"]["key"], e["data"]["code"]) for e in world.published("error.ingestion")] == [
        ("t1", "inbox/t1/tool.exe", 415)
    ]
    assert len(world.published("document.uploaded")) == 4
    assert len(world.published("document.deleted")) == 1


def test_a_burst_that_changed_nothing_says_nothing(world: World, tmp_path: Path) -> None:
    inbox = LocalInbox(world, tmp_path / "inbox")
    inbox.put("t1/a.txt", OTTERS.encode())
    inbox.event("t1/a.txt", True)
    world.events.clear()
    with inbox.sync.burst():
        inbox.event("t1/a.txt", True)  # touched, same bytes
        inbox.put("t1/x.tmp", b"half written")
        inbox.event("t1/x.tmp", True)
    assert world.events == []


def test_a_summary_the_bus_cannot_take_does_not_fail_the_burst() -> None:
    """Bus and outbox down as the burst ends: its changes are applied; failing it would only make an
    S3 batch come back to find nothing to do."""

    class DownBus:
        def publish(self, event_type: str, tenant_id: str, data: dict[str, Any]) -> None:
            raise DependencyUnavailable("the events topic and its outbox are down")

    burst = DropBurst(DownBus(), "s3")
    burst.record("t1", Change.ADDED)
    burst.finish()  # logged, not raised


def test_an_unreadable_inbox_file_is_failed_and_reported(world: World, tmp_path: Path, monkeypatch) -> None:
    import ragline.inbox as inbox_module

    def unreadable(path: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(path))

    inbox = LocalInbox(world, tmp_path / "inbox")
    inbox.put("t1/secret.txt", OTTERS.encode())
    monkeypatch.setattr(inbox_module, "_read_no_follow", unreadable)
    inbox.event("t1/secret.txt", True)
    [error] = data_of(world, "error.ingestion")
    assert error == {"key": "inbox/t1/secret.txt", "error": "the file could not be read: Permission denied"}
    assert str(tmp_path) not in json.dumps(error)  # the server's paths stay on the server
    [synced] = data_of(world, "sync.completed")
    assert (synced["added"], synced["failed"]) == (0, 1)


# ---- error.ingestion ---------------------------------------------------------------------------------------
def test_a_document_that_fails_says_why(world: World) -> None:
    accepted = world.ingest.accept("t1", make_blank_pdf(), filename="scan.pdf")
    index_all(world)
    doc = world.store.get_document("t1", accepted.document.id)
    assert doc.status == DocumentStatus.FAILED
    assert data_of(world, "error.ingestion") == [
        {
            "document_id": doc.id,
            "job_id": accepted.job_id,
            "error": "no extractable text — scanned PDF? (OCR is not supported yet)",
        }
    ]
    assert world.published("document.indexed") == []


# ---- document.deleted --------------------------------------------------------------------------------------
class SpyIndex:
    """The world's index as the ingest service sees it. When `document.deleted` is published it
    counts the chunks of that document the index still holds. With ``write_back``, the first
    removal of a document is followed by its chunks coming back, as an indexing of it that was under
    way would write them (the last ones written for it, kept from ``replace_document``)."""

    def __init__(self, world: World) -> None:
        self.inner = world.index
        self.write_back = False
        self.written: dict[str, tuple[list[IndexedChunk], np.ndarray]] = {}
        self.counts_when_deleted: dict[str, int] = {}
        world.ingest.__dict__["index"] = self  # IngestService.index is a cached property
        world.ingest.events.subscribe(self._seen)  # type: ignore[attr-defined]

    def _seen(self, event: dict[str, Any]) -> None:
        if event["type"] == "document.deleted":
            document_id = event["data"]["document_id"]
            self.counts_when_deleted[document_id] = self.inner.count(
                event["tenant_id"], Term("document_id", (document_id,))
            )

    def replace_document(
        self, tenant_id: str, document_id: str, chunks: Sequence[IndexedChunk], vectors: np.ndarray
    ) -> None:
        self.written[document_id] = (list(chunks), vectors)
        self.inner.replace_document(tenant_id, document_id, chunks, vectors)

    def delete_document(self, tenant_id: str, document_id: str) -> int:
        removed = self.inner.delete_document(tenant_id, document_id)
        if self.write_back:
            self.write_back = False
            self.inner.replace_document(tenant_id, document_id, *self.written[document_id])
        return removed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def chunk_count(world: World, tenant: str, document_id: str) -> int:
    return world.index.count(tenant, Term("document_id", (document_id,)))


@pytest.mark.parametrize("write_back", [False, True], ids=["plain", "chunks written back meanwhile"])
def test_deleted_is_published_once_the_index_holds_no_chunk_of_it(world: World, write_back: bool) -> None:
    spy = SpyIndex(world)
    accepted = world.ingest.accept("t1", OTTERS.encode(), filename="otters.txt")
    index_all(world)
    document_id = accepted.document.id
    assert chunk_count(world, "t1", document_id) > 0
    spy.write_back = write_back
    world.ingest.delete("t1", document_id)
    assert data_of(world, "document.deleted") == [{"document_id": document_id}]
    assert spy.counts_when_deleted == {document_id: 0}
    assert chunk_count(world, "t1", document_id) == 0


def test_delete_by_filters_publishes_each_deletion_once_its_chunks_are_gone(world: World) -> None:
    spy = SpyIndex(world)
    ids = [
        world.ingest.accept("t1", text.encode(), filename=f"{n}.txt", metadata={"team": "a"}).document.id
        for n, text in enumerate((OTTERS, BRIDGES, GLACIERS))
    ]
    kept = world.ingest.accept("t1", CORAL.encode(), filename="kept.txt", metadata={"team": "b"}).document.id
    index_all(world)
    assert world.ingest.delete_by_filter("t1", {"metadata.team": "a"}) == 3
    assert sorted(d["document_id"] for d in data_of(world, "document.deleted")) == sorted(ids)
    assert spy.counts_when_deleted == dict.fromkeys(ids, 0)
    assert chunk_count(world, "t1", kept) > 0


@pytest.mark.parametrize("source", [LocalInbox, S3Inbox])
def test_a_removed_drop_folder_file_is_deleted_once_its_chunks_are_gone(world: World, tmp_path: Path, source) -> None:
    spy = SpyIndex(world)
    inbox = source(world, tmp_path / "inbox")
    inbox.put("t1/a.txt", OTTERS.encode())
    inbox.event("t1/a.txt", True)
    index_all(world)
    doc = world.store.find_document("t1", external_id="inbox:t1/a.txt")
    spy.write_back = True  # an indexing under way writes the chunks back after the first removal
    inbox.remove("t1/a.txt")
    inbox.event("t1/a.txt", False)
    assert spy.counts_when_deleted == {doc.id: 0}
    assert data_of(world, "sync.completed")[-1]["deleted"] == 1


# ---- query.completed ---------------------------------------------------------------------------------------
@pytest.fixture
def chat(world: World) -> ChatService:
    for text in TEXTS:
        world.ingest.accept("t1", text.encode(), filename="x.txt", metadata={"n": TEXTS.index(text)})
    index_all(world)
    world.events.clear()
    search = SearchService(world.index, world.embedder)
    return ChatService(search, ExtractiveAnswerer(world.embedder), world.ingest.events, ChatBounds(frozenset(), 1000))


def test_chat_publishes_query_completed_with_the_response_figures(world: World, chat: ChatService) -> None:
    response = chat.answer("t1", ChatRequest(query="Why do sea otters hold hands?", limit=3))
    [event] = world.published("query.completed")
    assert event["tenant_id"] == "t1"
    assert event["data"] == {
        "query_id": response.query_id,
        "latency_ms": response.latency_ms,
        "source_count": len(response.sources),
        "model": response.model,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }
    assert event["data"]["source_count"] == 3


def test_chat_stream_publishes_the_same_query_completed(world: World, chat: ChatService) -> None:
    request = ChatRequest(query="How do glaciers shape valleys?", limit=2)
    prepared = chat.prepare("t1", request)
    frames = list(chat.stream_events("t1", prepared))
    done = frames[-1]["data"]
    [event] = world.published("query.completed")
    assert event["data"]["query_id"] == done["query_id"] == prepared.query_id
    assert event["data"]["latency_ms"] == done["latency_ms"]
    assert event["data"]["source_count"] == len(frames[0]["data"]["sources"]) == 2


# ---- every event: its tenant only, never document text ---------------------------------------------------------
def test_each_flow_emits_its_events_for_its_tenant_only_and_no_document_text(world: World, tmp_path: Path) -> None:
    tenants = {"t1": (OTTERS, BRIDGES), "t2": (GLACIERS, CORAL)}
    owner: dict[str, str] = {}  # document or query id -> its tenant
    for tenant, (first, _) in tenants.items():
        for accepted in (
            world.ingest.accept(tenant, first.encode(), filename="doc.txt", external_id="same-id"),
            world.ingest.accept(tenant, make_blank_pdf(), filename=f"blank-{tenant}.pdf"),  # fails
        ):
            owner[accepted.document.id] = tenant
    index_all(world)
    for tenant, (_, second) in tenants.items():
        world.ingest.accept(tenant, second.encode(), filename="doc.txt", external_id="same-id")  # updated
    index_all(world)
    inbox = LocalInbox(world, tmp_path / "inbox")
    for tenant, (first, _) in tenants.items():
        inbox.put(f"{tenant}/drop.txt", (first + " Dropped.").encode())
        inbox.put(f"{tenant}/tool.exe", EXE)
    with inbox.sync.burst():
        for tenant in tenants:
            inbox.event(f"{tenant}/drop.txt", True)
            inbox.event(f"{tenant}/tool.exe", True)
    index_all(world)
    for tenant in tenants:
        owner[world.store.find_document(tenant, external_id=f"inbox:{tenant}/drop.txt").id] = tenant
    search = SearchService(world.index, world.embedder)
    chat = ChatService(search, ExtractiveAnswerer(world.embedder), world.ingest.events, ChatBounds(frozenset(), 1000))
    for tenant, (_, second) in tenants.items():
        owner[chat.answer(tenant, ChatRequest(query=second[:40])).query_id] = tenant
        world.ingest.delete(tenant, world.store.find_document(tenant, external_id="same-id").id)

    emitted = {event["type"] for event in world.events}
    # webhook.*: the webhooks service's; kb.*: the knowledge-base service's (tests/integration/test_knowledge_bases.py)
    assert emitted == EVENT_TYPES - {"webhook.test", "webhook.disabled", "kb.created", "kb.deleted"}
    for event in world.events:
        data = event["data"]
        subject = data.get("document_id") or data.get("query_id")
        if subject is not None:
            assert owner[subject] == event["tenant_id"], event
        if "key" in data:
            assert data["key"].startswith(f"inbox/{event['tenant_id']}/")
        body = json.dumps(data)
        for text in TEXTS:  # neither the documents' text nor the question asked
            for part in (text[:30], text[20:50], text[-30:]):
                assert part not in body, (event["type"], body)
    assert {e["tenant_id"] for e in world.published("sync.completed")} == set(tenants)
