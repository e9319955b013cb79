"""One version per document within a search result (the OpenSearch replace window)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from ragline.chunks import chunk_version, payload_version
from ragline.models import SearchRequest
from ragline.retrieval.filters import FilterNode
from ragline.retrieval.service import SearchService, newest_versions


@pytest.mark.parametrize(
    "chunk_id, expected",
    [
        ("doc_1-v1-00000", ("doc_1", 1)),
        ("doc_1-v12-00042", ("doc_1", 12)),
        ("a-v2-b-v3-00001", ("a-v2-b", 3)),  # only the suffix is read
        ("d-v1-123456", ("d", 1)),  # positions past 99999 have more digits
        ("doc_1-00000", None),  # written before ids carried the version
        ("doc_1-v1-0001", None),
        ("doc_1-vx-00000", None),
        ("plain", None),
    ],
)
def test_chunk_version(chunk_id, expected):
    assert chunk_version(chunk_id) == expected


@pytest.mark.parametrize(
    "payload, expected",
    [
        ({"document_id": "d", "version": 3}, ("d", 3)),
        ({"document_id": "d"}, None),
        ({"document_id": "d", "version": "3"}, None),
        ({"document_id": "d", "version": True}, None),
        ({"version": 3}, None),
    ],
)
def test_payload_version(payload, expected):
    assert payload_version(payload) == expected


V = {
    "a-v1-00000": ("a", 1),
    "a-v1-00001": ("a", 1),
    "a-v2-00000": ("a", 2),
    "b-v1-00000": ("b", 1),
    "b-v3-00000": ("b", 3),
    "legacy": None,
}

CASES: list[tuple[str, list[str], list[str]]] = [
    ("nothing to drop", ["a-v1-00000", "b-v1-00000"], ["a-v1-00000", "b-v1-00000"]),
    ("old chunks of a replaced document go", ["a-v1-00000", "a-v2-00000", "a-v1-00001"], ["a-v2-00000"]),
    ("the newest wins even when ranked last", ["a-v1-00000", "b-v3-00000", "a-v2-00000"], ["b-v3-00000", "a-v2-00000"]),
    ("documents are independent", ["b-v1-00000", "a-v1-00000", "b-v3-00000"], ["a-v1-00000", "b-v3-00000"]),
    ("unknown versions are kept, in place", ["legacy", "a-v1-00000", "a-v2-00000"], ["legacy", "a-v2-00000"]),
    ("ids missing from the map are kept", ["zzz", "a-v1-00000"], ["zzz", "a-v1-00000"]),
    ("empty", [], []),
]


@pytest.mark.parametrize("ranked, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_newest_versions(ranked, expected):
    scored = [(cid, 1.0 - i / 10) for i, cid in enumerate(ranked)]
    kept = newest_versions(scored, V)
    assert [cid for cid, _ in kept] == expected
    assert all(score == dict(scored)[cid] for cid, score in kept)  # scores untouched


class _Tokenizer:
    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        return [[(0, len(t))] for t in texts]


class _Embedder:
    model_name = "fixed"
    dimension = 2
    tokenizer = _Tokenizer()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return np.ones((len(texts), 2), dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return np.ones(2, dtype=np.float32)


class _MidReplaceIndex:
    """An index between the refresh and the delete of a replace: both versions are searchable."""

    dimension = 2

    def __init__(self) -> None:
        self.payloads: dict[str, dict[str, Any]] = {
            "d-v1-00000": {"document_id": "d", "version": 1, "text": "old zero"},
            "d-v1-00001": {"document_id": "d", "version": 1, "text": "old one"},
            "d-v2-00000": {"document_id": "d", "version": 2, "text": "new zero"},
            "e-v1-00000": {"document_id": "e", "version": 1, "text": "other"},
            # written before chunk ids carried the version; the payload still says which
            "f-00000": {"document_id": "f", "version": 1, "text": "legacy old"},
            "f-v2-00000": {"document_id": "f", "version": 2, "text": "f new"},
        }

    def search_vector(self, tenant_id: str, vector: np.ndarray, flt: FilterNode, k: int) -> list[tuple[str, float]]:
        ranked = [("d-v1-00000", 0.9), ("f-00000", 0.85), ("e-v1-00000", 0.8), ("d-v2-00000", 0.7)]
        ranked += [("d-v1-00001", 0.6), ("f-v2-00000", 0.5)]
        return ranked[:k]

    def get_payloads(self, tenant_id: str, chunk_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {cid: self.payloads[cid] for cid in chunk_ids if cid in self.payloads}


def test_search_never_mixes_two_versions_of_a_document():
    service = SearchService(_MidReplaceIndex(), _Embedder())  # type: ignore[arg-type]
    result = service.search("t1", SearchRequest(query="q", mode="semantic", limit=10))
    assert [hit.id for hit in result.items] == ["e-v1-00000", "d-v2-00000", "f-v2-00000"]
    assert {hit.payload["document_id"]: hit.payload["version"] for hit in result.items} == {"d": 2, "e": 1, "f": 2}
