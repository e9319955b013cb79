"""`ragline bench quality`: retrieval quality on BEIR-layout data sets, through the real product.

Every document (title + text) goes through the real ingest path for one tenant, its BEIR id in
metadata. Each query is answered by SearchService.ranked in each mode; the ranked chunks are
collapsed to documents (a document ranks where its best chunk ranks) and scored with
trec_eval-style nDCG@10 (linear gain, the qrels' grades) and Recall@100.

Depth: nDCG@10 uses the top 100 chunks, which for hybrid is exactly the depth a production
top-10 query fuses (hybrid_candidates = 100); Recall@100 uses the top 400 chunks so that at least
100 distinct documents are reached.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragline_bench import fusion_tune
from ragline_bench.common import (
    BeirDoc,
    BenchError,
    Report,
    at_least,
    bench_data_dir,
    bench_settings,
    ingest_beir_doc,
    latency_summary,
    load_beir,
    make_table,
    progress_bar,
    rate,
    resolve_shared,
    timed,
    warm_up,
)

if TYPE_CHECKING:
    import numpy as np
    from rich.console import Console

    from ragline.container import Container
    from ragline.retrieval.fusion import Fusion
    from ragline.retrieval.service import SearchService

TENANT = "beir"
MODES = ("semantic", "keyword", "hybrid")
NDCG_CHUNKS = 100
RECALL_CHUNKS = 400
TUNING_ROWS_SHOWN = 25
# (label, the mode it compares with, nDCG@10)
PUBLISHED: dict[str, list[tuple[str, str, float]]] = {
    "scifact": [
        ("BM25, BEIR paper", "keyword", 0.665),
        ("BM25 flat, Anserini/Pyserini", "keyword", 0.679),
        ("all-MiniLM-L6-v2, published", "semantic", 0.645),
    ],
    "cranfield": [("BM25 (Lucene-style), datasets/README.md", "keyword", 0.352)],
}

Qrels = dict[str, dict[str, int]]


# ---- metrics -----------------------------------------------------------------------------------------
def ndcg_at(ranking: Sequence[str], judged: dict[str, int], k: int = 10) -> float:
    """trec_eval ndcg_cut: gain = the judged grade (linear), discount log2(rank + 1)."""
    dcg = sum(judged.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranking[:k]))
    ideal = sorted(judged.values(), reverse=True)[:k]
    idcg = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranking: Sequence[str], judged: dict[str, int], k: int = 100) -> float:
    relevant = {doc for doc, grade in judged.items() if grade > 0}
    return len(relevant & set(ranking[:k])) / len(relevant) if relevant else 0.0


def mean_metric(metric: Any, rankings: dict[str, list[str]], qrels: Qrels) -> float:
    """Mean over every judged query; a query without results scores 0."""
    return sum(metric(rankings.get(q, []), judged) for q, judged in qrels.items()) / len(qrels)


def restrict(qrels: Qrels, indexed: set[str]) -> Qrels:
    """Judgements on indexed documents only; queries left with none are dropped (partial corpora)."""
    kept = {q: {d: g for d, g in judged.items() if d in indexed} for q, judged in qrels.items()}
    return {q: judged for q, judged in kept.items() if judged}


# ---- indexing ------------------------------------------------------------------------------------------
@dataclass
class IndexedCorpus:
    beir_ids_of: dict[str, list[str]] = field(default_factory=dict)  # ragline document id -> BEIR ids
    failed: dict[str, str] = field(default_factory=dict)  # BEIR id -> why
    duplicates: int = 0
    chunks: int = 0
    seconds: float = 0.0

    @property
    def beir_ids(self) -> set[str]:
        return {beir_id for ids in self.beir_ids_of.values() for beir_id in ids}


def index_corpus(container: Container, docs: Sequence[BeirDoc], console: Console) -> IndexedCorpus:
    from ragline.models import DocumentStatus

    out = IndexedCorpus()
    with progress_bar(console) as progress:
        task = progress.add_task("indexing", total=len(docs))
        for doc in docs:
            outcome = ingest_beir_doc(container, TENANT, doc)
            document = outcome.document
            out.seconds += outcome.seconds
            if document.status != DocumentStatus.INDEXED:
                out.failed[doc.id] = document.error or document.status.value
            else:
                # Identical bytes are one document in Ragline: every BEIR id it stands for ranks with it.
                out.beir_ids_of.setdefault(document.id, []).append(doc.id)
                out.duplicates += outcome.duplicate
                out.chunks += 0 if outcome.duplicate else document.chunk_count
            progress.update(task, advance=1, description=f"indexing ({out.chunks:,} chunks)")
    return out


CORPUS_FILE = "bench-corpus.json"


def cached_corpus(cache: Path, documents: int) -> IndexedCorpus | None:
    """The corpus an earlier run indexed into `cache`, when it indexed the same documents."""
    path = cache / CORPUS_FILE
    if not path.exists():
        if cache.exists() and any(cache.iterdir()):
            raise BenchError(f"--index-cache {cache} holds something other than a finished bench index")
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    if saved["documents"] != documents:
        raise BenchError(f"{cache} was built from {saved['documents']} documents, not {documents}: use another cache")
    return IndexedCorpus(saved["beir_ids_of"], saved["failed"], saved["duplicates"], saved["chunks"], saved["seconds"])


def save_corpus(container: Container, cache: Path, corpus: IndexedCorpus, documents: int) -> None:
    snapshot = getattr(container.index, "snapshot", None)
    if snapshot is not None:
        snapshot()  # reopening then loads the snapshot instead of rebuilding the graph
    saved = {"documents": documents, **asdict(corpus)}
    (cache / CORPUS_FILE).write_text(json.dumps(saved), encoding="utf-8")


# ---- retrieval -----------------------------------------------------------------------------------------
class CachingEmbedder:
    """The real embedder, each query embedded once however many modes and weights ask for it."""

    def __init__(self, embedder: Any) -> None:
        self._embedder = embedder
        self._cache: dict[str, np.ndarray] = {}
        self.dimension = embedder.dimension

    def embed_query(self, text: str) -> np.ndarray:
        if text not in self._cache:
            self._cache[text] = self._embedder.embed_query(text)
        return self._cache[text]

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._embedder.embed_documents(texts)


class Retriever:
    """Ranked BEIR ids for a query, from chunks, through SearchService.ranked."""

    def __init__(self, container: Container, corpus: IndexedCorpus) -> None:
        from ragline.retrieval.filters import scope_to_tenant

        self.container = container
        self.corpus = corpus
        self.embedder = CachingEmbedder(container.embedder)
        self.filter = scope_to_tenant({}, TENANT)
        self._document_of_chunk: dict[str, str] = {}

    def service(self, fusion: Fusion, candidates: int) -> SearchService:
        from ragline.retrieval.service import SearchService

        return SearchService(self.container.index, self.embedder, hybrid_candidates=candidates, fusion=fusion)

    def documents(self, service: SearchService, query: str, mode: str, chunks: int) -> list[str]:
        ranked = service.ranked(TENANT, query, self.filter, chunks, mode)
        return self._collapse(chunk_id for chunk_id, _ in ranked)

    def _collapse(self, chunk_ids: Iterable[str]) -> list[str]:
        chunk_ids = list(chunk_ids)
        unknown = [c for c in chunk_ids if c not in self._document_of_chunk]
        for chunk_id, payload in self.container.index.get_payloads(TENANT, unknown).items():
            self._document_of_chunk[chunk_id] = payload["document_id"]
        seen: set[str] = set()
        ranking: list[str] = []
        for chunk_id in chunk_ids:
            document = self._document_of_chunk.get(chunk_id)
            if document is not None and document not in seen:
                seen.add(document)
                ranking.extend(self.corpus.beir_ids_of.get(document, []))
        return ranking


@dataclass
class ModeResult:
    label: str
    ndcg_at_10: float
    recall_at_100: float
    latency: dict[str, float]
    mean_docs_reached: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.label,
            "ndcg_at_10": round(self.ndcg_at_10, 4),
            "recall_at_100": round(self.recall_at_100, 4),
            "query_latency": self.latency,
            "mean_docs_in_recall_depth": round(self.mean_docs_reached, 1),
        }


def evaluate(
    retriever: Retriever,
    mode: str,
    fusion: tuple[Fusion, int],
    queries: dict[str, str],
    qrels: Qrels,
    label: str,
    console: Console,
    with_recall: bool = True,
) -> ModeResult:
    service = retriever.service(*fusion)
    for query_id in qrels:  # embed every query up front, so the timings below are the search alone
        retriever.embedder.embed_query(queries[query_id])
    top: dict[str, list[str]] = {}
    deep: dict[str, list[str]] = {}
    times = []
    with progress_bar(console) as progress:
        task = progress.add_task(f"queries: {label}", total=len(qrels))
        for query_id in qrels:
            top[query_id], seconds = timed(retriever.documents, service, queries[query_id], mode, NDCG_CHUNKS)
            times.append(seconds)
            if with_recall:
                deep[query_id] = retriever.documents(service, queries[query_id], mode, RECALL_CHUNKS)
            progress.advance(task)
    return ModeResult(
        label,
        mean_metric(ndcg_at, top, qrels),
        mean_metric(recall_at, deep, qrels) if with_recall else float("nan"),
        latency_summary(times),
        sum(len(r) for r in deep.values()) / max(len(deep), 1),
    )


# ---- the command --------------------------------------------------------------------------------------
def run(args: argparse.Namespace, console: Console) -> Report:
    from ragline.container import build_container

    shared = resolve_shared(args.shared)
    if args.answers_only:
        return run_answers(shared, args, console, Report("quality"))
    dataset = load_beir(shared, args.dataset)
    if args.tune and not (dataset.directory / "qrels" / "train.tsv").exists():
        raise BenchError(f"--tune needs train qrels, and {args.dataset} has none (tuning on test is not allowed)")
    docs = dataset.corpus[: args.limit_docs] if args.limit_docs else dataset.corpus
    report = Report("quality")
    cache = args.index_cache.expanduser().resolve() / args.dataset if args.index_cache else None
    corpus = cached_corpus(cache, len(docs)) if cache else None
    with bench_data_dir(None if cache else args.data_dir, "quality") as data_dir:
        settings = bench_settings(cache or data_dir)
        container = build_container(settings, snapshot_interval_seconds=0)
        try:
            warm_up(container.embedder)
            if corpus is None:
                corpus = index_corpus(container, docs, console)
                if cache:
                    save_corpus(container, cache, corpus, len(docs))
            else:
                console.print(f"reusing the index in {cache} (built earlier with this corpus)")
            qrels = restrict(dataset.qrels("test"), corpus.beir_ids)
            retriever = Retriever(container, corpus)
            default = (settings.fusion(), settings.hybrid_candidates)
            results = [evaluate(retriever, mode, default, dataset.queries, qrels, mode, console) for mode in MODES]
            tuning: list[dict[str, Any]] = []
            if args.tune:
                train = restrict(dataset.qrels("train"), corpus.beir_ids)
                if not train:
                    raise BenchError(
                        "no train query has a relevant document among the indexed ones: nothing to tune on"
                    )
                lists = cache / "train-lists.json" if cache else None
                best, tuning = fusion_tune.tune(retriever, dataset.queries, train, lists, console)
                label = "hybrid, tuned: " + ", ".join(f"{k}={v}" for k, v in fusion_tune.describe(*best).items())
                results.append(evaluate(retriever, "hybrid", best, dataset.queries, qrels, label, console))
            compared: list[dict[str, Any]] = []
            if args.compare_fusions or tuning:
                fusions = json.loads(args.compare_fusions.read_text()) if args.compare_fusions else []
                fusions += fusion_tune.best_per_method(tuning)
                lists = cache / "test-lists.json" if cache else None
                compared = fusion_tune.compare(retriever, dataset.queries, qrels, fusions, lists, console)
            chunk_count = container.index.count(TENANT, retriever.filter)
        finally:
            container.close()

    partial = len(docs) < len(dataset.corpus)
    report.figures = {
        "dataset": args.dataset,
        "documents": len(docs),
        "partial_corpus": partial,
        "indexed_documents": len(corpus.beir_ids),
        "failed_documents": corpus.failed,
        "duplicate_documents": corpus.duplicates,
        "chunks": chunk_count,
        "index_s": round(corpus.seconds, 1),
        "index_docs_per_s": round(rate(len(docs), corpus.seconds), 2),
        "index_chunks_per_s": round(rate(corpus.chunks, corpus.seconds), 2),
        "test_queries": len(qrels),
        "hybrid_fusion": fusion_tune.describe(settings.fusion(), settings.hybrid_candidates),
        "vector_path": "exact" if chunk_count <= settings.exact_search_max_candidates else "HNSW",
        "results": [r.as_dict() for r in results],
        "tuning": tuning,
        "compared_fusions": compared,
    }
    if partial:
        report.notes.append(
            f"partial corpus ({len(docs)} of {len(dataset.corpus)} documents): only the {len(qrels)} test queries "
            "with a relevant document among them are scored, against those documents only: "
            "not comparable to published figures"
        )
    print_results(report, results, console)
    print_compared(report, console)
    if not args.skip_answers:
        run_answers(shared, args, console, report)
    if not partial:
        by_mode = {r.label: r.ndcg_at_10 for r in results}
        for label, mode, value in PUBLISHED[args.dataset]:
            report.targets.append(
                at_least(f"{args.dataset} nDCG@10 {mode} vs {label}", by_mode[mode], value, kind="reference")
            )
    return report


def print_results(report: Report, results: list[ModeResult], console: Console) -> None:
    f = report.figures
    console.print(
        f"{f['dataset']}: {f['indexed_documents']:,} documents indexed ({f['duplicate_documents']} duplicates, "
        f"{len(f['failed_documents'])} failed) as {f['chunks']:,} chunks in {f['index_s']:.0f} s "
        f"({f['index_chunks_per_s']:.1f} chunks/s); {f['test_queries']} test queries; "
        f"vector search is {f['vector_path']}"
    )
    published: dict[str, str] = {}
    for label, mode, value in PUBLISHED[f["dataset"]]:
        published[mode] = "; ".join(filter(None, [published.get(mode), f"{value} ({label})"]))
    rows = [(r.label, r.ndcg_at_10, r.recall_at_100, published.get(r.label, ""), r.latency["p50_ms"]) for r in results]
    console.print(
        make_table(
            f"{f['dataset']} test: retrieval quality (documents ranked by their best chunk)",
            ("mode", "nDCG@10", "Recall@100", "published nDCG@10", "search p50 ms, index only"),
            rows,
            caption=("\n".join(report.notes) or None),
        )
    )
    if f["tuning"]:
        shown = f["tuning"][:TUNING_ROWS_SHOWN]
        console.print(
            make_table(
                f"hybrid fusion, tuned on the TRAIN qrels ({shown[0]['train_queries']} queries): the best "
                f"{len(shown)} of {len(f['tuning'])}",
                ("method", "semantic weight", "BM25 saturation / RRF k", "candidates", "train nDCG@10"),
                [
                    (
                        t["method"],
                        t["semantic_weight"],
                        saturation_or_k(t),
                        t["candidates"],
                        t["train_ndcg_at_10"],
                    )
                    for t in shown
                ],
            )
        )


def saturation_or_k(row: dict[str, Any]) -> str:
    if "keyword_saturation" in row:
        return f"{row['keyword_saturation']:g}" + (" per term" if row.get("saturation_per_term") else "")
    return str(row.get("rrf_k", ""))


def print_compared(report: Report, console: Console) -> None:
    compared = report.figures["compared_fusions"]
    if compared:
        console.print(
            make_table(
                f"{report.figures['dataset']} test nDCG@10 of other fusions, offline on the same engine lists "
                "(reported, never used to choose)",
                ("method", "semantic weight", "BM25 saturation / RRF k", "candidates", "test nDCG@10"),
                [
                    (
                        t["method"],
                        t["semantic_weight"],
                        saturation_or_k(t),
                        t["candidates"],
                        t["test_ndcg_at_10"],
                    )
                    for t in compared
                ],
            )
        )


def run_answers(shared: Any, args: argparse.Namespace, console: Console, report: Report) -> Report:
    """Extractive answers over the shared PDFs (ragline_bench.answers), in a data dir of their own."""
    from ragline.container import build_container
    from ragline_bench import answers

    with bench_data_dir(None, "answers") as data_dir:
        # The answer cache off: every question is asked more than once, and a hit would time no answer at all.
        settings = bench_settings(data_dir, answer_cache_enabled=False)
        container = build_container(settings, snapshot_interval_seconds=0)
        try:
            warm_up(container.embedder)
            figures, targets = answers.measure(container, shared, console)
        finally:
            container.close()
    report.figures["answers"] = figures
    report.targets.extend(targets)
    answers.print_figures(figures, console)
    return report
