"""Search: embed the query, ask the index with the tenant-scoped filter, fuse, cut to `limit`."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ragline.chunks import DocumentVersion, chunk_version, payload_version
from ragline.models import SearchHit, SearchRequest, SearchResponse
from ragline.ports import Embedder, VectorIndex
from ragline.retrieval.evidence import Evidence, cosine_from_score, term_coverage
from ragline.retrieval.filters import And, FilterNode, scope_to_tenant
from ragline.retrieval.fusion import weighted_fusion

if TYPE_CHECKING:
    import numpy as np

PAYLOAD_ATTEMPTS = 3
QUERY_CACHE_SIZE = 2048  # query vectors kept per service (one per process); repeated queries are common


def newest_versions(
    ranked: Sequence[tuple[str, float]], versions: Mapping[str, DocumentVersion | None]
) -> list[tuple[str, float]]:
    """Drop the chunks of any document version older than the newest one among these candidates.

    OpenSearch cannot swap a document's chunks atomically: between the refresh that shows a new
    version and the delete of the old one both are searchable. Keeping one version per document
    within a result hides that window. Chunks without a known version are always kept. Order is kept.
    """
    newest: dict[str, int] = {}
    for chunk_id, _ in ranked:
        known = versions.get(chunk_id)
        if known is not None:
            document, version = known
            newest[document] = max(version, newest.get(document, version))
    kept = []
    for chunk_id, score in ranked:
        known = versions.get(chunk_id)
        if known is None or known[1] == newest[known[0]]:
            kept.append((chunk_id, score))
    return kept


@dataclass(frozen=True)
class Retrieved:
    ranked: list[tuple[str, float]]  # what the mode returns, best first
    semantic: list[tuple[str, float]] | None = None  # the k-NN list: (1 + cosine) / 2, best first
    keyword: list[tuple[str, float]] | None = None  # the BM25 list, best first

    def evidence(self, query: str, texts: Sequence[str]) -> Evidence:
        cosine = bm25 = None
        if self.semantic is not None:  # an empty list: nothing the filter lets through, so no support
            cosine = cosine_from_score(self.semantic[0][1]) if self.semantic else -1.0
        if self.keyword is not None:
            bm25 = self.keyword[0][1] if self.keyword else 0.0
        return Evidence(cosine=cosine, bm25=bm25, coverage=term_coverage(query, texts))


class SearchService:
    def __init__(
        self,
        index: VectorIndex,
        embedder: Embedder,
        *,
        hybrid_candidates: int = 100,
        semantic_weight: float = 0.5,
        hidden: Callable[[str], FilterNode | None] | None = None,
    ) -> None:
        self.index = index
        # What a tenant's searches must not see whatever their filters say (knowledge bases being
        # deleted), read on every search: a delete hides its chunks from the next search on.
        self.hidden = hidden
        self.embedder = embedder
        self.hybrid_candidates = hybrid_candidates
        self.semantic_weight = semantic_weight
        # Keyed by tenant as well as text: a cache shared by tenants would let one time whether
        # another had just run a query. A failed embedding is not kept.
        self.query_vector = lru_cache(maxsize=QUERY_CACHE_SIZE)(self._embed_query)

    def _embed_query(self, tenant_id: str, query: str) -> np.ndarray:
        import numpy as np  # here, not at import: the authorizer imports this module and must not load numpy

        vector = np.array(self.embedder.embed_query(query), dtype=np.float32)  # a copy the embedder cannot change
        vector.flags.writeable = False  # shared between this tenant's searches through the cache
        return vector

    def ranked(self, tenant_id: str, query: str, flt: FilterNode, limit: int, mode: str) -> list[tuple[str, float]]:
        return self.retrieve(tenant_id, query, flt, limit, mode).ranked

    def retrieve(self, tenant_id: str, query: str, flt: FilterNode, limit: int, mode: str) -> Retrieved:
        """The ranking of one mode, with the engines' own (absolute) lists it was made from."""
        if mode == "semantic":
            semantic = self.index.search_vector(tenant_id, self.query_vector(tenant_id, query), flt, limit)
            return Retrieved(semantic, semantic=semantic)
        if mode == "keyword":
            keyword = self.index.search_keyword(tenant_id, query, flt, limit)
            return Retrieved(keyword, keyword=keyword)
        depth = max(limit, self.hybrid_candidates)
        semantic = self.index.search_vector(tenant_id, self.query_vector(tenant_id, query), flt, depth)
        keyword = self.index.search_keyword(tenant_id, query, flt, depth)
        fused = weighted_fusion([(semantic, self.semantic_weight), (keyword, 1.0 - self.semantic_weight)])
        return Retrieved(fused, semantic=semantic, keyword=keyword)

    def search(self, tenant_id: str, request: SearchRequest) -> SearchResponse:
        return self.search_with_evidence(tenant_id, request)[0]

    def search_with_evidence(self, tenant_id: str, request: SearchRequest) -> tuple[SearchResponse, Evidence]:
        """The search answer, and how relevant its best passages are on an absolute scale (for chat)."""
        started = time.perf_counter()
        flt = scope_to_tenant(request.filters, tenant_id)
        hidden = self.hidden(tenant_id) if self.hidden is not None else None
        if hidden is not None:
            flt = And((flt, hidden))  # the tenant clause stays first (tenant_of)
        for _ in range(PAYLOAD_ATTEMPTS):
            retrieved = self.retrieve(tenant_id, request.query, flt, request.limit, request.mode)
            ranked = [(cid, s) for cid, s in retrieved.ranked if s >= request.score_threshold]
            ranked = newest_versions(ranked, {cid: chunk_version(cid) for cid, _ in ranked})
            top = ranked[: request.limit]
            payloads = self.index.get_payloads(tenant_id, [cid for cid, _ in top])
            if len(payloads) == len(top):
                break
            # A document was replaced or deleted between the search and the fetch: search again.
        # The payloads say it too, for chunk ids written before ids carried the version.
        top = newest_versions(top, {cid: payload_version(p) for cid, p in payloads.items()})
        items = [
            SearchHit(id=cid, score=round(s, 6), payload=public_payload(payloads[cid]))
            for cid, s in top
            if cid in payloads
        ]
        response = SearchResponse(
            items=items, total_found=len(ranked), latency_ms=round((time.perf_counter() - started) * 1000, 2)
        )
        return response, retrieved.evidence(request.query, [item.payload["text"] for item in items])


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
