"""Per-tenant layout against the scripted connection: each tenant's requests name only its index.

Same harness as test_opensearch_transport.py (the real client and transport, a scripted HTTP
connection). The request sequences of a first write and of every read are pinned in a golden file.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import numpy as np
import pytest

from ragline.adapters.aws.opensearch import queries as q
from ragline.adapters.aws.opensearch.index import TenantIndexLimitReached
from ragline.adapters.aws.opensearch.settings import OpenSearchConfigError
from ragline.retrieval.filters import MatchAll, Term, parse_filter
from tests.integration.test_opensearch_transport import (
    ALIAS,
    DIM,
    REFRESHED,
    Harness,
    Sent,
    bulk_ok,
    chunk,
    make_harness,
    search_answer,
    vectors,
)
from tests.unit.test_opensearch_queries import assert_golden

A, B = "Acme", "acme"  # one slug, two tenants: the hash keeps them apart
A_ALIAS, B_ALIAS = q.tenant_alias(ALIAS, A), q.tenant_alias(ALIAS, B)
MISSING = {
    "error": {"type": "index_not_found_exception", "reason": "no such index", "index": "x"},
    "status": 404,
}
DBQ = {"conflicts": "proceed", "refresh": "true", "wait_for_completion": "true"}  # no routing


def mapping(tenant: str | None, dimension: int = DIM) -> dict[str, Any]:
    mappings: dict[str, Any] = {"properties": {"embedding": {"type": "knn_vector", "dimension": dimension}}}
    if tenant is not None:
        mappings["_meta"] = {"ragline_tenant_id": tenant}
    return {f"{q.tenant_alias(ALIAS, tenant or 'x')}-v1": {"mappings": mappings}}


def aliases(*tenants: str) -> dict[str, Any]:
    """A GET /_alias/<alias>-t-* answer listing these tenants' aliases."""
    return {f"{q.tenant_alias(ALIAS, t)}-v1": {"aliases": {q.tenant_alias(ALIAS, t): {}}} for t in tenants}


def per_tenant(**settings: Any) -> Harness:
    return make_harness(index_layout="per_tenant", **settings)


@pytest.fixture
def h():
    harness = per_tenant()
    yield harness
    assert harness.cluster.answers == [], "scripted answers left unused"


def as_json(sent: list[Sent]) -> list[dict[str, Any]]:
    return [asdict(s) for s in sent]


# ---- start and first write -------------------------------------------------------------------------
def test_a_start_only_looks_for_the_shared_alias(h, caplog):
    h.cluster.answer(404)
    h.index.ensure_index()
    assert h.cluster.sent == [Sent("HEAD", f"/_alias/{ALIAS}", {}, None)]
    assert "still exists" not in caplog.text


def test_a_start_warns_while_the_shared_alias_remains(h, caplog):
    h.cluster.answer(200)
    with caplog.at_level(logging.WARNING):
        h.index.ensure_index()
    assert f"shared alias {ALIAS} still exists" in caplog.text
    assert len(h.cluster.sent) == 1  # nothing created


def first_write(h: Harness) -> list[Any]:
    chunks = [chunk("d1", 0, "zero", tenant=A), chunk("d1", 1, "one", tenant=A)]
    h.cluster.answer(404).answer(404).answer(200, aliases("other"))  # HEAD alias, HEAD index, list
    h.cluster.answer(200, {"acknowledged": True, "index": f"{A_ALIAS}-v1"})
    h.cluster.answer(200, bulk_ok(*[c.id for c in chunks])).answer(200, REFRESHED)
    h.cluster.answer(200, {"deleted": 0}).answer(200, {"count": 2})
    h.index.replace_document(A, "d1", chunks, vectors(2))
    return chunks


def test_a_tenants_first_write_creates_its_index_then_writes_only_there(h):
    chunks = first_write(h)
    assert h.cluster.sent == [
        Sent("HEAD", f"/_alias/{A_ALIAS}", {}, None),
        Sent("HEAD", f"/{A_ALIAS}", {}, None),
        Sent("GET", f"/_alias/{ALIAS}-t-*", {}, None),  # the cap: how many tenant indices exist
        Sent("PUT", f"/{A_ALIAS}-v1", {}, h.index.index_definition(tenant_id=A)),
        Sent(
            "POST",
            "/_bulk",
            {"refresh": "false", "require_alias": "true"},
            q.bulk_actions(A_ALIAS, chunks, vectors(2), routing=False),
        ),
        Sent("POST", f"/{A_ALIAS}/_refresh", {}, None),
        Sent("POST", f"/{A_ALIAS}/_delete_by_query", DBQ, q.delete_by_document_query(A, "d1", [c.id for c in chunks])),
        Sent("POST", f"/{A_ALIAS}/_count", {}, q.count_query(A, Term("document_id", ("d1",)))),
    ]
    assert h.cluster.sent[3].body["mappings"]["_meta"] == {"ragline_tenant_id": A}
    assert_golden("per_tenant_first_write.json", as_json(h.cluster.sent))


