"""`ragline bench quality --tune`: choose the hybrid fusion by nDCG@10 on SciFact's TRAIN queries.

Each train query is searched once per engine list, 300 deep (the semantic list with its
(1 + cos) / 2 scores, the keyword list with its raw BM25), through the real index; the lists are
kept in the index cache. Every fusion of the grid (ragline.retrieval.fusion.Fusion, the code search
runs) is then scored on them offline, exactly as `evaluate` scores a mode: the fused top 100 chunks,
collapsed to documents by their best chunk, nDCG@10. The test qrels are never looked at here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from ragline.retrieval.fusion import Fusion
    from ragline_bench.quality import Qrels, Retriever

LIST_DEPTH = 300
NDCG_CHUNKS = 100  # as quality.NDCG_CHUNKS
WEIGHTS = (0.4, 0.5, 0.6, 0.7, 0.8)
SATURATIONS = (4.0, 8.0, 16.0, 32.0)
PER_TERM = (1.0, 2.0, 4.0)  # saturation per distinct query term
RRF_KS = (30, 60)
FIRST_DEPTH = 100  # every fusion is scored at this candidate depth first,
DEEPER = (200, 300)  # and the best few again deeper (the grid is ~1 s per fusion and 1,000 queries)
DEEPER_BEST = 5


@dataclass(frozen=True)
class Lists:
    semantic: list[tuple[str, float]]
    keyword: list[tuple[str, float]]
    query_terms: int = 1


@dataclass
class Candidates:
    """Per query, the two engine lists; and each chunk's BEIR documents."""

    lists: dict[str, Lists]
    documents_of_chunk: dict[str, list[str]]

    def ranking(self, query_id: str, fusion: Fusion, candidates: int) -> list[str]:
        depth = max(NDCG_CHUNKS, candidates)
        found = self.lists[query_id]
        fused = fusion.fuse(found.semantic[:depth], found.keyword[:depth], depth, found.query_terms)[:NDCG_CHUNKS]
        return collapse((chunk_id for chunk_id, _ in fused), self.documents_of_chunk)


def collapse(chunk_ids: Iterable[str], documents_of_chunk: dict[str, list[str]]) -> list[str]:
    seen: set[str] = set()
    ranking: list[str] = []
    for chunk_id in chunk_ids:
        for doc in documents_of_chunk.get(chunk_id, []):
            if doc not in seen:
                seen.add(doc)
                ranking.append(doc)
    return ranking


def candidate_lists(
    retriever: Retriever, queries: dict[str, str], query_ids: Sequence[str], path: Path | None, console: Console
) -> Candidates:
    """The engine lists of these queries, read from `path` when an earlier run saved them there."""
    from ragline.retrieval.service import query_term_count
    from ragline_bench.common import progress_bar
    from ragline_bench.quality import TENANT

    if path is not None and path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if set(query_ids) <= set(saved["lists"]):
            lists = {}
            for q in query_ids:
                found = saved["lists"][q]
                lists[q] = Lists(
                    [tuple(hit) for hit in found["semantic"]],
                    [tuple(hit) for hit in found["keyword"]],
                    query_term_count(queries[q]),
                )
            return Candidates(lists, saved["documents_of_chunk"])
    index = retriever.container.index
    lists = {}
    with progress_bar(console) as progress:
        task = progress.add_task("engine lists", total=len(query_ids))
        for query_id in query_ids:
            vector = retriever.embedder.embed_query(queries[query_id])
            lists[query_id] = Lists(
                index.search_vector(TENANT, vector, retriever.filter, LIST_DEPTH),
                index.search_keyword(TENANT, queries[query_id], retriever.filter, LIST_DEPTH),
                query_term_count(queries[query_id]),
            )
            progress.advance(task)
    chunk_ids = sorted({c for found in lists.values() for c, _ in [*found.semantic, *found.keyword]})
    documents_of_chunk: dict[str, list[str]] = {}
    for start in range(0, len(chunk_ids), 500):
        for chunk_id, payload in index.get_payloads(TENANT, chunk_ids[start : start + 500]).items():
            documents_of_chunk[chunk_id] = retriever.corpus.beir_ids_of.get(payload["document_id"], [])
    if path is not None:
        saved_lists = {q: asdict(found) for q, found in lists.items()}
        path.write_text(json.dumps({"lists": saved_lists, "documents_of_chunk": documents_of_chunk}), encoding="utf-8")
    return Candidates(lists, documents_of_chunk)


