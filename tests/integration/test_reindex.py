"""`ragline reindex` against the scripted OpenSearch connection: the exact requests, in order.

Documents are real: ingested by IngestService into SQLite + files (with the embedded engine
standing in for the old index version), so the reindex reads originals and metadata as it would
in production. Only OpenSearch is scripted (see test_opensearch_transport.py).
"""

from __future__ import annotations

import argparse
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from ragline.adapters.aws.opensearch import queries as q
from ragline.adapters.local.events import InProcessEventBus
from ragline.adapters.local.filesystem import FilesystemBlobStore
from ragline.adapters.local.sqlite_store import SqliteMetadataStore
from ragline.adapters.local.vector_engine import EmbeddedVectorIndex
from ragline.config import Settings
from ragline.ingest.service import IngestService
from ragline.models import Document, DocumentStatus, IndexedChunk
from ragline.reindex import Reindexer, ReindexError, add_parser, chunks_from_original, run
from ragline.retrieval.filters import MatchAll
from tests.integration.test_opensearch_transport import (
    ALIAS,
    DIM,
    Harness,
    Sent,
    bulk_ok,
    expected_count,
    expected_dbq,
    expected_refresh,
    make_harness,
)

OLD, NEW = f"{ALIAS}-v1", f"{ALIAS}-v2"
ALIAS_ANSWER = {OLD: {"aliases": {ALIAS: {"is_write_index": True}}}}
MAPPING = {OLD: {"mappings": {"properties": {"embedding": {"type": "knn_vector", "dimension": DIM}}}}}
REFRESHED = {"_shards": {"total": 2, "successful": 2, "failed": 0}}


class WordTokenizer:
    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        return [[m.span() for m in re.finditer(r"\S+", text)] for text in texts]


class HashEmbedder:
    """Deterministic unit vectors from the text, DIM wide like the scripted index."""

    model_name = "hash"
    dimension = DIM
    tokenizer = WordTokenizer()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            rng = np.random.default_rng(zlib.crc32(text.encode()))
            vector = rng.normal(size=DIM).astype(np.float32)
            rows.append(vector / np.linalg.norm(vector))
        return np.array(rows, dtype=np.float32).reshape(len(texts), DIM)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


@dataclass
class World:
    settings: Settings
    store: SqliteMetadataStore
    blobs: FilesystemBlobStore
    embedder: HashEmbedder
    embedded: EmbeddedVectorIndex
    ingest: IngestService

    def add(self, tenant: str, text: str, external_id: str | None = None) -> Document:
        accepted = self.ingest.accept(tenant, text.encode(), filename="notes.txt", external_id=external_id)
        job = self.store.claim(accepted.job_id)
        assert job is not None
        done = self.ingest.process(job)
        assert done is not None and done.status == DocumentStatus.INDEXED, done
        return done


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    settings = Settings(data_dir=tmp_path, chunk_size=32, chunk_overlap=4)
    store = SqliteMetadataStore(settings.metadata_db)
    blobs = FilesystemBlobStore(settings.blob_dir)
    embedder = HashEmbedder()
    embedded = EmbeddedVectorIndex(settings.vector_dir, DIM, snapshot_interval_seconds=0)
    ingest = IngestService(settings, store, store, blobs, lambda: embedded, lambda: embedder, InProcessEventBus())
    yield World(settings, store, blobs, embedder, embedded, ingest)
    embedded.close()


LONG = " ".join(f"word{i}" for i in range(70))  # three chunks of 32 words with overlap


def stored(index: EmbeddedVectorIndex, doc: Document) -> list[IndexedChunk]:
    ids = [f"{doc.id}-v{doc.version}-{i:05d}" for i in range(doc.chunk_count)]
    payloads = index.get_payloads(doc.tenant_id, ids)
    return [
        IndexedChunk(id=i, tenant_id=doc.tenant_id, document_id=doc.id, text=payloads[i]["text"], payload=payloads[i])
        for i in ids
    ]


def test_chunks_from_original_are_the_chunks_ingestion_wrote(world):
    """The drift guard: reindex builds the same ids, texts and payloads as IngestService.process."""
    doc = world.add("t1", LONG, external_id="ext-1")
    doc = world.add("t1", LONG + " more", external_id="ext-1")  # version 2
    assert doc.version == 2 and doc.chunk_count == 3
    chunks, vectors = chunks_from_original(doc, world.blobs, world.embedder)
    written = stored(world.embedded, doc)
    assert [c.id for c in chunks] == [c.id for c in written] == [f"{doc.id}-v2-{i:05d}" for i in range(3)]
    for built, kept in zip(chunks, written, strict=True):
        assert built.text == kept.text
        assert {**built.payload, "text": built.text, "tenant_id": "t1", "document_id": doc.id} == kept.payload
    assert np.allclose(vectors, world.embedder.embed_documents([c.text for c in chunks]))


