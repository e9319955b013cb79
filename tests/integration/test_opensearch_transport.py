"""OpenSearchVectorIndex against a scripted connection: the exact requests it sends, in order.

The real opensearch-py client and Transport run (serialisation, error classes, HEAD → bool);
only the HTTP connection is replaced, like opensearch-py's own transport tests do. Each test
scripts the cluster's answers and asserts (method, path, params, body) of every request.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from opensearchpy import OpenSearch
from opensearchpy.connection import Connection
from opensearchpy.exceptions import RequestError

from ragline.adapters.aws.opensearch import client as opensearch_client
from ragline.adapters.aws.opensearch import index as adapter
from ragline.adapters.aws.opensearch import queries as q
from ragline.adapters.aws.opensearch.index import (
    OpenSearchBulkError,
    OpenSearchConsistencyError,
    OpenSearchVectorIndex,
)
from ragline.adapters.aws.opensearch.settings import OpenSearchConfigError, OpenSearchSettings
from ragline.api.app import create_app
from ragline.config import Settings
from ragline.container import Container
from ragline.errors import DependencyUnavailable
from ragline.models import IndexedChunk
from ragline.retrieval.filters import MatchAll, Term, parse_filter

DIM = 4
ALIAS = "ragline-chunks"


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    params: dict[str, str]
    body: Any


@dataclass
class Cluster:
    """The scripted side: answers in order, and everything that was sent."""

    answers: list[tuple[int, Any]] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)

    def answer(self, status: int, body: Any = None) -> Cluster:
        self.answers.append((status, body))
        return self

    def take(self) -> tuple[int, Any]:
        assert self.answers, f"unexpected request: {self.sent[-1]}"
        return self.answers.pop(0)


def _decode_body(path: str, body: bytes | None) -> Any:
    if body is None:
        return None
    text = body.decode("utf-8")
    if path.endswith("/_bulk"):
        return [json.loads(line) for line in text.splitlines()]
    return json.loads(text)


def _decode_params(params: dict[str, Any] | None) -> dict[str, str]:
    return {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in (params or {}).items()}


class ScriptedConnection(Connection):
    def __init__(self, *, cluster: Cluster, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cluster = cluster

    def perform_request(  # type: ignore[override]
        self, method, url, params=None, body=None, timeout=None, ignore=(), headers=None
    ):
        self.cluster.sent.append(Sent(method, url, _decode_params(params), _decode_body(url, body)))
        status, payload = self.cluster.take()
        raw = "" if payload is None else json.dumps(payload)
        if not 200 <= status < 300 and status not in ignore:
            self._raise_error(status, raw, "application/json")
        return status, {"content-type": "application/json"}, raw


@dataclass
class Harness:
    cluster: Cluster
    index: OpenSearchVectorIndex
    sleeps: list[float]


def make_harness(**settings: Any) -> Harness:
    cluster = Cluster()
    client = OpenSearch(  # configured like opensearch_client(): the adapter owns retries
        hosts=["http://opensearch.test:9200"],
        connection_class=ScriptedConnection,
        cluster=cluster,
        max_retries=0,
        retry_on_status=(),
    )
    sleeps: list[float] = []
    options = {
        "url": "http://opensearch.test:9200",
        "index_alias": ALIAS,
        "retry_attempts": 3,
        "retry_initial_delay_seconds": 1.0,
        "verify_attempts": 3,
        **settings,
    }
    index = OpenSearchVectorIndex(
        OpenSearchSettings(**options), DIM, client=client, sleep=sleeps.append, jitter=lambda: 1.0
    )
    return Harness(cluster, index, sleeps)


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = make_harness()
    yield harness
    assert harness.cluster.answers == [], "scripted answers left unused"


def chunk(document_id: str, position: int, text: str, tenant: str = "t1", **payload: Any) -> IndexedChunk:
    return IndexedChunk(
        id=f"{document_id}-v1-{position:05d}", tenant_id=tenant, document_id=document_id, text=text, payload=payload
    )


def vectors(n: int) -> np.ndarray:
    out = np.zeros((n, DIM), dtype=np.float32)
    out[:, 0] = 1.0
    return out


def bulk_ok(*ids: str) -> dict[str, Any]:
    return {
        "took": 3,
        "errors": False,
        "items": [{"index": {"_id": i, "status": 201, "result": "created"}} for i in ids],
    }


def bulk_answer(*items: tuple[str, int, str | None]) -> dict[str, Any]:
    out = []
    for chunk_id, status, error in items:
        result: dict[str, Any] = {"_id": chunk_id, "status": status}
        if error:
            result["error"] = {"type": error, "reason": f"{error} on {chunk_id}"}
        out.append({"index": result})
    return {"took": 3, "errors": any(s >= 300 for _, s, _ in items), "items": out}


BULK_PARAMS = {"refresh": "false", "require_alias": "true"}
DBQ_PARAMS = {"conflicts": "proceed", "refresh": "true", "wait_for_completion": "true", "routing": "t1"}
MAPPING_8 = {"ragline-chunks-v1": {"mappings": {"properties": {"embedding": {"type": "knn_vector", "dimension": DIM}}}}}


def expected_bulk(chunks: list[IndexedChunk]) -> Sent:
    return Sent("POST", "/_bulk", BULK_PARAMS, q.bulk_actions(ALIAS, chunks, vectors(len(chunks))))


def expected_dbq(document_id: str, keep: list[str]) -> Sent:
    return Sent("POST", f"/{ALIAS}/_delete_by_query", DBQ_PARAMS, q.delete_by_document_query("t1", document_id, keep))


def expected_refresh() -> Sent:
    return Sent("POST", f"/{ALIAS}/_refresh", {}, None)


def expected_others_count(document_id: str, new_ids: list[str]) -> Sent:
    return Sent("POST", f"/{ALIAS}/_count", {"routing": "t1"}, q.other_chunks_query("t1", document_id, new_ids))


def expected_discard(document_id: str, ids: list[str]) -> Sent:
    return Sent("POST", f"/{ALIAS}/_delete_by_query", DBQ_PARAMS, q.delete_chunks_query("t1", document_id, ids))


def expected_count(document_id: str) -> Sent:
    return Sent("POST", f"/{ALIAS}/_count", {"routing": "t1"}, q.count_query("t1", Term("document_id", (document_id,))))


# ---- ensure_index --------------------------------------------------------------------------------
def test_ensure_index_on_a_fresh_cluster(h):
    h.cluster.answer(404).answer(404).answer(200, {"acknowledged": True, "index": "ragline-chunks-v1"})
    h.index.ensure_index()
    assert h.cluster.sent == [
        Sent("HEAD", f"/_alias/{ALIAS}", {}, None),
        Sent("HEAD", f"/{ALIAS}", {}, None),  # no concrete index holds the alias's name
        Sent("PUT", "/ragline-chunks-v1", {}, q.index_definition(DIM, alias=ALIAS)),
    ]


def test_ensure_index_on_an_existing_cluster_creates_nothing(h):
    """A cold start on a set-up cluster: two round trips, and no search pipeline (hybrid search
    is fused by SearchService, so none is needed)."""
    h.cluster.answer(200).answer(200, MAPPING_8)
    h.index.ensure_index()
    assert h.cluster.sent == [
        Sent("HEAD", f"/_alias/{ALIAS}", {}, None),
        Sent("GET", f"/{ALIAS}/_mapping", {}, None),
    ]


def test_ensure_index_refuses_another_dimension(h):
    mapping = {"ragline-chunks-v1": {"mappings": {"properties": {"embedding": {"dimension": 768}}}}}
    h.cluster.answer(200).answer(200, mapping)
    with pytest.raises(ValueError, match="768-dimensional"):
        h.index.ensure_index()


def test_ensure_index_when_another_process_creates_it_first(h):
    exists = {"error": {"type": "resource_already_exists_exception", "reason": "index exists"}, "status": 400}
    h.cluster.answer(404).answer(404).answer(400, exists).answer(200).answer(200, MAPPING_8)
    h.index.ensure_index()
    assert [(s.method, s.path) for s in h.cluster.sent] == [
        ("HEAD", f"/_alias/{ALIAS}"),
        ("HEAD", f"/{ALIAS}"),
        ("PUT", "/ragline-chunks-v1"),
        ("HEAD", f"/_alias/{ALIAS}"),
        ("GET", f"/{ALIAS}/_mapping"),
    ]


def test_ensure_index_with_an_index_but_no_alias_is_a_clear_error(h):
    exists = {"error": {"type": "resource_already_exists_exception", "reason": "index exists"}, "status": 400}
    h.cluster.answer(404).answer(404).answer(400, exists).answer(404)
    with pytest.raises(OpenSearchConfigError, match="exists without the alias"):
        h.index.ensure_index()


def test_ensure_index_with_a_concrete_index_named_like_the_alias_is_a_clear_error(h):
    h.cluster.answer(404).answer(200)  # no alias ragline-chunks, but an index ragline-chunks
    with pytest.raises(OpenSearchConfigError, match="is an index, not an alias") as caught:
        h.index.ensure_index()
    assert "POST /_reindex" in caught.value.message
    assert [(s.method, s.path) for s in h.cluster.sent] == [("HEAD", f"/_alias/{ALIAS}"), ("HEAD", f"/{ALIAS}")]


# ---- replace_document ----------------------------------------------------------------------------
REFRESHED = {"_shards": {"total": 2, "successful": 2, "failed": 0}}


def test_replace_document_bulk_then_one_refresh_then_delete_other_versions_then_count(h):
    chunks = [chunk("d1", 0, "new zero", page=1), chunk("d1", 1, "new one", page=2)]
    h.cluster.answer(200, bulk_ok("d1-v1-00000", "d1-v1-00001"))
    h.cluster.answer(200, REFRESHED)
    h.cluster.answer(200, {"took": 5, "deleted": 3, "failures": []})
    h.cluster.answer(200, {"count": 2})
    h.index.replace_document("t1", "d1", chunks, vectors(2))
    assert h.cluster.sent == [
        expected_bulk(chunks),
        expected_refresh(),
        expected_dbq("d1", ["d1-v1-00000", "d1-v1-00001"]),
        expected_count("d1"),
    ]
    assert h.sleeps == []


def replace_five_chunks_in_batches_of_two(*, deleted: int):
    """A 5-chunk version through a cluster that accepts bulks of 2: three bulks, then refresh,
    delete-by-query (of ``deleted`` older chunks) and count."""
    h = make_harness(bulk_max_actions=2)
    chunks = [chunk("d1", i, f"text {i}") for i in range(5)]
    for batch in ([0, 1], [2, 3], [4]):
        h.cluster.answer(200, bulk_ok(*[chunks[i].id for i in batch]))
    h.cluster.answer(200, REFRESHED).answer(200, {"deleted": deleted}).answer(200, {"count": 5})
    h.index.replace_document("t1", "d1", chunks, vectors(5))
    return h


def test_a_large_new_version_is_refreshed_once_not_per_batch():
    h = replace_five_chunks_in_batches_of_two(deleted=5)
    paths = [s.path for s in h.cluster.sent]
    assert paths == ["/_bulk"] * 3 + [f"/{ALIAS}/_refresh", f"/{ALIAS}/_delete_by_query", f"/{ALIAS}/_count"]
    assert all(s.params["refresh"] == "false" for s in h.cluster.sent if s.path == "/_bulk")


def v2_chunks(n: int) -> list[IndexedChunk]:
    return [
        IndexedChunk(id=f"d1-v2-{i:05d}", tenant_id="t1", document_id="d1", text=f"v2 {i}", payload={"version": 2})
        for i in range(n)
    ]


def test_a_failed_new_version_is_discarded_and_the_old_one_stays():
    """Batch 1 lands, batch 2 is refused: v1 is still there, so every v2 chunk goes (even those
    whose answer never came back), and v1 stays the document's only version."""
    h = make_harness(bulk_max_actions=2)
    chunks = v2_chunks(4)
    ids = [c.id for c in chunks]
    h.cluster.answer(200, bulk_ok(ids[0], ids[1]))
    h.cluster.answer(200, bulk_answer((ids[2], 201, None), (ids[3], 400, "mapper_parsing_exception")))
    h.cluster.answer(200, {"count": 3})  # v1's chunks
    h.cluster.answer(200, {"deleted": 3})
    with pytest.raises(OpenSearchBulkError, match="d1-v2-00003"):
        h.index.replace_document("t1", "d1", chunks, vectors(4))
    assert h.cluster.sent[2:] == [expected_others_count("d1", ids), expected_discard("d1", ids)]
    assert not any(s.path.endswith("/_refresh") for s in h.cluster.sent)  # the new version never shown whole