def ndcg(candidates: Candidates, qrels: Qrels, fusion: Fusion, depth: int) -> float:
    from ragline_bench.quality import ndcg_at

    return sum(ndcg_at(candidates.ranking(q, fusion, depth), judged) for q, judged in qrels.items()) / len(qrels)


def grid() -> list[Fusion]:
    from ragline.retrieval.fusion import Fusion

    configs: list[Fusion] = []
    for w in WEIGHTS:
        configs += [Fusion("min_max", w), Fusion("z_score", w)]
        configs += [Fusion("absolute", w, keyword_saturation=k) for k in SATURATIONS]
        configs += [Fusion("absolute", w, keyword_saturation=k, saturation_per_term=True) for k in PER_TERM]
    configs += [Fusion("rrf", w, rrf_k=k) for w in (0.5, 0.6) for k in RRF_KS]
    configs += [Fusion("absolute", 1.0), Fusion("absolute", 0.0)]  # semantic alone, keyword alone: references
    return configs


def describe(fusion: Fusion, depth: int) -> dict[str, Any]:
    shown: dict[str, Any] = {"method": fusion.method, "semantic_weight": fusion.semantic_weight}
    if fusion.method == "absolute":
        shown["keyword_saturation"] = fusion.keyword_saturation
        shown["saturation_per_term"] = fusion.saturation_per_term
    if fusion.method == "rrf":
        shown["rrf_k"] = fusion.rrf_k
    shown["candidates"] = depth
    return shown


def tune(
    retriever: Retriever, queries: dict[str, str], train: Qrels, path: Path | None, console: Console
) -> tuple[tuple[Fusion, int], list[dict[str, Any]]]:
    """The grid's best (fusion, candidate depth) by train nDCG@10, and every row, best first."""
    candidates = candidate_lists(retriever, queries, sorted(train), path, console)
    rows = [((fusion, FIRST_DEPTH), ndcg(candidates, train, fusion, FIRST_DEPTH)) for fusion in grid()]
    rows.sort(key=lambda row: -row[1])
    deeper = [(fusion, depth) for (fusion, _), _ in rows[:DEEPER_BEST] for depth in DEEPER]
    rows += [(config, ndcg(candidates, train, *config)) for config in deeper]
    rows.sort(key=lambda row: -row[1])
    table = [
        {**describe(*config), "train_ndcg_at_10": round(value, 4), "train_queries": len(train)}
        for config, value in rows
    ]
    return rows[0][0], table


def fusion_from(shown: dict[str, Any]) -> tuple[Fusion, int]:
    """The (fusion, candidate depth) a row of `describe` stands for."""
    from ragline.retrieval.fusion import KEYWORD_SATURATION, Fusion

    fusion = Fusion(
        shown["method"],
        float(shown["semantic_weight"]),
        float(shown.get("keyword_saturation", KEYWORD_SATURATION)),
        int(shown.get("rrf_k", 60)),
        bool(shown.get("saturation_per_term", False)),
    )
    return fusion, int(shown.get("candidates", 100))


def best_per_method(table: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    best: dict[str, dict[str, Any]] = {}
    for row in table:  # best first
        best.setdefault(row["method"], row)
    return list(best.values())


def compare(
    retriever: Retriever,
    queries: dict[str, str],
    qrels: Qrels,
    fusions: Sequence[dict[str, Any]],
    path: Path | None,
    console: Console,
) -> list[dict[str, Any]]:
    """Test nDCG@10 of each given fusion, offline on the engine lists (a report: nothing is chosen here)."""
    candidates = candidate_lists(retriever, queries, sorted(qrels), path, console)
    rows = []
    for shown in fusions:
        fusion, depth = fusion_from(shown)
        rows.append({**describe(fusion, depth), "test_ndcg_at_10": round(ndcg(candidates, qrels, fusion, depth), 4)})
    return rows