def bulk_into(index: str, chunks: list[IndexedChunk], vectors: np.ndarray) -> Sent:
    return Sent(
        "POST",
        "/_bulk",
        {"refresh": "false", "require_alias": "false"},
        q.bulk_actions(index, chunks, vectors),
    )


def count_in(index: str, tenant: str) -> Sent:
    return Sent("POST", f"/{index}/_count", {"routing": tenant}, q.count_query(tenant, MatchAll()))


def start_answers(h: Harness) -> None:
    h.cluster.answer(200, ALIAS_ANSWER).answer(404)  # GET /_alias, HEAD /<new>
    h.cluster.answer(200, {"acknowledged": True, "index": NEW})


def reindexer(world: World, h: Harness, **options: Any) -> Reindexer:
    return Reindexer(h.index, world.store, world.blobs, world.embedder, say=lambda _: None, **options)


def test_reindex_all_tenants_sends_exactly_these_requests(world):
    a = world.add("t1", LONG)
    b = world.add("t2", "short note about turbines")
    h = make_harness()
    built = {d.id: chunks_from_original(d, world.blobs, world.embedder) for d in (a, b)}
    start_answers(h)
    for doc in (a, b):
        h.cluster.answer(200, bulk_ok(*[c.id for c in built[doc.id][0]]))
    h.cluster.answer(200, REFRESHED).answer(200, {"count": 3}).answer(200, {"count": 1})
    h.cluster.answer(200, {"acknowledged": True})

    report = reindexer(world, h).run()

    assert h.cluster.sent == [
        Sent("GET", f"/_alias/{ALIAS}", {}, None),
        Sent("HEAD", f"/{NEW}", {}, None),
        Sent("PUT", f"/{NEW}", {}, q.index_definition(DIM)),  # no alias yet: nobody reads it
        bulk_into(NEW, *built[a.id]),
        bulk_into(NEW, *built[b.id]),
        Sent("POST", f"/{NEW}/_refresh", {}, None),
        count_in(NEW, "t1"),
        count_in(NEW, "t2"),
        Sent("POST", "/_aliases", {}, q.alias_swap(ALIAS, OLD, NEW)),
    ]
    assert [s.path for s in h.cluster.sent].count("/_aliases") == 1
    assert (report.from_index, report.to_index, report.documents, report.chunks) == (OLD, NEW, 2, 4)
    assert report.caught_up == report.removed == report.unsettled == []


def test_reindex_of_one_tenant_copies_the_others_server_side(world):
    a = world.add("t1", LONG)
    world.add("t2", "someone else's note")
    h = make_harness()
    chunks, vectors = chunks_from_original(a, world.blobs, world.embedder)
    h.cluster.answer(200, ALIAS_ANSWER).answer(404).answer(200, MAPPING).answer(200, {"acknowledged": True})
    h.cluster.answer(200, bulk_ok(*[c.id for c in chunks]))
    h.cluster.answer(200, {"took": 9, "created": 1, "updated": 0, "failures": []})
    h.cluster.answer(200, REFRESHED).answer(200, {"count": 3}).answer(200, {"acknowledged": True})

    report = reindexer(world, h).run("t1")

    assert h.cluster.sent[2] == Sent("GET", f"/{OLD}/_mapping", {}, None)  # same dimension: others may be copied
    assert h.cluster.sent[4] == bulk_into(NEW, chunks, vectors)
    assert h.cluster.sent[5] == Sent(
        "POST", "/_reindex", {"wait_for_completion": "true", "refresh": "true"}, q.copy_other_tenants(OLD, NEW, "t1")
    )
    assert h.cluster.sent[6:] == [
        Sent("POST", f"/{NEW}/_refresh", {}, None),
        count_in(NEW, "t1"),
        Sent("POST", "/_aliases", {}, q.alias_swap(ALIAS, OLD, NEW)),
    ]
    assert (report.documents, report.chunks, report.copied_chunks) == (1, 3, 1)


