"""The VectorIndex behaviour suite against a real OpenSearch cluster (skipped unless OPENSEARCH_URL).

The test bodies are the embedded engine's, imported from test_vector_index.py: pytest collects
them again here, where `make_index` is this module's fixture and opens an OpenSearchVectorIndex
on its own uniquely named index (deleted afterwards). Every test runs in both index layouts,
``shared`` and ``per_tenant`` (RAGLINE_OPENSEARCH_INDEX_LAYOUT). Tests that only make sense for
one engine are listed at the end, with the reason.

    OPENSEARCH_URL=https://admin:pass@localhost:9200 RAGLINE_OPENSEARCH_VERIFY_CERTS=false \
        .venv/bin/pytest tests/integration/test_vector_index_opensearch.py
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from ragline.adapters.aws.opensearch import queries as q
from ragline.adapters.aws.opensearch.index import OpenSearchVectorIndex, TenantIndexLimitReached
from ragline.adapters.aws.opensearch.settings import OpenSearchSettings
from ragline.config import Settings
from ragline.retrieval.filters import MatchAll, parse_filter
from tests.integration.test_vector_index import (  # noqa: F401  (collected here, against OpenSearch)
    DIM,
    chunk,
    documents_matching,
    test_bm25_matches_lucene_formula,
    test_cosine_scores_on_opensearch_scale,
    test_filters_agree_with_the_reference_semantics,
    test_filters_apply_inside_the_search_not_after,
    test_hnsw_path_agrees_with_exact_search,
    test_keyword_uses_the_english_analyzer,
    test_replace_swaps_all_chunks_and_delete_removes_them,
    test_tenants_never_see_each_other,
    test_term_filter_on_lists,
    unit,
)

SKIP_REASON = (
    "OPENSEARCH_URL is not set: the OpenSearch behaviour suite needs a real cluster "
    "(e.g. OPENSEARCH_URL=https://user:pass@host:9200)"
)
IndexFactory = Callable[..., OpenSearchVectorIndex]


def _settings(url: str, **overrides: Any) -> OpenSearchSettings:
    """The environment's OpenSearch settings (auth, TLS, timeouts…), on an index of this test's own."""
    name = f"ragline-test-{uuid.uuid4().hex[:12]}"
    options: dict[str, Any] = {
        "url": url,
        "index_alias": name,
        "replicas": 0,  # green on a single-node cluster
        **overrides,
    }
    return OpenSearchSettings.from_settings(Settings(), **options)


def _drop(index: OpenSearchVectorIndex) -> None:
    """Every index this test made: the shared alias's versions and every tenant's (one prefix)."""
    client = index.client
    found = client.indices.get(index=f"{index.alias}*", params={"allow_no_indices": "true"})
    if found:
        client.indices.delete(index=",".join(sorted(found)), params={"ignore_unavailable": "true"})


@pytest.fixture(params=["shared", "per_tenant"])
def make_index(request) -> Iterator[IndexFactory]:
    url = os.environ.get("OPENSEARCH_URL")
    if not url:
        pytest.skip(SKIP_REASON)
    opened: list[OpenSearchVectorIndex] = []

    def factory(dimension: int = DIM, **options: Any) -> OpenSearchVectorIndex:
        options.pop("exact_search_max_candidates", None)  # OpenSearch picks exact or HNSW by itself
        overrides: dict[str, Any] = {"index_layout": request.param}
        if "ef_search" in options:
            overrides["hnsw_ef_search"] = options.pop("ef_search")
        overrides.update(options.pop("settings", {}))
        if options:
            raise TypeError(f"options the OpenSearch index does not take: {sorted(options)}")
        index = OpenSearchVectorIndex(_settings(url, **overrides), dimension)
        opened.append(index)
        index.ensure_index()
        return index

    yield factory
    for index in opened:
        _drop(index)


# ---- OpenSearch-only behaviour --------------------------------------------------------------------
def test_dimension_is_checked(make_index):
    index = make_index()
    index.replace_document("t1", "a", [chunk("a", 0, "kept")], unit(1).reshape(1, -1))
    other = OpenSearchVectorIndex(index.settings, DIM * 2)
    wide = np.ones((1, DIM * 2), dtype=np.float32) / np.sqrt(DIM * 2)
    with pytest.raises(ValueError, match="dimensional"):
        other.ensure_index()  # the shared layout checks at start
        other.replace_document("t1", "b", [chunk("b", 0, "x")], wide)  # per tenant, at its first write


def test_ensure_index_twice_changes_nothing(make_index):
    index = make_index()
    index.replace_document("t1", "a", [chunk("a", 0, "kept")], unit(1).reshape(1, -1))
    index.ensure_index()
    assert index.count("t1", MatchAll()) == 1


def test_payloads_come_back_as_written_whatever_their_shape(make_index):
    """payload is stored, not mapped: nested objects, mixed kinds and unicode never hit the mapping."""
    index = make_index()
    payload = {"page": 3, "tag_ids": ["a"], "metadata": {"n": {"deep": [1, "two", True, None]}, "ü": "ß", "x": 1.5}}
    index.replace_document("t1", "p", [chunk("p", 0, "text", **payload)], unit(1).reshape(1, -1))
    assert index.get_payloads("t1", ["p-00000"]) == {
        "p-00000": {**payload, "tenant_id": "t1", "document_id": "p", "text": "text"}
    }


def test_tenants_may_send_any_kind_for_the_same_metadata_key(make_index):
    index = make_index()
    kinds = {"t1": 2020, "t2": "2020", "t3": {"nested": 1}, "t4": [True, 7]}
    for name, year in kinds.items():
        index.replace_document(
            name, "d", [chunk("d", 0, "x", tenant=name, metadata={"year": year})], unit(1).reshape(1, -1)
        )
    assert index.count("t1", parse_filter({"metadata.year": 2020})) == 1
    assert index.count("t2", parse_filter({"metadata.year": 2020})) == 0
    assert index.count("t2", parse_filter({"metadata.year": "2020"})) == 1
    assert index.count("t3", parse_filter({"metadata.year.nested": {"$gte": 1}})) == 1
    assert index.count("t4", parse_filter({"metadata.year": {"$gt": 5}})) == 1


def test_replace_can_shrink_and_grow_a_document(make_index):
    index = make_index()
    for size in (5, 2, 7):
        chunks = [chunk("d", i, f"version {size} part {i}") for i in range(size)]
        index.replace_document("t1", "d", chunks, np.stack([unit(1)] * size))
        assert index.count("t1", MatchAll()) == size
        assert set(index.get_payloads("t1", [c.id for c in chunks])) == {c.id for c in chunks}


def test_a_new_version_replaces_the_old_one_and_search_sees_one_version(make_index):
    from ragline.chunks import chunk_version
    from ragline.models import IndexedChunk
    from ragline.retrieval.service import newest_versions

    index = make_index()

    def version(v: int, n: int) -> list[IndexedChunk]:
        return [
            IndexedChunk(
                id=f"d-v{v}-{i:05d}", tenant_id="t1", document_id="d", text=f"v{v} {i}", payload={"version": v}
            )
            for i in range(n)
        ]

    index.replace_document("t1", "d", version(1, 3), np.stack([unit(1)] * 3))
    index.replace_document("t1", "d", version(2, 2), np.stack([unit(1)] * 2))
    hits = index.search_vector("t1", unit(1), MatchAll(), 10)
    assert sorted(cid for cid, _ in hits) == ["d-v2-00000", "d-v2-00001"]
    assert newest_versions(hits, {cid: chunk_version(cid) for cid, _ in hits}) == hits


def test_reindex_primitives_switch_readers_at_once(make_index):
    """create a version, write, refresh, one _aliases call: the alias reads the new version."""
    index = make_index()
    index.replace_document("t1", "old", [chunk("old", 0, "old version")], unit(1).reshape(1, -1))
    old = index.current_index("t1")  # the shared layout ignores the tenant
    new = q.versioned_index_name(index.scope_alias("t1"), index.settings.index_version + 1)
    index.create_index_version(new, "t1")
    index.write_chunks(new, [chunk("new", 0, "new version")], unit(1).reshape(1, -1))
    index.refresh(new)
    assert index.count_in(new, "t1") == 1
    assert documents_matching(index, "t1", MatchAll()) == {"old"}  # readers still on the old version
    index.switch_alias(old, new, "t1")
    assert index.current_index("t1") == new
    assert documents_matching(index, "t1", MatchAll()) == {"new"}
    assert [c.id for c in index.stored_chunks("t1", "old", old)] == ["old-00000"]


def test_bm25_statistics_are_one_tenants_only_per_tenant(make_index):
    """The side channel: on a shared index (one shard here) tenant t2's chunks change tenant t1's
    BM25 scores, so t1 can estimate how many of t2's chunks hold a term; per tenant they cannot."""
    index = make_index()
    for i, text in enumerate(["merger talks with globex", "quarterly report", "holiday rota"]):
        index.replace_document("t1", f"d{i}", [chunk(f"d{i}", 0, text)], unit(1).reshape(1, -1))
    before = dict(index.search_keyword("t1", "merger", MatchAll(), 10))
    for i in range(20):
        index.replace_document(
            "t2", f"e{i}", [chunk(f"e{i}", 0, f"merger plan {i}", tenant="t2")], unit(1).reshape(1, -1)
        )
    after = dict(index.search_keyword("t1", "merger", MatchAll(), 10))
    assert list(after) == list(before) == ["d0-00000"]
    if index.per_tenant:
        assert after["d0-00000"] == pytest.approx(before["d0-00000"], rel=1e-6)
    else:
        assert after["d0-00000"] < before["d0-00000"]  # what infra/opensearch/README.md describes