def test_a_failed_first_version_removes_only_what_it_created():
    """No other version: the ids may already be the live version (a redelivered message), so only
    the chunks this call created go."""
    chunks = v2_chunks(3)
    ids = [c.id for c in chunks]
    h = make_harness(retry_attempts=1)
    h.cluster.answer(
        200,
        {
            "errors": True,
            "items": [
                {"index": {"_id": ids[0], "status": 200, "result": "updated"}},
                {"index": {"_id": ids[1], "status": 201, "result": "created"}},
                {"index": {"_id": ids[2], "status": 503, "error": {"type": "unavailable_shards_exception"}}},
            ],
        },
    )
    h.cluster.answer(200, {"count": 0}).answer(200, {"deleted": 1})
    with pytest.raises(DependencyUnavailable, match="kept rejecting 1 chunks"):
        h.index.replace_document("t1", "d1", chunks, vectors(3))
    assert h.cluster.sent[1:] == [expected_others_count("d1", ids), expected_discard("d1", [ids[1]])]


def test_a_redelivered_version_that_fails_deletes_nothing():
    chunks = v2_chunks(2)
    ids = [c.id for c in chunks]
    h = make_harness(retry_attempts=1)
    h.cluster.answer(
        200, {"errors": False, "items": [{"index": {"_id": i, "status": 200, "result": "updated"}} for i in ids]}
    )
    h.cluster.answer(503, {"error": "refresh failed"})
    h.cluster.answer(200, {"count": 0})
    with pytest.raises(DependencyUnavailable, match="refresh failed 1 times"):
        h.index.replace_document("t1", "d1", chunks, vectors(2))
    assert h.cluster.sent[1:] == [expected_refresh(), expected_others_count("d1", ids)]