def test_one_tenant_cannot_move_to_another_dimension(world):
    world.add("t1", LONG)
    h = make_harness()
    other = {OLD: {"mappings": {"properties": {"embedding": {"type": "knn_vector", "dimension": 384}}}}}
    h.cluster.answer(200, ALIAS_ANSWER).answer(404).answer(200, other)
    with pytest.raises(ReindexError, match="reindex without --tenant"):
        reindexer(world, h).run("t1")
    assert [s.method for s in h.cluster.sent] == ["GET", "HEAD", "GET"]  # nothing created


def test_a_wrong_count_never_switches_the_alias(world):
    a = world.add("t1", LONG)
    h = make_harness()
    start_answers(h)
    h.cluster.answer(200, bulk_ok(*[f"{a.id}-v1-{i:05d}" for i in range(3)]))
    h.cluster.answer(200, REFRESHED).answer(200, {"count": 2})
    with pytest.raises(ReindexError, match="holds 2 chunks of tenant t1, 3 were written: not switching"):
        reindexer(world, h).run()
    assert "/_aliases" not in [s.path for s in h.cluster.sent]


def test_a_leftover_next_version_is_refused_or_discarded(world):
    h = make_harness()
    h.cluster.answer(200, ALIAS_ANSWER).answer(200)  # HEAD /<new>: it exists
    with pytest.raises(ReindexError, match="--discard-unfinished"):
        reindexer(world, h).run()

    h = make_harness()
    h.cluster.answer(200, ALIAS_ANSWER).answer(200)
    h.cluster.answer(200, ALIAS_ANSWER).answer(200, {"acknowledged": True})  # delete_index_version's check, DELETE
    h.cluster.answer(200, {"acknowledged": True})  # PUT
    h.cluster.answer(200, REFRESHED).answer(200, {"acknowledged": True})  # no documents: refresh, switch
    reindexer(world, h).run(discard_unfinished=True)
    assert [(s.method, s.path) for s in h.cluster.sent] == [
        ("GET", f"/_alias/{ALIAS}"),
        ("HEAD", f"/{NEW}"),
        ("GET", f"/_alias/{ALIAS}"),
        ("DELETE", f"/{NEW}"),
        ("PUT", f"/{NEW}"),
        ("POST", f"/{NEW}/_refresh"),
        ("POST", "/_aliases"),
    ]


def test_from_chunks_re_embeds_the_stored_texts(world):
    a = world.add("t1", LONG)
    h = make_harness()
    kept = stored(world.embedded, a)
    hits = [
        {"_source": {"chunk_id": c.id, "tenant_id": "t1", "document_id": a.id, "text": c.text, "payload": c.payload}}
        for c in kept
    ]
    start_answers(h)
    h.cluster.answer(200, {"hits": {"hits": hits}})
    h.cluster.answer(200, bulk_ok(*[c.id for c in kept]))
    h.cluster.answer(200, REFRESHED).answer(200, {"count": 3}).answer(200, {"acknowledged": True})

    reindexer(world, h).run(from_chunks=True)

    assert h.cluster.sent[3] == Sent(
        "POST", f"/{OLD}/_search", {"routing": "t1"}, q.stored_chunks_query("t1", a.id, 1000)
    )
    expected = q.bulk_actions(NEW, kept, world.embedder.embed_documents([c.text for c in kept]))
    assert h.cluster.sent[4].body == expected


def test_catch_up_re_runs_what_changed_and_removes_what_went(world):
    """While the rebuild runs, A is deleted and B gets a new version (both written to the old
    index only): after the switch A's chunks go and B is re-run into the new version."""
    a = world.add("t1", "alpha document text")
    b = world.add("t1", "beta document text", external_id="beta")
    c = world.add("t1", "gamma document text")
    h = make_harness()
    start_answers(h)
    for doc in (a, b, c):
        h.cluster.answer(200, bulk_ok(f"{doc.id}-v1-00000"))
    h.cluster.answer(200, REFRESHED).answer(200, {"count": 3}).answer(200, {"acknowledged": True})
    h.cluster.answer(200, {"deleted": 1}).answer(200, {"count": 0})  # A removed from the new version
    h.cluster.answer(200, bulk_ok(f"{b.id}-v2-00000")).answer(200, REFRESHED)  # B v2 re-run
    h.cluster.answer(200, {"deleted": 1}).answer(200, {"count": 1})

    index = h.index
    write_chunks = index.write_chunks
    changed: list[Document] = []

    def write_then_change(target: str, chunks: list[IndexedChunk], vectors: np.ndarray) -> None:
        write_chunks(target, chunks, vectors)
        if chunks[0].document_id == c.id:  # the last document: A and B are rebuilt already
            world.ingest.delete("t1", a.id)
            changed.append(world.add("t1", "beta document, second edition", external_id="beta"))

    index.write_chunks = write_then_change  # type: ignore[method-assign]
    report = reindexer(world, h).run()

    (b2,) = changed
    b2_chunks, b2_vectors = chunks_from_original(b2, world.blobs, world.embedder)
    assert b2.version == 2
    assert h.cluster.sent[-6:] == [
        expected_dbq(a.id, []),
        expected_count(a.id),
        Sent(
            "POST",
            "/_bulk",
            {"refresh": "false", "require_alias": "true"},
            q.bulk_actions(ALIAS, b2_chunks, b2_vectors),
        ),
        expected_refresh(),
        expected_dbq(b.id, [f"{b.id}-v2-00000"]),
        expected_count(b.id),
    ]
    assert (report.removed, report.caught_up, report.unsettled) == ([a.id], [b.id], [])


