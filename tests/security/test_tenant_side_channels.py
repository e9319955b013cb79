"""What one tenant can learn of another through shared machinery: BM25 statistics and the query cache."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ragline.adapters.local.vector_engine import EmbeddedVectorIndex
from ragline.models import IndexedChunk
from ragline.retrieval.analysis import analyze
from ragline.retrieval.filters import MatchAll, Term
from ragline.retrieval.service import SearchService

DIM = 4


def write(index: EmbeddedVectorIndex, tenant: str, document: str, texts: list[str]) -> None:
    chunks = [
        IndexedChunk(id=f"{document}-{n:05d}", tenant_id=tenant, document_id=document, text=text, payload={})
        for n, text in enumerate(texts)
    ]
    index.replace_document(tenant, document, chunks, np.eye(DIM, dtype=np.float32)[np.zeros(len(texts), dtype=int)])


@pytest.fixture
def index(tmp_path):
    opened = EmbeddedVectorIndex(tmp_path / "vectors", DIM, snapshot_interval_seconds=0)
    yield opened
    opened.close()


TENANT_A = ["refund policy for late fees", "late fees are waived once", "shipping takes five days"]


def test_keyword_scores_do_not_depend_on_another_tenants_chunks(index):
    write(index, "a", "a-doc", TENANT_A)
    alone = index.search_keyword("a", "late fees refund", MatchAll(), 10)
    write(index, "b", "b-doc", ["late fees refund " * n for n in range(1, 200)] + ["unrelated words"] * 50)
    beside_b = index.search_keyword("a", "late fees refund", MatchAll(), 10)
    assert beside_b == alone  # exact: df, chunk count and average length are tenant A's alone
    index.delete_document("b", "b-doc")
    assert index.search_keyword("a", "late fees refund", MatchAll(), 10) == alone


def test_statistics_are_the_tenants_not_the_filters(index):
    """A filter narrows the hits, not the statistics: like a query on a per-tenant index."""
    write(index, "a", "a-doc", TENANT_A)
    write(index, "a", "a-other", ["late fees again"])
    everything = dict(index.search_keyword("a", "late", MatchAll(), 10))
    one_document = dict(index.search_keyword("a", "late", Term("document_id", ("a-doc",)), 10))
    assert one_document == {cid: s for cid, s in everything.items() if cid.startswith("a-doc")}


def bm25(query: str, text: str, corpus: list[str]) -> float:
    """Lucene BM25 (k1 = 1.2, b = 0.75) of one text among `corpus`, by hand."""
    docs = [analyze(t) for t in corpus]
    tokens = analyze(text)
    avgdl = sum(map(len, docs)) / len(docs)
    score = 0.0
    for term in set(analyze(query)):
        df = sum(term in d for d in docs)
        tf = tokens.count(term)
        if df and tf:
            idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
            score += idf * tf / (tf + 1.2 * (1 - 0.75 + 0.75 * len(tokens) / avgdl))
    return score


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # tenant A's corpus is TENANT_A; tenant B's chunks (below) would change every df and avgdl
        ("late", {0: bm25("late", TENANT_A[0], TENANT_A), 1: bm25("late", TENANT_A[1], TENANT_A)}),
        ("refund", {0: bm25("refund", TENANT_A[0], TENANT_A)}),
        ("shipping days", {2: bm25("shipping days", TENANT_A[2], TENANT_A)}),
        ("late fees refund", {n: bm25("late fees refund", TENANT_A[n], TENANT_A) for n in (0, 1)}),
        ("nothing matches", {}),
    ],
)
def test_keyword_scores_match_hand_computed_bm25_over_the_tenant(index, query, expected):
    write(index, "a", "a-doc", TENANT_A)
    write(index, "b", "b-doc", ["late refund"] * 30 + ["a very long chunk about shipping " * 20])
    hits = dict(index.search_keyword("a", query, MatchAll(), 10))
    assert hits == pytest.approx({f"a-doc-{n:05d}": score for n, score in expected.items()}, rel=1e-5)


class CountingEmbedder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def embed_query(self, text: str) -> np.ndarray:
        self.calls.append(text)
        return np.eye(DIM, dtype=np.float32)[0]


def test_the_query_cache_is_per_tenant():
    embedder = CountingEmbedder()
    service = SearchService(None, embedder)  # type: ignore[arg-type]  # the cache needs no index
    service.query_vector("a", "late fees")
    service.query_vector("b", "late fees")  # not answered from tenant A's entry: no timing to observe
    assert embedder.calls == ["late fees", "late fees"]
    service.query_vector("a", "late fees")
    service.query_vector("b", "late fees")
    assert embedder.calls == ["late fees", "late fees"]  # each tenant's repeat is a hit


def test_searches_embed_through_the_per_tenant_cache(index):
    write(index, "a", "a-doc", TENANT_A)
    write(index, "b", "b-doc", TENANT_A)
    embedder = CountingEmbedder()
    service = SearchService(index, embedder)
    for tenant in ("a", "b", "a", "b"):
        service.ranked(tenant, "late fees", Term("tenant_id", (tenant,)), 5, "hybrid")
    assert len(embedder.calls) == 2