def test_a_discard_that_fails_too_reports_the_first_failure():
    """The cluster went away: the next replace's delete step (every other version), ingestion's
    _fail or a delete removes what is left."""
    chunks = v2_chunks(1)
    h = make_harness(retry_attempts=1)
    h.cluster.answer(200, bulk_ok(chunks[0].id)).answer(503, {"error": "down"}).answer(503, {"error": "down"})
    with pytest.raises(DependencyUnavailable, match="refresh failed"):
        h.index.replace_document("t1", "d1", chunks, vectors(1))
    assert [s.path for s in h.cluster.sent] == ["/_bulk", f"/{ALIAS}/_refresh", f"/{ALIAS}/_count"]


def test_the_next_replace_removes_what_a_failed_one_left():
    chunks = v2_chunks(2)
    ids = [c.id for c in chunks]
    h = make_harness()
    h.cluster.answer(
        200, {"errors": False, "items": [{"index": {"_id": i, "status": 200, "result": "updated"}} for i in ids]}
    )
    h.cluster.answer(200, REFRESHED).answer(200, {"deleted": 3}).answer(200, {"count": 2})
    h.index.replace_document("t1", "d1", chunks, vectors(2))
    # v1 and any v2 leftovers are "not the new set" or the new set itself: one delete covers both
    assert h.cluster.sent[2] == expected_dbq("d1", ids)