def test_catch_up_waits_for_documents_processing_across_the_switch(world):
    a = world.add("t1", "alpha document text", external_id="alpha")
    h = make_harness()
    start_answers(h)
    h.cluster.answer(200, REFRESHED).answer(200, {"acknowledged": True})  # nothing indexed to rebuild
    h.cluster.answer(200, bulk_ok(f"{a.id}-v2-00000")).answer(200, REFRESHED)
    h.cluster.answer(200, {"deleted": 1}).answer(200, {"count": 1})

    # A new version of A is being processed through the whole rebuild and the switch (its writes
    # may have gone to the old index): reindex waits for it, then re-runs it into the new one.
    accepted = world.ingest.accept("t1", b"alpha, revised", filename="notes.txt", external_id="alpha")
    job = world.store.claim(accepted.job_id)
    world.store.update_document("t1", a.id, status=DocumentStatus.PROCESSING)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # the worker finishes while reindex waits
        sleeps.append(seconds)
        world.ingest.process(job)

    report = reindexer(world, h, sleep=sleep, clock=lambda: "9999-12-31T00:00:00.000Z").run()
    assert sleeps == [1.0]
    assert report.caught_up == [a.id] and report.unsettled == []
    assert h.cluster.sent[-4].body == q.bulk_actions(
        ALIAS, *chunks_from_original(world.store.get_document("t1", a.id), world.blobs, world.embedder)
    )


def test_catch_up_gives_up_waiting_after_the_settle_time(world):
    a = world.add("t1", "alpha document text")
    h = make_harness()
    start_answers(h)
    h.cluster.answer(200, bulk_ok(f"{a.id}-v1-00000"))
    h.cluster.answer(200, REFRESHED).answer(200, {"count": 1}).answer(200, {"acknowledged": True})
    switch_alias = h.index.switch_alias

    def switch_while_a_worker_holds_a(old: str, new: str, tenant: str | None = None) -> None:
        switch_alias(old, new, tenant)
        world.store.update_document("t1", a.id, status=DocumentStatus.PROCESSING)  # and never finishes

    h.index.switch_alias = switch_while_a_worker_holds_a  # type: ignore[method-assign]
    ticks = iter([0.0, 0.5, 2.0])
    report = reindexer(
        world,
        h,
        settle_seconds=1.0,
        monotonic=lambda: next(ticks),
        sleep=lambda _: None,
        clock=lambda: "9999-12-31T00:00:00.000Z",
    ).run()
    assert report.unsettled == [a.id]


def test_the_cli_refuses_the_embedded_engine_clearly(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENSEARCH_URL", raising=False)
    monkeypatch.delenv("RAGLINE_OPENSEARCH_URL", raising=False)
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["reindex", "--data-dir", str(tmp_path), "--tenant", "t1", "--from-chunks"])
    assert args.func is run and args.tenant == "t1" and args.from_chunks and args.settle_seconds == 60.0
    with pytest.raises(ReindexError, match="needs OPENSEARCH_URL.*embedded engine"):
        run(args)


# ---- the per-tenant layout -----------------------------------------------------------------------
ALIAS_MISSING = {"error": "alias [x] missing", "status": 404}


def tenant_alias(tenant: str) -> str:
    return q.tenant_alias(ALIAS, tenant)


def per_tenant_harness(**settings: Any) -> Harness:
    return make_harness(index_layout="per_tenant", **settings)


