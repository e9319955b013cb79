"""`ragline bench ingest`: how fast the real ingest path is, and how close to the bare embedder.

For each input the same run measures, back to back:
  end to end  IngestService.accept + claim + process (parse → chunk → embed → index, metadata, blobs)
  bare        OnnxEmbedder.embed_documents on exactly the texts ingest embedded, in one call
The stage split comes from the end-to-end run itself: IngestService is handed timing proxies of
its embedder and vector index (ragline's code is unchanged), which also capture the chunk texts.
What is left ("rest") is parse+chunk time not hidden behind embedding (ingest may parse the next
pages while the current ones are embedded) plus bookkeeping (metadata, job, events). Parse+chunk
is also re-run alone with ingest's own functions (cheap: no embedding) to show its full cost.
The order of end-to-end and bare alternates per round, so slow drift of a noisy machine does
not favour either. PDFs: --repeats rounds, medians reported. SciFact slice: once, in blocks of
100 documents, bare after each block.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragline_bench.common import (
    BENCH_TENANT,
    BeirDoc,
    Ingested,
    Report,
    at_least,
    bench_data_dir,
    bench_settings,
    ingest_beir_doc,
    ingest_now,
    load_beir,
    make_table,
    median,
    pdf_files,
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

RATIO_TARGET = 0.9
SCIFACT_BLOCK = 100


class CountingHandler(logging.Handler):
    """Collects a logger's records instead of printing them (pypdf warns per font, per page)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def collected_warnings(logger_name: str) -> Iterator[CountingHandler]:
    logger = logging.getLogger(logger_name)
    handler, propagate = CountingHandler(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


# ---- timing proxies handed to IngestService ---------------------------------------------------------
class TimingEmbedder:
    """Forwards to the real embedder; adds up embed_documents time and keeps the texts."""

    def __init__(self, embedder: Any) -> None:
        self._embedder = embedder
        self.seconds = 0.0
        self.texts: list[str] = []

    def __getattr__(self, name: str) -> Any:  # tokenizer, dimension, embed_query, …
        return getattr(self._embedder, name)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        vectors, seconds = timed(self._embedder.embed_documents, texts)
        self.seconds += seconds
        self.texts.extend(texts)
        return vectors

    def take(self) -> tuple[float, list[str]]:
        """The time and texts since the last take."""
        taken = self.seconds, self.texts
        self.seconds, self.texts = 0.0, []
        return taken


class TimingIndex:
    """Forwards to the real vector index; adds up replace_document time."""

    def __init__(self, index: Any) -> None:
        self._index = index
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._index, name)

    def replace_document(self, *args: Any, **kwargs: Any) -> None:
        _, seconds = timed(self._index.replace_document, *args, **kwargs)
        self.seconds += seconds

    def take(self) -> float:
        taken, self.seconds = self.seconds, 0.0
        return taken


@dataclass
class Probes:
    container: Container
    embedder: TimingEmbedder
    index: TimingIndex

    @classmethod
    def install(cls, container: Container) -> Probes:
        probes = cls(container, TimingEmbedder(container.embedder), TimingIndex(container.index))
        container.ingest.embedder = probes.embedder  # type: ignore[assignment]
        container.ingest.index = probes.index  # type: ignore[assignment]
        return probes