def test_replace_with_no_chunks_deletes_all_of_them(h):
    h.cluster.answer(200, {"deleted": 4}).answer(200, {"count": 0})
    h.index.replace_document("t1", "d1", [], np.zeros((0, DIM), dtype=np.float32))
    assert h.cluster.sent == [expected_dbq("d1", []), expected_count("d1")]


def test_bulk_rejected_as_a_whole_is_retried_with_backoff(h):
    chunks = [chunk("d1", 0, "zero")]
    rejected = {"error": {"type": "es_rejected_execution_exception", "reason": "queue full"}, "status": 429}
    h.cluster.answer(429, rejected).answer(429, rejected).answer(200, bulk_ok("d1-v1-00000"))
    h.cluster.answer(200, REFRESHED).answer(200, {"deleted": 0}).answer(200, {"count": 1})
    h.index.replace_document("t1", "d1", chunks, vectors(1))
    assert h.cluster.sent == [expected_bulk(chunks)] * 3 + [
        expected_refresh(),
        expected_dbq("d1", ["d1-v1-00000"]),
        expected_count("d1"),
    ]
    assert h.sleeps == [1.0, 2.0]  # initial delay doubling, jitter pinned to its maximum


def test_bulk_items_rejected_with_429_are_resent_alone(h):
    chunks = [chunk("d1", i, f"text {i}") for i in range(3)]
    h.cluster.answer(
        200,
        bulk_answer(
            ("d1-v1-00000", 201, None),
            ("d1-v1-00001", 429, "es_rejected_execution_exception"),
            ("d1-v1-00002", 201, None),
        ),
    )
    h.cluster.answer(200, bulk_ok("d1-v1-00001"))
    h.cluster.answer(200, REFRESHED).answer(200, {"deleted": 0}).answer(200, {"count": 3})
    h.index.replace_document("t1", "d1", chunks, vectors(3))
    assert h.cluster.sent[0] == expected_bulk(chunks)
    assert h.cluster.sent[1] == expected_bulk([chunks[1]])
    assert h.cluster.sent[2:] == [expected_refresh(), expected_dbq("d1", [c.id for c in chunks]), expected_count("d1")]
    assert h.sleeps == [1.0]