def unrouted_bulk_into(index: str, chunks: list[IndexedChunk], vectors: np.ndarray) -> Sent:
    return Sent(
        "POST",
        "/_bulk",
        {"refresh": "false", "require_alias": "false"},
        q.bulk_actions(index, chunks, vectors, routing=False),
    )


def first_index_requests(h: Harness, tenant: str, built: tuple[list[IndexedChunk], np.ndarray]) -> list[Sent]:
    alias = tenant_alias(tenant)
    first = f"{alias}-v1"
    return [
        Sent("GET", f"/_alias/{alias}", {}, None),  # no alias yet: this tenant's first index
        Sent("HEAD", f"/{first}", {}, None),
        Sent("GET", f"/_alias/{ALIAS}-t-*", {}, None),  # room under the cap
        Sent("PUT", f"/{first}", {}, h.index.index_definition(with_alias=False, tenant_id=tenant)),
        unrouted_bulk_into(first, *built),
        Sent("POST", f"/{first}/_refresh", {}, None),
        Sent("POST", f"/{first}/_count", {}, q.count_query(tenant, MatchAll())),
        Sent("GET", f"/_alias/{alias}", {}, None),  # still nobody else made it
        Sent("POST", "/_aliases", {}, q.alias_swap(alias, None, first)),
    ]


def first_index_answers(h: Harness, ids: list[str], count: int) -> None:
    h.cluster.answer(404, ALIAS_MISSING).answer(404).answer(200, {}).answer(200, {"acknowledged": True})
    h.cluster.answer(200, bulk_ok(*ids)).answer(200, REFRESHED).answer(200, {"count": count})
    h.cluster.answer(404, ALIAS_MISSING).answer(200, {"acknowledged": True})


def test_moving_to_per_tenant_indices_builds_each_tenants_index_and_leaves_the_shared_one(world):
    """What the operator runs to leave the shared layout: every tenant's first index is built from
    its originals and its alias added; the shared alias (still serving) is never touched."""
    world.add("t1", LONG)
    world.add("t2", "short note about turbines")
    world.add("t2", "another note, for the same tenant")
    h = per_tenant_harness()
    built = {
        t: [chunks_from_original(d, world.blobs, world.embedder) for d in world.store.list_documents(t)[0]]
        for t in ("t1", "t2")
    }
    h.cluster.answer(200, {})  # GET /_alias/<alias>-t-*: no tenant index yet
    first_index_answers(h, [c.id for c in built["t1"][0][0]], 3)
    # t2 has two documents: two bulks
    t2_alias = tenant_alias("t2")
    h.cluster.answer(404, ALIAS_MISSING).answer(404).answer(200, {}).answer(200, {"acknowledged": True})
    for chunks, _ in built["t2"]:
        h.cluster.answer(200, bulk_ok(*[c.id for c in chunks]))
    h.cluster.answer(200, REFRESHED).answer(200, {"count": 2}).answer(404, ALIAS_MISSING)
    h.cluster.answer(200, {"acknowledged": True})

    reports = reindexer(world, h).run_all()

    assert h.cluster.sent[0] == Sent("GET", f"/_alias/{ALIAS}-t-*", {}, None)
    assert h.cluster.sent[1:10] == first_index_requests(h, "t1", built["t1"][0])
    t2 = h.cluster.sent[10:]
    assert [(s.method, s.path) for s in t2] == [
        ("GET", f"/_alias/{t2_alias}"),
        ("HEAD", f"/{t2_alias}-v1"),
        ("GET", f"/_alias/{ALIAS}-t-*"),
        ("PUT", f"/{t2_alias}-v1"),
        ("POST", "/_bulk"),
        ("POST", "/_bulk"),
        ("POST", f"/{t2_alias}-v1/_refresh"),
        ("POST", f"/{t2_alias}-v1/_count"),
        ("GET", f"/_alias/{t2_alias}"),
        ("POST", "/_aliases"),
    ]
    every_path = " ".join(s.path for s in h.cluster.sent)
    assert f"/{ALIAS}/" not in every_path and f"/{ALIAS}-v" not in every_path  # the shared index untouched
    assert "/_reindex" not in every_path  # nothing copied between tenants
    for sent in h.cluster.sent:
        if sent.path == "/_bulk":
            tenants = {line["tenant_id"] for line in sent.body[1::2]}
            targets = {line["index"]["_index"] for line in sent.body[0::2]}
            assert len(tenants) == 1 and targets == {f"{tenant_alias(tenants.pop())}-v1"}
    assert [(r.from_index, r.to_index, r.documents) for r in reports] == [
        ("", f"{tenant_alias('t1')}-v1", 1),
        ("", f"{t2_alias}-v1", 2),
    ]