def test_per_tenant_indices_are_one_per_tenant_and_capped(make_index):
    index = make_index(settings={"max_tenant_indices": 2})
    if not index.per_tenant:
        pytest.skip("the per-tenant layout only")
    for tenant in ("Acme", "acme"):  # one slug, two tenants
        index.replace_document(tenant, "d", [chunk("d", 0, "x", tenant=tenant)], unit(1).reshape(1, -1))
    assert set(index.tenant_indices()) == {q.tenant_alias(index.alias, t) for t in ("Acme", "acme")}
    assert index.stats()["chunks"] == 2 and index.stats()["tenant_indices"] == 2
    assert index.count("Acme", MatchAll()) == index.count("acme", MatchAll()) == 1
    assert index.count("never-wrote", MatchAll()) == 0
    with pytest.raises(TenantIndexLimitReached):
        index.replace_document("third", "d", [chunk("d", 0, "x", tenant="third")], unit(1).reshape(1, -1))


# ---- tests of the embedded engine that do not apply here -----------------------------------------
@pytest.mark.skip(reason="does not apply to OpenSearch: durability across restarts is the cluster's job")
def test_restart_keeps_everything():
    pass


@pytest.mark.skip(reason="does not apply to OpenSearch: every client reads the same cluster")
def test_a_second_process_sees_writes():
    pass