def test_the_tenants_index_is_made_sure_of_once_per_process(h):
    first_write(h)
    h.cluster.sent.clear()
    h.cluster.answer(200, bulk_ok("d2-v1-00000")).answer(200, REFRESHED).answer(200, {"deleted": 0})
    h.cluster.answer(200, {"count": 1})
    h.index.replace_document(A, "d2", [chunk("d2", 0, "two", tenant=A)], vectors(1))
    assert [s.path for s in h.cluster.sent] == [
        "/_bulk",
        f"/{A_ALIAS}/_refresh",
        f"/{A_ALIAS}/_delete_by_query",
        f"/{A_ALIAS}/_count",
    ]


def test_an_existing_tenant_index_is_checked_not_created(h):
    h.cluster.answer(200).answer(200, mapping(A))
    h.cluster.answer(200, bulk_ok("d1-v1-00000")).answer(200, REFRESHED).answer(200, {"deleted": 0})
    h.cluster.answer(200, {"count": 1})
    h.index.replace_document(A, "d1", [chunk("d1", 0, "x", tenant=A)], vectors(1))
    assert [(s.method, s.path) for s in h.cluster.sent[:2]] == [
        ("HEAD", f"/_alias/{A_ALIAS}"),
        ("GET", f"/{A_ALIAS}/_mapping"),
    ]


@pytest.mark.parametrize(
    "found, error, message",
    [
        (mapping(B), OpenSearchConfigError, "not created for this tenant"),  # a hash collision
        (mapping(None), OpenSearchConfigError, "not created for this tenant"),  # a hand-made index
        (mapping(A, dimension=DIM * 2), ValueError, "8-dimensional"),
    ],
)
def test_a_tenant_index_that_is_not_this_tenants_is_never_written(found, error, message):
    h = per_tenant()
    h.cluster.answer(200).answer(200, found)
    with pytest.raises(error, match=message):
        h.index.replace_document(A, "d1", [chunk("d1", 0, "x", tenant=A)], vectors(1))
    assert [s.method for s in h.cluster.sent] == ["HEAD", "GET"]  # no bulk


def test_the_cap_on_tenant_indices_refuses_a_new_one_without_telling_how_many(caplog):
    h = per_tenant(max_tenant_indices=2)
    h.cluster.answer(404).answer(404).answer(200, aliases("x", "y"))
    with pytest.raises(TenantIndexLimitReached, match="RAGLINE_OPENSEARCH_MAX_TENANT_INDICES") as caught:
        h.index.replace_document(A, "d1", [chunk("d1", 0, "x", tenant=A)], vectors(1))
    assert "2" not in caught.value.message  # the tenant sees the failure, not the tenant count
    assert caught.value.status == 500
    assert "2 tenant indices exist" in caplog.text  # the operator's log does
    assert [(s.method, s.path) for s in h.cluster.sent] == [
        ("HEAD", f"/_alias/{A_ALIAS}"),
        ("HEAD", f"/{A_ALIAS}"),
        ("GET", f"/_alias/{ALIAS}-t-*"),
    ]  # nothing created


def test_the_cap_counts_existing_tenants_only_when_a_new_one_comes():
    h = per_tenant(max_tenant_indices=1)
    h.cluster.answer(404).answer(404).answer(200, {}).answer(200, {"acknowledged": True})  # room for one
    h.cluster.answer(200, bulk_ok("d1-v1-00000")).answer(200, REFRESHED).answer(200, {"deleted": 0})
    h.cluster.answer(200, {"count": 1})
    h.index.replace_document(A, "d1", [chunk("d1", 0, "x", tenant=A)], vectors(1))
    assert h.cluster.answers == []


def test_a_concurrent_creation_of_the_same_tenant_index_is_fine(h):
    exists = {"error": {"type": "resource_already_exists_exception", "reason": "exists"}, "status": 400}
    h.cluster.answer(404).answer(404).answer(200, {}).answer(400, exists).answer(200).answer(200, mapping(A))
    h.cluster.answer(200, bulk_ok("d1-v1-00000")).answer(200, REFRESHED).answer(200, {"deleted": 0})
    h.cluster.answer(200, {"count": 1})
    h.index.replace_document(A, "d1", [chunk("d1", 0, "x", tenant=A)], vectors(1))
    assert [(s.method, s.path) for s in h.cluster.sent[3:6]] == [
        ("PUT", f"/{A_ALIAS}-v1"),
        ("HEAD", f"/_alias/{A_ALIAS}"),
        ("GET", f"/{A_ALIAS}/_mapping"),
    ]


