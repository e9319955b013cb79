"""Hybrid fusion, as OpenSearch's normalization search pipeline does it: min-max normalise each
result list, then a weighted arithmetic mean (a result missing from a list scores 0 there)."""

from __future__ import annotations

from collections.abc import Sequence

# OpenSearch's min_max technique floors normalised scores so a listed result never counts as absent.
MIN_NORMALIZED_SCORE = 0.001

Hits = Sequence[tuple[str, float]]


def min_max_normalize(hits: Hits) -> dict[str, float]:
    if not hits:
        return {}
    scores = [score for _, score in hits]
    low, high = min(scores), max(scores)
    if high == low:
        return {doc_id: 1.0 for doc_id, _ in hits}
    return {doc_id: max(MIN_NORMALIZED_SCORE, (score - low) / (high - low)) for doc_id, score in hits}


def weighted_fusion(lists: Sequence[tuple[Hits, float]]) -> list[tuple[str, float]]:
    """Fuse ranked lists; ties keep the order in which results first appeared."""
    total_weight = sum(weight for _, weight in lists)
    if total_weight <= 0:
        raise ValueError("fusion weights must add up to more than 0")
    fused: dict[str, float] = {}
    for hits, weight in lists:
        for doc_id in (doc_id for doc_id, _ in hits):
            fused.setdefault(doc_id, 0.0)
        for doc_id, score in min_max_normalize(hits).items():
            fused[doc_id] += weight * score
    first_seen = {doc_id: i for i, doc_id in enumerate(fused)}
    ranked = sorted(fused.items(), key=lambda item: (-item[1], first_seen[item[0]]))
    return [(doc_id, score / total_weight) for doc_id, score in ranked]