def test_moving_with_from_chunks_reads_the_shared_alias(world):
    a = world.add("t1", LONG)
    h = per_tenant_harness()
    kept = stored(world.embedded, a)
    hits = [
        {"_source": {"chunk_id": c.id, "tenant_id": "t1", "document_id": a.id, "text": c.text, "payload": c.payload}}
        for c in kept
    ]
    alias = tenant_alias("t1")
    h.cluster.answer(404, ALIAS_MISSING).answer(404).answer(200, {}).answer(200, {"acknowledged": True})
    h.cluster.answer(200, {"hits": {"hits": hits}})
    h.cluster.answer(200, bulk_ok(*[c.id for c in kept])).answer(200, REFRESHED).answer(200, {"count": 3})
    h.cluster.answer(404, ALIAS_MISSING).answer(200, {"acknowledged": True})

    reindexer(world, h).run("t1", from_chunks=True)

    # the shared alias is where a tenant's chunks were; unrouted reads still see them all
    assert h.cluster.sent[4] == Sent("POST", f"/{ALIAS}/_search", {}, q.stored_chunks_query("t1", a.id, 1000))
    assert h.cluster.sent[5] == unrouted_bulk_into(
        f"{alias}-v1", kept, world.embedder.embed_documents([c.text for c in kept])
    )


def test_one_tenants_reindex_swaps_only_its_alias(world):
    a = world.add("t1", LONG)
    world.add("t2", "someone else's note")
    h = per_tenant_harness()
    alias = tenant_alias("t1")
    old, new = f"{alias}-v1", f"{alias}-v2"
    chunks, vectors = chunks_from_original(a, world.blobs, world.embedder)
    h.cluster.answer(200, {old: {"aliases": {alias: {"is_write_index": True}}}}).answer(404)
    h.cluster.answer(200, {"acknowledged": True}).answer(200, bulk_ok(*[c.id for c in chunks]))
    h.cluster.answer(200, REFRESHED).answer(200, {"count": 3}).answer(200, {"acknowledged": True})

    (report,) = reindexer(world, h).run_all("t1")

    assert h.cluster.sent == [
        Sent("GET", f"/_alias/{alias}", {}, None),
        Sent("HEAD", f"/{new}", {}, None),  # no dimension check, no cap check: nothing is copied or added
        Sent("PUT", f"/{new}", {}, h.index.index_definition(with_alias=False, tenant_id="t1")),
        unrouted_bulk_into(new, chunks, vectors),
        Sent("POST", f"/{new}/_refresh", {}, None),
        Sent("POST", f"/{new}/_count", {}, q.count_query("t1", MatchAll())),
        Sent("POST", "/_aliases", {}, q.alias_swap(alias, old, new)),
    ]
    assert (report.from_index, report.to_index, report.copied_chunks) == (old, new, 0)


def test_moving_refuses_to_pass_the_cap_before_creating_anything(world):
    world.add("t1", "one")
    world.add("t2", "two")
    h = per_tenant_harness(max_tenant_indices=2)
    existing = tenant_alias("t0")
    h.cluster.answer(200, {f"{existing}-v1": {"aliases": {existing: {}}}})
    with pytest.raises(ReindexError, match="2 tenants need an index beside the 1 .*MAX_TENANT_INDICES=2"):
        reindexer(world, h).run_all()
    assert len(h.cluster.sent) == 1


def test_an_alias_made_meanwhile_is_never_added_twice(world):
    a = world.add("t1", "alpha document text")
    h = per_tenant_harness()
    alias = tenant_alias("t1")
    h.cluster.answer(404, ALIAS_MISSING).answer(404).answer(200, {}).answer(200, {"acknowledged": True})
    h.cluster.answer(200, bulk_ok(f"{a.id}-v1-00000")).answer(200, REFRESHED).answer(200, {"count": 1})
    h.cluster.answer(200, {f"{alias}-v1": {"aliases": {alias: {"is_write_index": True}}}})  # a worker made it
    with pytest.raises(ReindexError, match="appeared while"):
        reindexer(world, h).run("t1")
    assert "/_aliases" not in [s.path for s in h.cluster.sent]


def test_per_tenant_needs_a_tenant_for_one_run(world):
    with pytest.raises(ReindexError, match="name the tenant"):
        reindexer(world, per_tenant_harness()).run()
