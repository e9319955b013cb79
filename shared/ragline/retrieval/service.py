"""Search: embed the query, ask the index with the tenant-scoped filter, fuse, cut to `limit`."""

from __future__ import annotations

import time
from typing import Any

from ragline.models import SearchHit, SearchRequest, SearchResponse
from ragline.ports import Embedder, VectorIndex
from ragline.retrieval.filters import FilterNode, scope_to_tenant
from ragline.retrieval.fusion import weighted_fusion


PAYLOAD_ATTEMPTS = 3


class SearchService:
    def __init__(
        self, index: VectorIndex, embedder: Embedder, *, hybrid_candidates: int = 100, semantic_weight: float = 0.5
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.hybrid_candidates = hybrid_candidates
        self.semantic_weight = semantic_weight

    def ranked(self, query: str, flt: FilterNode, limit: int, mode: str) -> list[tuple[str, float]]:
        if mode == "semantic":
            return self.index.search_vector(self.embedder.embed_query(query), flt, limit)
        if mode == "keyword":
            return self.index.search_keyword(query, flt, limit)
        depth = max(limit, self.hybrid_candidates)
        semantic = self.index.search_vector(self.embedder.embed_query(query), flt, depth)
        keyword = self.index.search_keyword(query, flt, depth)
        return weighted_fusion([(semantic, self.semantic_weight), (keyword, 1.0 - self.semantic_weight)])

    def search(self, tenant_id: str, request: SearchRequest) -> SearchResponse:
        started = time.perf_counter()
        flt = scope_to_tenant(request.filters, tenant_id)
        for _ in range(PAYLOAD_ATTEMPTS):
            ranked = [(cid, s) for cid, s in self.ranked(request.query, flt, request.limit, request.mode)]
            ranked = [(cid, s) for cid, s in ranked if s >= request.score_threshold]
            top = ranked[: request.limit]
            payloads = self.index.get_payloads([cid for cid, _ in top])
            if len(payloads) == len(top):
                break
            # A document was replaced or deleted between the search and the fetch: search again.
        items = [SearchHit(id=cid, score=round(s, 6), payload=public_payload(payloads[cid])) for cid, s in top if cid in payloads]
        return SearchResponse(
            items=items, total_found=len(ranked), latency_ms=round((time.perf_counter() - started) * 1000, 2)
        )


def public_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """What a search hit shows: everything stored beside the vector, always with the API's keys."""
    shown = {
        "tenant_id": None,
        "document_id": None,
        "title": None,
        "filename": None,
        "page": None,
        "text": "",
        "tag_ids": [],
        "tag_names": [],
        "source": None,
        "metadata": {},
    }
    shown.update(payload)
    return shown