# ---- reads and deletes ---------------------------------------------------------------------------
def reads_of(h: Harness, tenant: str) -> None:
    query = np.array([1, 0, 0, 0], dtype=np.float32)
    flt = parse_filter({"source": "web"})
    h.cluster.answer(200, search_answer(("d1-v1-00000", 1.0)))
    h.cluster.answer(200, search_answer(("d1-v1-00000", 2.5)))
    h.cluster.answer(200, {"count": 1})
    h.cluster.answer(200, {"hits": {"hits": []}})
    h.cluster.answer(200, {"deleted": 1}).answer(200, {"count": 0})
    h.index.search_vector(tenant, query, flt, 3)
    h.index.search_keyword(tenant, "quick fox", flt, 3)
    h.index.count(tenant, flt)
    h.index.get_payloads(tenant, ["d1-v1-00000"])
    h.index.delete_document(tenant, "d1")


def test_every_read_and_delete_of_a_tenant_names_only_its_index(h):
    reads_of(h, A)
    a_requests = list(h.cluster.sent)
    h.cluster.sent.clear()
    reads_of(h, B)
    for tenant, alias, sent in ((A, A_ALIAS, a_requests), (B, B_ALIAS, h.cluster.sent)):
        assert [s.path.split("/")[1] for s in sent] == [alias] * 6, tenant
        assert all("routing" not in s.params for s in sent)  # the index is the tenant's: nothing to route
        # defence in depth: the tenant term stays in every body
        assert all(q.tenant_term(tenant) in _filters(s.body) for s in sent), tenant
    assert_golden("per_tenant_reads.json", as_json(a_requests))


def _filters(body: dict[str, Any]) -> list[Any]:
    query = body["query"]
    if "knn" in query:
        return query["knn"]["embedding"]["filter"]["bool"]["filter"]
    return query["bool"]["filter"]


def test_a_tenant_without_an_index_reads_nothing(h):
    """Never written (or not yet moved): 404 index_not_found is an empty tenant, not an error."""
    for _ in range(6):
        h.cluster.answer(404, MISSING)
    assert h.index.search_vector(A, np.ones(DIM, dtype=np.float32), MatchAll(), 3) == []
    assert h.index.search_keyword(A, "x", MatchAll(), 3) == []
    assert h.index.count(A, MatchAll()) == 0
    assert h.index.get_payloads(A, ["d1-v1-00000"]) == {}
    assert h.index.delete_document(A, "d1") == 0
    assert {s.path.split("/")[1] for s in h.cluster.sent} == {A_ALIAS}


def test_the_shared_layout_still_reports_a_missing_index():
    from opensearchpy.exceptions import NotFoundError

    h = make_harness()
    h.cluster.answer(404, MISSING)
    with pytest.raises(NotFoundError):
        h.index.count(A, MatchAll())


# ---- stats ---------------------------------------------------------------------------------------
def test_stats_sum_the_current_version_of_every_tenant_index(h):
    def entry(count: int) -> dict[str, Any]:
        return {"primaries": {"docs": {"count": count, "deleted": 1}, "store": {"size_in_bytes": 10 * count}}}

    listed = {
        f"{A_ALIAS}-v2": {"aliases": {A_ALIAS: {"is_write_index": True}}},
        f"{B_ALIAS}-v1": {"aliases": {B_ALIAS: {}}},
    }
    h.cluster.answer(200, listed)
    h.cluster.answer(
        200, {"indices": {f"{A_ALIAS}-v1": entry(100), f"{A_ALIAS}-v2": entry(3), f"{B_ALIAS}-v1": entry(4)}}
    )
    assert h.index.stats() == {"chunks": 7, "deleted_chunks": 2, "store_bytes": 70, "tenant_indices": 2}
    assert h.cluster.sent == [
        Sent("GET", f"/_alias/{ALIAS}-t-*", {}, None),
        Sent("GET", f"/{ALIAS}-t-*/_stats/docs,store", {"level": "indices"}, None),
    ]


def test_stats_without_tenant_indices(h):
    h.cluster.answer(404, {"error": "alias [ragline-chunks-t-*] missing", "status": 404})
    assert h.index.stats() == {"chunks": 0, "deleted_chunks": 0, "store_bytes": 0, "tenant_indices": 0}