# ---- one measurement ----------------------------------------------------------------------------------
@dataclass
class Sample:
    """One input (a PDF, or a block of SciFact documents) measured once. Seconds throughout."""

    e2e: float = 0.0
    accept: float = 0.0
    embed: float = 0.0
    index: float = 0.0
    parse_chunk_alone: float = 0.0  # re-run on its own, outside the end-to-end run
    bare: float = 0.0
    chunks: int = 0
    pages: int = 0
    tokens: int = 0

    @property
    def rest(self) -> float:
        """End-to-end time outside accept, embed and index: parse+chunk that did not overlap
        embedding, and bookkeeping (metadata and job updates, events)."""
        return self.e2e - self.accept - self.embed - self.index

    def add(self, other: Sample) -> None:
        for name in ("e2e", "accept", "embed", "index", "parse_chunk_alone", "bare", "chunks", "pages", "tokens"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def parse_and_chunk(container: Container, data: bytes, content_type: str, filename: str | None) -> tuple[int, float]:
    """Ingest's parse + chunk alone (pages are read lazily while chunking): (tokens, seconds)."""
    from ragline.ingest.chunking import chunk_blocks
    from ragline.ingest.parsers import parse

    settings = container.settings

    def work() -> list[Any]:
        parsed = parse(data, content_type, filename)
        return list(
            chunk_blocks(parsed.blocks, container.embedder.tokenizer, settings.chunk_size, settings.chunk_overlap)
        )

    passages, seconds = timed(work)
    return sum(p.token_count for p in passages), seconds


def bare_embed(container: Container, texts: list[str]) -> float:
    _, seconds = timed(container.embedder.embed_documents, texts)
    return seconds


def measured(probes: Probes, outcome: Ingested, data: bytes, filename: str | None) -> tuple[Sample, list[str]]:
    """The stage split of one end-to-end ingest that just ran, and the texts it embedded."""
    embed_s, texts = probes.embedder.take()
    doc = outcome.document
    if len(texts) != doc.chunk_count:
        raise RuntimeError(f"{doc.id}: ingest embedded {len(texts)} texts for {doc.chunk_count} chunks")
    tokens, parse_s = parse_and_chunk(probes.container, data, doc.content_type, filename)
    sample = Sample(
        e2e=outcome.seconds,
        accept=outcome.accept_seconds,
        parse_chunk_alone=parse_s,
        embed=embed_s,
        index=probes.index.take(),
        chunks=doc.chunk_count,
        pages=doc.page_count,
        tokens=tokens,
    )
    return sample, texts


# ---- rows of the report --------------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None

    def figures(self) -> dict[str, Any]:
        if self.error is not None or not self.samples:
            return {"name": self.name, "error": self.error or "nothing was measured"}
        first = self.samples[0]

        def med(name: str) -> float:
            return median([getattr(s, name) for s in self.samples])

        e2e, bare = med("e2e"), med("bare")
        return {
            "name": self.name,
            "pages": first.pages,
            "chunks": first.chunks,
            "mean_tokens_per_chunk": round(first.tokens / first.chunks, 1) if first.chunks else None,
            "repeats": len(self.samples),
            "e2e_s": round(e2e, 3),
            "pages_per_s": round(rate(first.pages, e2e), 3) if first.pages else None,
            "chunks_per_s": round(rate(first.chunks, e2e), 2),
            "tokens_per_s": round(rate(first.tokens, e2e), 1),
            "bare_embed_s": round(bare, 3),
            "bare_chunks_per_s": round(rate(first.chunks, bare), 2),
            # median of the per-round ratios: each round's pair ran back to back
            "ratio_e2e_to_bare": round(median([s.bare / s.e2e for s in self.samples]), 3),
            **{
                f"stage_{name}_s": round(med(name), 3)
                for name in ("accept", "embed", "index", "rest", "parse_chunk_alone")
            },
        }


# ---- PDFs -------------------------------------------------------------------------------------------------
def bench_pdfs(probes: Probes, pdfs: list[Path], repeats: int, console: Console) -> list[Row]:
    rows = {pdf.name: Row(pdf.name) for pdf in pdfs}
    texts: dict[str, list[str]] = {}
    with progress_bar(console) as progress:
        task = progress.add_task("PDFs", total=repeats * len(pdfs))
        for repeat in range(repeats):
            for pdf in pdfs:
                row = rows[pdf.name]
                progress.update(task, description=f"PDFs, round {repeat + 1}/{repeats}: {pdf.name[:32]}")
                if row.error is None:
                    measure_pdf(probes, pdf, repeat, row, texts)
                progress.advance(task)
    return list(rows.values())


def measure_pdf(probes: Probes, pdf: Path, repeat: int, row: Row, texts: dict[str, list[str]]) -> None:
    from ragline.models import DocumentStatus

    data = pdf.read_bytes()
    bare_first = repeat % 2 == 1 and pdf.name in texts
    bare = bare_embed(probes.container, texts[pdf.name]) if bare_first else 0.0
    # A tenant per round: the same bytes again in one tenant would be a duplicate, not an ingest.
    outcome = ingest_now(probes.container, f"{BENCH_TENANT}-{repeat}", data, filename=pdf.name, source="bench")
    if outcome.document.status != DocumentStatus.INDEXED:
        probes.embedder.take()
        probes.index.take()
        row.error = f"{outcome.document.status.value}: {outcome.document.error}"
        return
    sample, texts[pdf.name] = measured(probes, outcome, data, pdf.name)
    sample.bare = bare if bare_first else bare_embed(probes.container, texts[pdf.name])
    row.samples.append(sample)


def total_row(rows: list[Row]) -> Row:
    """All valid PDFs as one input: per round the sums, then medians over the rounds."""
    good = [r for r in rows if r.error is None and r.samples]
    total = Row("all valid PDFs")
    for repeat in range(min((len(r.samples) for r in good), default=0)):
        summed = Sample()
        for r in good:
            summed.add(r.samples[repeat])
        total.samples.append(summed)
    return total


# ---- SciFact slice -----------------------------------------------------------------------------------------
def bench_scifact(probes: Probes, docs: list[BeirDoc], console: Console) -> Row:
    from ragline.models import DocumentStatus

    tenant = f"{BENCH_TENANT}-scifact"
    total = Sample()
    indexed = 0
    with progress_bar(console) as progress:
        task = progress.add_task("SciFact: end to end, then bare, per block", total=len(docs))
        for start in range(0, len(docs), SCIFACT_BLOCK):
            block_texts: list[str] = []
            for doc in docs[start : start + SCIFACT_BLOCK]:
                outcome = ingest_beir_doc(probes.container, tenant, doc)
                if outcome.document.status == DocumentStatus.INDEXED and not outcome.duplicate:
                    sample, texts = measured(probes, outcome, doc.as_text().encode("utf-8"), None)
                    total.add(sample)
                    block_texts.extend(texts)
                    indexed += 1
                progress.advance(task)
            total.bare += bare_embed(probes.container, block_texts)
    return Row(f"SciFact: first {len(docs):,} abstracts ({indexed:,} indexed)", [total])


# ---- the command --------------------------------------------------------------------------------------------
def run(args: argparse.Namespace, console: Console) -> Report:
    from ragline.container import build_container
    from ragline.ingest.service import EMBED_GROUP, EMBED_GROUP_MIN

    shared = resolve_shared(args.shared)
    pdfs = pdf_files(shared)
    scifact = load_beir(shared, "scifact").corpus[: args.scifact_docs] if args.scifact_docs > 0 else []
    report = Report("ingest")
    with bench_data_dir(args.data_dir, "ingest") as data_dir:
        settings = bench_settings(data_dir)
        container = build_container(settings, snapshot_interval_seconds=0)
        try:
            warm_up(container.embedder)
            model_name = Path(getattr(container.embedder, "model_path", "") or "?").name
            console.print(f"[dim]model: {model_name}[/]")
            probes = Probes.install(container)
            with collected_warnings("pypdf") as pypdf_warnings:
                rows = bench_pdfs(probes, pdfs, args.repeats, console)
            rows.append(total_row(rows))
            if scifact:
                rows.append(bench_scifact(probes, scifact, console))
        finally:
            container.close()

    figures = [r.figures() for r in rows]
    report.figures = {
        "settings": {
            k: getattr(settings, k)
            for k in ("chunk_size", "chunk_overlap", "embedding_batch_size", "embedding_threads")
        },
        "model": model_name,
        "repeats": args.repeats,
        "rows": figures,
    }
    print_tables(figures, console)
    by_name = {f["name"]: f for f in figures}
    report.targets.append(
        at_least(
            "ingest PDFs: end-to-end ÷ bare-embedder chunks/s",
            by_name["all valid PDFs"].get("ratio_e2e_to_bare"),
            RATIO_TARGET,
        )
    )
    if scifact:
        report.targets.append(
            at_least(
                "ingest SciFact: end-to-end ÷ bare-embedder chunks/s",
                figures[-1].get("ratio_e2e_to_bare"),
                RATIO_TARGET,
            )
        )
    if pypdf_warnings.messages:
        distinct = sorted(set(m[:100] for m in pypdf_warnings.messages))
        report.notes.append(f"pypdf logged {len(pypdf_warnings.messages)} warnings while parsing, e.g. {distinct[0]!r}")
        console.print(f"[yellow]note:[/] {report.notes[-1]}")
    report.notes.append(
        "bare = embed_documents over all of an input's chunk texts in one call (length-sorted batches of "
        f"{settings.embedding_batch_size}); ingest embeds each document on its own, in groups of "
        f"{EMBED_GROUP_MIN} to {EMBED_GROUP} passages (as many as are chunked when the embedder is free)"
    )
    return report


def print_tables(figures: list[dict[str, Any]], console: Console) -> None:
    speed, split, failed = [], [], []
    for f in figures:
        if f.get("error"):
            speed.append((f"{f['name']} (failed)", *([None] * 9)))
            failed.append(f"{f['name']}: {f['error']}")
            continue
        speed.append(
            (
                f["name"],
                f["pages"] or None,
                f["chunks"],
                f["mean_tokens_per_chunk"],
                f["e2e_s"],
                f["pages_per_s"],
                f["chunks_per_s"],
                f["tokens_per_s"],
                f["bare_chunks_per_s"],
                f["ratio_e2e_to_bare"],
            )
        )
        split.append(
            (
                f["name"],
                f["e2e_s"],
                f["stage_accept_s"],
                f["stage_embed_s"],
                f["stage_index_s"],
                f["stage_rest_s"],
                f["stage_parse_chunk_alone_s"],
                f["bare_embed_s"],
            )
        )
    console.print(
        make_table(
            "ingest throughput (medians over rounds)",
            (
                "input",
                "pages",
                "chunks",
                "tokens/chunk",
                "e2e s",
                "pages/s",
                "chunks/s",
                "tokens/s",
                "bare chunks/s",
                "e2e÷bare",
            ),
            speed,
            caption="\n".join(f"failed (expected for the corrupt PDF): {line}" for line in failed) or None,
        )
    )
    console.print(
        make_table(
            "where the end-to-end time goes, seconds (medians)",
            ("input", "end to end", "accept", "embed", "index", "rest", "parse+chunk alone", "bare embed"),
            split,
            caption="accept, embed and index are timed inside the end-to-end run; rest = end to end - those: "
            "parse+chunk not overlapped with embedding, plus metadata/job/events. "
            "parse+chunk alone = the same functions re-run on their own (their full cost, for reference)",
        )
    )
