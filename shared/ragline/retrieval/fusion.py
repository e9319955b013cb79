"""Hybrid fusion: one ranked list from the semantic (k-NN) and keyword (BM25) lists.

Both engines return the two lists separately (OpenSearch as two searches, not a hybrid query with
a normalization pipeline), and the fusion happens here, so it is the same code on either engine.

The default, `absolute`, is a convex combination of absolute scores:

    hybrid = w * semantic + (1 - w) * keyword
    semantic = (1 + cosine) / 2                      (what both engines report, 0..1)
    keyword  = bm25 / (bm25 + keyword_saturation)    (0 with no query term, towards 1 as BM25 grows)

so a hybrid score means the same whatever else the query found, and `score_threshold` can be
set once. A candidate missing from one list (beyond its depth) is given that list's lowest score,
which bounds what it would have scored; when the list is shorter than its depth it holds every
match, and a chunk missing from the keyword list has no query term: keyword 0.

The others are kept for measurement (`ragline bench quality --tune`): `min_max` (OpenSearch's
normalization pipeline: per-query min-max, then the weighted mean; the best hit always looks
perfect), `z_score` (per-query standardisation, then the weighted mean) and `rrf` (reciprocal rank
fusion, weighted). Their scores are relative to the query, not absolute.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

# OpenSearch's min_max technique floors normalised scores so a listed result never counts as absent.
MIN_NORMALIZED_SCORE = 0.001
# Chosen on SciFact's train queries (`ragline bench quality --tune`): the BM25 score that counts as half
# way, and the semantic share of the hybrid score.
KEYWORD_SATURATION = 32.0
SEMANTIC_WEIGHT = 0.6

Hits = Sequence[tuple[str, float]]
FusionMethod = Literal["absolute", "min_max", "z_score", "rrf"]


def keyword_score(bm25: float, saturation: float = KEYWORD_SATURATION) -> float:
    """BM25 on an absolute 0..1 scale: monotone, 0 for no match, one half at `saturation`."""
    return bm25 / (bm25 + saturation) if bm25 > 0 else 0.0


def keyword_scores(hits: Hits, saturation: float = KEYWORD_SATURATION) -> list[tuple[str, float]]:
    return [(doc_id, keyword_score(score, saturation)) for doc_id, score in hits]


def min_max_normalize(hits: Hits) -> dict[str, float]:
    if not hits:
        return {}
    scores = [score for _, score in hits]
    low, high = min(scores), max(scores)
    if high == low:
        return {doc_id: 1.0 for doc_id, _ in hits}
    return {doc_id: max(MIN_NORMALIZED_SCORE, (score - low) / (high - low)) for doc_id, score in hits}


def z_score_normalize(hits: Hits) -> dict[str, float]:
    if not hits:
        return {}
    scores = [score for _, score in hits]
    mean = sum(scores) / len(scores)
    spread = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
    if spread == 0:
        return {doc_id: 0.0 for doc_id, _ in hits}
    return {doc_id: (score - mean) / spread for doc_id, score in hits}


def weighted_fusion(lists: Sequence[tuple[Hits, float]]) -> list[tuple[str, float]]:
    """Min-max normalise each list, then the weighted mean (a result missing from a list scores 0
    there); ties keep the order in which results first appeared."""
    total_weight = sum(weight for _, weight in lists)
    if total_weight <= 0:
        raise ValueError("fusion weights must add up to more than 0")
    fused: dict[str, float] = {}
    for hits, weight in lists:
        for doc_id in (doc_id for doc_id, _ in hits):
            fused.setdefault(doc_id, 0.0)
        for doc_id, score in min_max_normalize(hits).items():
            fused[doc_id] += weight * score
    return _ranked({doc_id: score / total_weight for doc_id, score in fused.items()})


def _ranked(fused: dict[str, float]) -> list[tuple[str, float]]:
    first_seen = {doc_id: i for i, doc_id in enumerate(fused)}
    return sorted(fused.items(), key=lambda item: (-item[1], first_seen[item[0]]))


def _with_missing(hits: Hits, depth: int, normalized: dict[str, float]) -> tuple[dict[str, float], float]:
    """The list's scores, and what a result missing from it gets: the lowest listed score when
    the list was cut at its depth, else 0 (the list holds every match)."""
    missing = min(normalized.values()) if normalized and len(hits) >= depth else 0.0
    return normalized, missing


@dataclass(frozen=True)
class Fusion:
    method: FusionMethod = "absolute"
    semantic_weight: float = SEMANTIC_WEIGHT
    keyword_saturation: float = KEYWORD_SATURATION  # absolute: BM25 at which keyword = 0.5
    rrf_k: int = 60  # rrf: 1 / (rrf_k + rank)
    # absolute: the saturation is per distinct query term (BM25 sums over the query's terms)
    saturation_per_term: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.semantic_weight <= 1.0:
            raise ValueError("semantic_weight must be between 0 and 1")
        if self.keyword_saturation <= 0 or self.rrf_k < 0:
            raise ValueError("keyword_saturation must be more than 0 and rrf_k at least 0")

    def saturation(self, query_terms: int) -> float:
        """The BM25 score that counts as 0.5 for a query with this many distinct analysed terms."""
        return self.keyword_saturation * (max(1, query_terms) if self.saturation_per_term else 1)

    def fuse(self, semantic: Hits, keyword: Hits, depth: int, query_terms: int = 1) -> list[tuple[str, float]]:
        """One ranked list from the semantic hits ((1 + cos) / 2) and the keyword hits (raw BM25),
        each asked for `depth` deep. Ties keep the order in which results first appeared."""
        w = self.semantic_weight
        if self.method == "min_max":
            return weighted_fusion([(semantic, w), (keyword, 1.0 - w)])
        if self.method == "rrf":
            sem = {doc_id: 1.0 / (self.rrf_k + rank + 1) for rank, (doc_id, _) in enumerate(semantic)}
            kw = {doc_id: 1.0 / (self.rrf_k + rank + 1) for rank, (doc_id, _) in enumerate(keyword)}
            sem_missing = kw_missing = 0.0
        elif self.method == "z_score":
            sem, sem_missing = _with_missing(semantic, depth, z_score_normalize(semantic))
            kw, kw_missing = _with_missing(keyword, depth, z_score_normalize(keyword))
        else:
            sem, sem_missing = _with_missing(semantic, depth, dict(semantic))
            kw, kw_missing = _with_missing(keyword, depth, dict(keyword_scores(keyword, self.saturation(query_terms))))
        order = dict.fromkeys([doc_id for doc_id, _ in semantic] + [doc_id for doc_id, _ in keyword], 0.0)
        fused = {doc_id: w * sem.get(doc_id, sem_missing) + (1.0 - w) * kw.get(doc_id, kw_missing) for doc_id in order}
        return _ranked(fused)