def test_bulk_item_refused_for_good_names_the_chunk_and_stops(h):
    chunks = [chunk("d1", 0, "fine"), chunk("d1", 1, "broken")]
    h.cluster.answer(200, bulk_answer(("d1-v1-00000", 201, None), ("d1-v1-00001", 400, "mapper_parsing_exception")))
    h.cluster.answer(200, {"count": 0}).answer(200, {"deleted": 1})  # the discard of what it created
    with pytest.raises(OpenSearchBulkError, match="d1-v1-00001: 400 mapper_parsing_exception") as caught:
        h.index.replace_document("t1", "d1", chunks, vectors(2))
    assert [f.chunk_id for f in caught.value.failures] == ["d1-v1-00001"]
    # no delete of other versions after a failed write: only the discard of the created chunk
    assert h.cluster.sent[1:] == [
        expected_others_count("d1", ["d1-v1-00000", "d1-v1-00001"]),
        expected_discard("d1", ["d1-v1-00000"]),
    ]


def test_bulk_items_still_rejected_after_all_attempts(h):
    chunks = [chunk("d1", 0, "zero")]
    for _ in range(3):
        h.cluster.answer(200, bulk_answer(("d1-v1-00000", 429, "es_rejected_execution_exception")))
    h.cluster.answer(200, {"count": 0})  # nothing created, nothing else there: nothing to discard
    with pytest.raises(DependencyUnavailable, match="kept rejecting 1 chunks \\(d1-v1-00000\\)"):
        h.index.replace_document("t1", "d1", chunks, vectors(1))
    assert h.sleeps == [1.0, 2.0]


