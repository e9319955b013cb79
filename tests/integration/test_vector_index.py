"""The VectorIndex behaviour suite. The embedded engine runs it always."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from ragline.adapters.local.vector_engine import EmbeddedVectorIndex
from ragline.models import IndexedChunk
from ragline.retrieval.analysis import analyze
from ragline.retrieval.filters import MatchAll, Term, matches, parse_filter
from tests.unit.test_chunks import AGREEMENT

DIM = 8


def unit(*values: float) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[: len(values)] = values
    return vector / np.linalg.norm(vector)


def chunk(document_id: str, position: int, text: str, tenant: str = "t1", **payload) -> IndexedChunk:
    return IndexedChunk(
        id=f"{document_id}-{position:05d}", tenant_id=tenant, document_id=document_id, text=text, payload=payload
    )


@pytest.fixture
def make_index(tmp_path):
    opened: list[EmbeddedVectorIndex] = []

    def factory(**options) -> EmbeddedVectorIndex:
        options.setdefault("snapshot_interval_seconds", 0)
        index = EmbeddedVectorIndex(tmp_path / "vectors", DIM, **options)
        opened.append(index)
        return index

    yield factory
    for index in opened:
        index.close()


def documents_matching(index, tenant_id: str, flt) -> set[str]:
    """The tenant's documents whose chunks a filter matches, read through the port (every test
    chunk is few and near unit(1), so a wide vector search returns them all)."""
    hits = index.search_vector(tenant_id, unit(1), flt, 1000)
    return {payload["document_id"] for payload in index.get_payloads(tenant_id, [cid for cid, _ in hits]).values()}


def test_cosine_scores_on_opensearch_scale(make_index):
    index = make_index()
    index.replace_document(
        "t1",
        "d1",
        [chunk("d1", 0, "x"), chunk("d1", 1, "y"), chunk("d1", 2, "z")],
        np.stack([unit(1, 0), unit(0, 1), unit(-1, 0)]),
    )
    hits = index.search_vector("t1", unit(1, 0), MatchAll(), 3)
    assert [h[0] for h in hits] == ["d1-00000", "d1-00001", "d1-00002"]
    assert [h[1] for h in hits] == pytest.approx([1.0, 0.5, 0.0], abs=1e-6)


@pytest.mark.parametrize("exact_max", [0, 100_000])
def test_filters_apply_inside_the_search_not_after(make_index, exact_max):
    index = make_index(exact_search_max_candidates=exact_max)
    rng = np.random.default_rng(0)
    near = [chunk(f"n{i}", 0, "near", source="common") for i in range(300)]
    index.replace_document("t1", "bulk", [], np.zeros((0, DIM), np.float32))
    for c in near:
        index.replace_document("t1", c.document_id, [c], (unit(1, 0) + rng.normal(0, 0.01, DIM)).reshape(1, -1))
    index.replace_document("t1", "rare", [chunk("rare", 0, "far", source="rare")], unit(-1, 0.1).reshape(1, -1))
    hits = index.search_vector("t1", unit(1, 0), parse_filter({"source": "rare"}), 5)
    assert [h[0] for h in hits] == ["rare-00000"]


def test_hnsw_path_agrees_with_exact_search(make_index):
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(2000, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    hnsw = make_index(exact_search_max_candidates=0, ef_search=200)
    chunks = [chunk("d", i, "t", group=i % 2, metadata={"group": i % 2}) for i in range(2000)]
    hnsw.replace_document("t1", "d", chunks, vectors)
    flt = parse_filter({"metadata.group": 1})
    recall = []
    for query in rng.normal(size=(20, DIM)).astype(np.float32):
        query /= np.linalg.norm(query)
        got = {h[0] for h in hnsw.search_vector("t1", query, flt, 10)}
        sims = vectors @ query
        sims[0::2] = -9
        want = {f"d-{i:05d}" for i in np.argsort(-sims)[:10]}
        recall.append(len(got & want) / 10)
    assert np.mean(recall) >= 0.95


def test_tenants_never_see_each_other(make_index):
    index = make_index()
    index.replace_document("t1", "a", [chunk("a", 0, "shared words here")], unit(1).reshape(1, -1))
    index.replace_document("t2", "b", [chunk("b", 0, "shared words here", tenant="t2")], unit(1).reshape(1, -1))
    assert [h[0] for h in index.search_vector("t1", unit(1), MatchAll(), 10)] == ["a-00000"]
    assert [h[0] for h in index.search_keyword("t2", "shared words", MatchAll(), 10)] == ["b-00000"]
    assert index.count("t3", MatchAll()) == 0
    # A filter naming another tenant narrows within the caller's chunks, never beyond them.
    assert index.search_vector("t1", unit(1), Term("tenant_id", ("t2",)), 10) == []
    assert index.count("t1", Term("tenant_id", ("t2",))) == 0
    assert list(index.get_payloads("t2", ["a-00000", "b-00000"])) == ["b-00000"]


def test_replace_swaps_all_chunks_and_delete_removes_them(make_index):
    index = make_index()
    index.replace_document("t1", "d", [chunk("d", i, f"old {i}") for i in range(3)], np.stack([unit(1)] * 3))
    index.replace_document("t1", "d", [chunk("d", 0, "new version")], unit(1).reshape(1, -1))
    assert index.count("t1", MatchAll()) == 1
    payloads = index.get_payloads("t1", ["d-00000", "d-00001"])
    assert list(payloads) == ["d-00000"] and payloads["d-00000"]["text"] == "new version"
    assert index.search_keyword("t1", "old", MatchAll(), 10) == []
    assert index.delete_document("t1", "d") == 1
    assert index.count("t1", MatchAll()) == 0
    assert index.search_vector("t1", unit(1), MatchAll(), 10) == []


def test_bm25_matches_lucene_formula(make_index):
    index = make_index()
    texts = ["the quick brown fox", "quick quick thinking", "a slow brown dog sleeps"]
    for i, text in enumerate(texts):
        index.replace_document("t1", f"d{i}", [chunk(f"d{i}", 0, text)], unit(1).reshape(1, -1))
    hits = dict(index.search_keyword("t1", "quick", MatchAll(), 10))
    docs = [analyze(t) for t in texts]
    n, df = len(docs), 2
    avgdl = sum(map(len, docs)) / n
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))

    def expected(tokens):
        tf = tokens.count("quick")
        return idf * tf / (tf + 1.2 * (1 - 0.75 + 0.75 * len(tokens) / avgdl))

    assert hits["d0-00000"] == pytest.approx(expected(docs[0]), rel=1e-5)
    assert hits["d1-00000"] == pytest.approx(expected(docs[1]), rel=1e-5)
    assert "d2-00000" not in hits
    assert list(hits)[0] == "d1-00000"


def test_keyword_uses_the_english_analyzer(make_index):
    index = make_index()
    index.replace_document("t1", "d", [chunk("d", 0, "Running dogs' owners were jumping")], unit(1).reshape(1, -1))
    assert index.search_keyword("t1", "run dog jumps", MatchAll(), 5)
    assert index.search_keyword("t1", "the and of", MatchAll(), 5) == []


def test_filters_agree_with_the_reference_semantics(make_index):
    """Random payloads and random filters: the engine returns exactly what `matches` says."""
    rng = random.Random(7)
    index = make_index()
    payloads = {}
    for i in range(120):
        payload = {
            "source": rng.choice(["web", "api", "inbox"]),
            "tag_ids": rng.sample(["a", "b", "c", "d"], rng.randint(0, 2)),
            "page": rng.choice([None, 1, 2, 3, 10]),
            "metadata": {
                k: v
                for k, v in {
                    "team": rng.choice(["eng", "ops", None]),
                    "year": rng.choice([2019, 2020.0, 2021, "2020", None]),
                    "flag": rng.choice([True, False, 1, None]),
                }.items()
                if v is not None
            },
        }
        doc = f"d{i:03d}"
        index.replace_document("t1", doc, [chunk(doc, 0, "text", **payload)], unit(1).reshape(1, -1))
        payloads[doc] = {**payload, "tenant_id": "t1", "document_id": doc}
    atoms = [
        {"source": "web"},
        {"tag_ids": ["a", "c"]},
        {"tag_ids": {"$nin": ["b"]}},
        {"page": {"$gte": 2}},
        {"page": {"$exists": False}},
        {"metadata.team": {"$ne": "eng"}},
        {"metadata.year": {"$lt": 2021}},
        {"metadata.year": "2020"},
        {"metadata.flag": True},
        {"metadata.flag": 1},
        {"metadata.year": {"$gt": "2019"}},
    ]
    for _ in range(150):
        spec = rng.choice(atoms)
        if rng.random() < 0.5:
            spec = {rng.choice(["$and", "$or"]): rng.sample(atoms, rng.randint(1, 3))}
        flt = parse_filter(spec)
        expected = {doc for doc, payload in payloads.items() if matches(flt, payload)}
        assert documents_matching(index, "t1", parse_filter(spec)) == expected, spec


def test_restart_keeps_everything(tmp_path):
    def open_index():
        return EmbeddedVectorIndex(tmp_path / "v", DIM, snapshot_interval_seconds=0)

    first = open_index()
    first.replace_document("t1", "a", [chunk("a", 0, "alpha text")], unit(1).reshape(1, -1))
    first.close()  # writes a snapshot
    second = open_index()
    second.replace_document("t1", "b", [chunk("b", 0, "beta text")], unit(0, 1).reshape(1, -1))
    second.delete_document("t1", "a")
    # no close: a crash after the writes; the change log carries them past the snapshot
    third = open_index()
    assert documents_matching(third, "t1", MatchAll()) == {"b"}
    assert third.search_keyword("t1", "beta", MatchAll(), 5)[0][0] == "b-00000"
    third.close()
    for name in ("snapshot.pkl", "snapshot.faiss"):
        (tmp_path / "v" / name).unlink()
    rebuilt = open_index()
    assert documents_matching(rebuilt, "t1", MatchAll()) == {"b"}
    rebuilt.close()


def test_a_second_process_sees_writes(tmp_path):
    writer = EmbeddedVectorIndex(tmp_path / "v", DIM, snapshot_interval_seconds=0)
    reader = EmbeddedVectorIndex(tmp_path / "v", DIM, snapshot_interval_seconds=0)
    writer.replace_document("t1", "a", [chunk("a", 0, "gamma")], unit(1).reshape(1, -1))
    assert reader.search_keyword("t1", "gamma", MatchAll(), 5)[0][0] == "a-00000"
    writer.delete_document("t1", "a")
    assert reader.search_vector("t1", unit(1), MatchAll(), 5) == []
    writer.close()
    reader.close()


def test_dimension_is_checked(tmp_path):
    EmbeddedVectorIndex(tmp_path / "v", DIM, snapshot_interval_seconds=0).close()
    with pytest.raises(ValueError, match="dimensional"):
        EmbeddedVectorIndex(tmp_path / "v", DIM * 2, snapshot_interval_seconds=0)


def test_term_filter_on_lists(make_index):
    index = make_index()
    index.replace_document("t1", "a", [chunk("a", 0, "x", tag_names=["red", "blue"])], unit(1).reshape(1, -1))
    assert index.count("t1", Term("tag_names", ("blue",))) == 1
    assert index.count("t1", Term("tag_names", ("green",))) == 0


def test_readers_see_one_whole_version_during_replacement(make_index):
    """While a document is replaced over and over, every search sees all of one version, never a mix or nothing."""
    import threading

    from ragline.models import SearchRequest
    from ragline.retrieval.service import SearchService

    class FixedEmbedder:
        def embed_query(self, text):
            return unit(1)

    index = make_index()
    service = SearchService(index, FixedEmbedder())
    chunks_per_version = 40

    def version(v: int):
        chunks = [chunk("doc", i, f"version{v} part {i}", metadata={"v": v}) for i in range(chunks_per_version)]
        return chunks, np.stack([unit(1, i / 100) for i in range(chunks_per_version)])

    index.replace_document("t1", "doc", *version(0))
    stop = threading.Event()
    seen: list[tuple[int, frozenset]] = []

    def reader():
        while not stop.is_set():
            items = service.search("t1", SearchRequest(query="part", limit=100, mode="semantic")).items
            seen.append((len(items), frozenset(i.payload["metadata"]["v"] for i in items)))

    thread = threading.Thread(target=reader)
    thread.start()
    for v in range(1, 30):
        index.replace_document("t1", "doc", *version(v))
    stop.set()
    thread.join()
    assert len(seen) > 10
    for count, versions in seen:
        assert count == chunks_per_version and len(versions) == 1, (count, versions)


def test_dotted_metadata_keys_are_not_paths(make_index):
    index = make_index()
    index.replace_document(
        "t1", "a", [chunk("a", 0, "x", metadata={"a.b": "x", "c": {"d": "y"}})], unit(1).reshape(1, -1)
    )
    payload = {"tenant_id": "t1", "metadata": {"a.b": "x", "c": {"d": "y"}}}
    for spec, expected in [({"metadata.a.b": "x"}, False), ({"metadata.c.d": "y"}, True)]:
        assert matches(parse_filter(spec), payload) is expected
        assert (index.count("t1", parse_filter(spec)) == 1) is expected


@pytest.mark.parametrize(("payloads", "spec", "expected"), AGREEMENT)
def test_filters_on_the_agreement_table(make_index, payloads, spec, expected):
    index = make_index()
    documents = [payload.get("document_id", f"d{i}") for i, payload in enumerate(payloads)]
    for document, payload in zip(documents, payloads):
        stored = IndexedChunk(
            id=f"{document}-v1-00000", tenant_id="t1", document_id=document, text="x", payload=payload
        )
        index.replace_document("t1", document, [stored], unit(1).reshape(1, -1))
    found = documents_matching(index, "t1", parse_filter(spec))
    assert [document in found for document in documents] == expected