def test_large_documents_go_in_bounded_batches():
    h = replace_five_chunks_in_batches_of_two(deleted=0)
    assert [len(s.body) // 2 for s in h.cluster.sent if s.path == "/_bulk"] == [2, 2, 1]


def test_replace_refuses_chunks_of_another_tenant(h):
    with pytest.raises(ValueError, match="another tenant"):
        h.index.replace_document("t1", "d1", [chunk("d1", 0, "x", tenant="t2")], vectors(1))
    with pytest.raises(ValueError, match="unique"):
        h.index.replace_document("t1", "d1", [chunk("d1", 0, "x"), chunk("d1", 0, "y")], vectors(2))
    with pytest.raises(ValueError, match="dimensions"):
        h.index.replace_document("t1", "d1", [chunk("d1", 0, "x")], np.ones((1, DIM + 1), dtype=np.float32))
    assert h.cluster.sent == []


def test_replace_that_leaves_strays_is_retried_then_reported(h):
    for _ in range(3):
        h.cluster.answer(200, {"deleted": 0, "version_conflicts": 1}).answer(200, {"count": 2})
    h.cluster.answers[:0] = [(200, bulk_ok("d1-v1-00000")), (200, REFRESHED)]
    with pytest.raises(OpenSearchConsistencyError, match="still has 2 chunks"):
        h.index.replace_document("t1", "d1", [chunk("d1", 0, "x")], vectors(1))
    assert h.sleeps == [1.0, 2.0]


# ---- delete_document ------------------------------------------------------------------------------
def test_delete_document_verifies_that_none_remain(h):
    h.cluster.answer(200, {"deleted": 3}).answer(200, {"count": 1})  # a straggler (version conflict)
    h.cluster.answer(200, {"deleted": 1}).answer(200, {"count": 0})
    assert h.index.delete_document("t1", "d1") == 4
    assert h.cluster.sent == [expected_dbq("d1", []), expected_count("d1")] * 2
    assert h.sleeps == [1.0]


# ---- reads ----------------------------------------------------------------------------------------
STATS = {"_all": {"primaries": {"docs": {"count": 9, "deleted": 2}, "store": {"size_in_bytes": 512}}}}


def search_answer(*pairs: tuple[str, float]) -> dict[str, Any]:
    return {"hits": {"hits": [{"_id": i, "_score": s, "_source": {"chunk_id": i}} for i, s in pairs]}}


def test_search_vector_sends_the_knn_query_routed_by_tenant(h):
    flt = parse_filter({"source": "web"})
    h.cluster.answer(200, search_answer(("b", 0.5), ("a", 1.0), ("c", 0.5)))
    query = np.array([1, 0, 0, 0], dtype=np.float32)
    assert h.index.search_vector("t1", query, flt, 3) == [("a", 1.0), ("b", 0.5), ("c", 0.5)]
    assert h.cluster.sent == [
        Sent("POST", f"/{ALIAS}/_search", {"routing": "t1"}, q.knn_query("t1", query, flt, 3, 256))
    ]


def test_search_vector_on_innerproduct_converts_scores():
    h = make_harness(space_type="innerproduct")
    h.cluster.answer(200, search_answer(("a", 2.0), ("b", 1.5), ("c", 1.0), ("d", 0.5)))
    hits = h.index.search_vector("t1", np.ones(DIM, dtype=np.float32), MatchAll(), 4)
    assert hits == [("a", 1.0), ("b", 0.75), ("c", 0.5), ("d", 0.0)]


def test_search_keyword_returns_raw_bm25(h):
    h.cluster.answer(200, search_answer(("x", 2.75), ("y", 0.31)))
    assert h.index.search_keyword("t1", "quick fox", MatchAll(), 5) == [("x", 2.75), ("y", 0.31)]
    assert h.cluster.sent == [
        Sent("POST", f"/{ALIAS}/_search", {"routing": "t1"}, q.keyword_query("t1", "quick fox", MatchAll(), 5))
    ]


def test_every_read_is_routed_and_filtered_by_the_tenant_it_is_given(h):
    """The tenant comes with each call, not out of the filter: a filter naming another tenant only
    narrows within the given one (both terms must hold), and the read goes to the given one's shard."""
    elsewhere = Term("tenant_id", ("t2",))
    h.cluster.answer(200, search_answer()).answer(200, search_answer()).answer(200, {"count": 0})
    h.cluster.answer(200, search_answer())
    h.index.search_vector("t1", np.ones(DIM, dtype=np.float32), elsewhere, 3)
    h.index.search_keyword("t1", "x", MatchAll(), 3)
    h.index.count("t1", elsewhere)
    h.index.get_payloads("t1", ["b-00000"])
    assert [s.params for s in h.cluster.sent] == [{"routing": "t1"}] * 4
    knn, keyword, count, payloads = (s.body["query"] for s in h.cluster.sent)
    both = [{"term": {"tenant_id": "t1"}}, {"term": {"tenant_id": "t2"}}]
    assert knn["knn"]["embedding"]["filter"]["bool"]["filter"] == both
    assert keyword["bool"]["filter"] == [{"term": {"tenant_id": "t1"}}]
    assert count["bool"]["filter"] == both
    assert payloads["bool"]["filter"][0] == {"term": {"tenant_id": "t1"}}


def test_search_errors_that_retrying_cannot_fix_surface_at_once(h):
    h.cluster.answer(400, {"error": {"type": "search_phase_execution_exception", "reason": "bad"}, "status": 400})
    with pytest.raises(RequestError):
        h.index.search_keyword("t1", "x", MatchAll(), 3)
    assert h.sleeps == []


def test_an_unavailable_cluster_is_a_dependency_error_after_the_attempts(h):
    for _ in range(3):
        h.cluster.answer(503, {"error": "unavailable"})
    with pytest.raises(DependencyUnavailable, match="failed 3 times"):
        h.index.count("t1", MatchAll())
    assert h.sleeps == [1.0, 2.0]


def test_get_payloads_searches_the_tenants_shard_by_chunk_id(h):
    answer = {"hits": {"hits": [{"_source": {"chunk_id": "d-00001", "text": "t", "payload": {"page": 2}}}]}}
    h.cluster.answer(200, answer)
    assert h.index.get_payloads("t1", ["d-00001", "missing", "d-00001"]) == {"d-00001": {"page": 2, "text": "t"}}
    assert h.cluster.sent == [
        Sent("POST", f"/{ALIAS}/_search", {"routing": "t1"}, q.payloads_query("t1", ["d-00001", "missing"]))
    ]
    assert h.index.get_payloads("t1", []) == {}


def test_count_and_stats(h):
    flt = parse_filter({"page": {"$gte": 2}})
    h.cluster.answer(200, {"count": 7})
    h.cluster.answer(200, STATS)
    assert h.index.count("t1", flt) == 7
    assert h.index.stats() == {"chunks": 9, "deleted_chunks": 2, "store_bytes": 512}
    assert h.cluster.sent == [
        Sent("POST", f"/{ALIAS}/_count", {"routing": "t1"}, q.count_query("t1", flt)),
        Sent("GET", f"/{ALIAS}/_stats/docs,store", {}, None),
    ]


def test_detailed_health_counts_within_the_admins_tenant(h, tmp_path):
    """/health/detailed probes the index like any read: a count in the caller's tenant, routed."""

    class Embedder:
        def embed_documents(self, texts: list[str]) -> np.ndarray:
            return vectors(len(texts))

    container = Container(Settings(data_dir=tmp_path, auth_mode="authorizer"))
    container.__dict__.update(index=h.index, embedder=Embedder())  # as if built (cached properties)
    h.cluster.answer(200, {"count": 3})  # no index-wide statistics: they would tell one tenant about others
    context = {"authorizer": {"tenant_id": "acme", "key_id": "key_1", "scopes": "admin"}}
    with TestClient(create_app(container, routers=["health"])) as client:
        answer = client.get("/health/detailed", headers={"x-amzn-request-context": json.dumps(context)})
    assert answer.json()["dependencies"]["vector_index"] == "healthy"
    assert answer.json()["index"] == {"tenant_chunks": 3}
    assert h.cluster.sent[0] == Sent("POST", f"/{ALIAS}/_count", {"routing": "acme"}, q.count_query("acme", MatchAll()))


# ---- serverless -----------------------------------------------------------------------------------
def test_serverless_reads_without_routing_and_refuses_writes(monkeypatch):
    monkeypatch.setattr(adapter, "client_for", lambda settings: pytest.fail("the injected client must be used"))
    h = make_harness(auth_mode="sigv4-aoss", region="eu-west-1")
    h.cluster.answer(200, {"count": 1})
    assert h.index.count("t1", MatchAll()) == 1
    assert h.cluster.sent == [Sent("POST", f"/{ALIAS}/_count", {}, q.count_query("t1", MatchAll()))]
    for write in (
        h.index.ensure_index,
        lambda: h.index.replace_document("t1", "d", [], np.zeros((0, DIM))),
        lambda: h.index.delete_document("t1", "d"),
    ):
        with pytest.raises(OpenSearchConfigError, match="Serverless"):
            write()


# ---- settings and the client factory -------------------------------------------------------------
def test_settings_infer_basic_auth_from_the_url():
    assert OpenSearchSettings(url="https://user:pw@host:9200").resolved_auth_mode == "basic"
    assert OpenSearchSettings(url="http://localhost:9200").resolved_auth_mode == "none"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"url": "host:9200"}, "https://host:9200"),
        ({"url": "https://h:9200", "auth_mode": "basic"}, "basic auth needs"),
        ({"url": "https://u:p@h:9200", "auth_mode": "sigv4-es", "region": "eu-west-1"}, "credentials are set"),
        ({"url": "https://h:9200", "auth_mode": "sigv4-es"}, "needs a region"),
    ],
)
def test_settings_fail_fast(options, message, monkeypatch):
    monkeypatch.delenv("AWS_REGION", raising=False)
    with pytest.raises(ValueError, match=message):
        OpenSearchSettings(**options)


def test_settings_read_the_environment_through_the_global_settings(monkeypatch):
    monkeypatch.setenv("OPENSEARCH_URL", "https://search.example:443")
    monkeypatch.setenv("RAGLINE_OPENSEARCH_AUTH_MODE", "sigv4-es")
    monkeypatch.delenv("RAGLINE_OPENSEARCH_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "us-east-2")
    monkeypatch.setenv("RAGLINE_OPENSEARCH_INDEX_ALIAS", "kb-chunks")
    monkeypatch.setenv("RAGLINE_OPENSEARCH_BULK_MAX_ACTIONS", "50")
    monkeypatch.setenv("RAGLINE_HNSW_M", "32")  # engine-wide: drives both engines
    monkeypatch.setenv("RAGLINE_OPENSEARCH_HNSW_EF_SEARCH", "128")  # OpenSearch only
    settings = OpenSearchSettings.from_settings(Settings())
    assert (settings.url, settings.resolved_auth_mode, settings.region, settings.index_name) == (
        "https://search.example:443",
        "sigv4-es",
        "us-east-2",
        "kb-chunks-v1",
    )
    assert (settings.bulk_max_actions, settings.hnsw_m, settings.hnsw_ef_search) == (
        50,
        32,
        128,
    )
    monkeypatch.setenv("RAGLINE_OPENSEARCH_REGION", "eu-central-1")
    assert OpenSearchSettings.from_settings(Settings()).region == "eu-central-1"


def test_settings_view_fails_fast_and_clearly(monkeypatch):
    monkeypatch.delenv("OPENSEARCH_URL", raising=False)
    monkeypatch.delenv("RAGLINE_OPENSEARCH_URL", raising=False)
    with pytest.raises(OpenSearchConfigError, match="OPENSEARCH_URL is not set"):
        OpenSearchSettings.from_settings(Settings())
    monkeypatch.setenv("OPENSEARCH_URL", "https://h:9200")
    monkeypatch.setenv("RAGLINE_OPENSEARCH_AUTH_MODE", "basic")
    with pytest.raises(OpenSearchConfigError, match="basic auth needs"):
        OpenSearchSettings.from_settings(Settings())
    monkeypatch.setenv("RAGLINE_OPENSEARCH_USERNAME", "admin")
    monkeypatch.setenv("RAGLINE_OPENSEARCH_PASSWORD", "s3cret")
    built = OpenSearchSettings.from_settings(Settings())
    assert built.password is not None and built.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(Settings())


def test_client_factory_builds_one_basic_auth_client_per_configuration():
    opensearch_client.opensearch_client.cache_clear()
    first = opensearch_client.opensearch_client("https://user:pw@search.example:9200", "basic", None, True, 5.0)
    again = opensearch_client.opensearch_client("https://user:pw@search.example:9200", "basic", None, True, 5.0)
    assert first is again
    (connection,) = first.transport.connection_pool.connections
    assert connection.headers["authorization"].startswith("Basic ")
    assert first.transport.max_retries == 0
    opensearch_client.opensearch_client.cache_clear()


@pytest.mark.parametrize("mode, service", [("sigv4-es", "es"), ("sigv4-aoss", "aoss")])
def test_client_factory_signs_with_sigv4(mode, service, monkeypatch):
    pytest.importorskip("boto3")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    opensearch_client.opensearch_client.cache_clear()
    client = opensearch_client.opensearch_client("https://search.example", mode, "eu-west-1", True, 5.0)
    (connection,) = client.transport.connection_pool.connections
    signed = connection.http_auth("GET", "https://search.example/_search", None)
    assert f"/eu-west-1/{service}/aws4_request" in signed["Authorization"]
    opensearch_client.opensearch_client.cache_clear()


def test_ensure_index_refuses_an_alias_that_is_not_a_chunk_index(h):
    h.cluster.answer(200).answer(200, {"someone-else": {"mappings": {"properties": {"title": {"type": "text"}}}}})
    with pytest.raises(OpenSearchConfigError, match="not a Ragline chunk index"):
        h.index.ensure_index()
