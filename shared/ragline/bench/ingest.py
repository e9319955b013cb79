"""`ragline bench ingest`: how fast the real ingest path is, and how close to the bare embedder.

For each input the same run measures, in turn:
  end to end   IngestService.accept + claim + process (parse → chunk → embed → index, metadata, blobs)
  stages       the same functions called one stage at a time: parse+chunk, embed (in the groups
               IngestService uses), index (replace_document into a scratch index)
  bare         OnnxEmbedder.embed_documents on exactly the same chunk texts, in one call
PDFs are measured --repeats times (medians reported); the SciFact slice once (it is already an
aggregate of many documents).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragline.bench.common import (
    BENCH_TENANT,
    BeirDoc,
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
    from rich.console import Console

    from ragline.adapters.local.vector_engine import EmbeddedVectorIndex
    from ragline.container import Container

RATIO_TARGET = 0.8


@dataclass
class Stages:
    """One input pushed through the ingest stages separately."""

    parse_chunk: float = 0.0
    embed: float = 0.0
    index: float = 0.0
    texts: list[str] = field(default_factory=list)
    tokens: int = 0

    def add(self, other: Stages) -> None:
        self.parse_chunk += other.parse_chunk
        self.embed += other.embed
        self.index += other.index
        self.texts.extend(other.texts)
        self.tokens += other.tokens


@dataclass
class Sample:
    """One measurement of one input (a PDF, or the whole SciFact slice)."""

    e2e: float
    stages: Stages
    bare: float

    @property
    def other(self) -> float:
        """End-to-end time not spent in the three stages: accept, blob and metadata writes, job bookkeeping."""
        return self.e2e - self.stages.parse_chunk - self.stages.embed - self.stages.index


@dataclass
class Row:
    name: str
    pages: int
    chunks: int
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None

    def figures(self) -> dict[str, Any]:
        if self.error is not None or not self.samples:
            return {"name": self.name, "error": self.error or "nothing was measured"}
        e2e = median([s.e2e for s in self.samples])
        bare = median([s.bare for s in self.samples])
        tokens = self.samples[0].stages.tokens
        return {
            "name": self.name,
            "pages": self.pages,
            "chunks": self.chunks,
            "mean_tokens_per_chunk": round(tokens / self.chunks, 1) if self.chunks else None,
            "repeats": len(self.samples),
            "e2e_s": round(e2e, 3),
            "pages_per_s": round(rate(self.pages, e2e), 3) if self.pages else None,
            "chunks_per_s": round(rate(self.chunks, e2e), 2),
            "bare_embed_s": round(bare, 3),
            "bare_chunks_per_s": round(rate(self.chunks, bare), 2),
            "ratio_e2e_to_bare": round(bare / e2e, 3),
            "stage_parse_chunk_s": round(median([s.stages.parse_chunk for s in self.samples]), 3),
            "stage_embed_s": round(median([s.stages.embed for s in self.samples]), 3),
            "stage_index_s": round(median([s.stages.index for s in self.samples]), 3),
            "stage_other_s": round(median([s.other for s in self.samples]), 3),
        }


# ---- the stages, timed one by one -----------------------------------------------------------------
def split_stages(
    container: Container, scratch: EmbeddedVectorIndex, data: bytes, content_type: str, doc_id: str, filename: str | None
) -> Stages:
    """Parse+chunk, embed and index one input with the functions IngestService uses, timing each."""
    from ragline.ingest.chunking import chunk_blocks
    from ragline.ingest.parsers import parse
    from ragline.ingest.service import EMBED_GROUP
    from ragline.models import IndexedChunk

    settings = container.settings
    embedder = container.embedder

    def parse_and_chunk() -> list[Any]:
        parsed = parse(data, content_type, filename)  # pages are read lazily, while chunking
        return list(chunk_blocks(parsed.blocks, embedder.tokenizer, settings.chunk_size, settings.chunk_overlap))

    passages, parse_chunk_s = timed(parse_and_chunk)
    texts = [p.text for p in passages]

    def embed() -> Any:
        import numpy as np

        parts = [embedder.embed_documents(texts[i : i + EMBED_GROUP]) for i in range(0, len(texts), EMBED_GROUP)]
        return np.concatenate(parts)

    vectors, embed_s = timed(embed)
    chunks = [
        IndexedChunk(
            id=f"{doc_id}-{n:05d}",
            tenant_id=BENCH_TENANT,
            document_id=doc_id,
            text=p.text,
            payload={"page": p.page, "section": p.section, "chunk_index": n, "content_type": content_type},
        )
        for n, p in enumerate(passages)
    ]
    _, index_s = timed(lambda: scratch.replace_document(BENCH_TENANT, doc_id, chunks, vectors))
    return Stages(parse_chunk_s, embed_s, index_s, texts, sum(p.token_count for p in passages))


def bare_embed(container: Container, texts: list[str]) -> float:
    _, seconds = timed(lambda: container.embedder.embed_documents(texts))
    return seconds


# ---- PDFs ------------------------------------------------------------------------------------------
def bench_pdfs(
    container: Container, scratch: EmbeddedVectorIndex, pdfs: list[Path], repeats: int, console: Console
) -> list[Row]:
    rows = {pdf.name: Row(pdf.name, 0, 0) for pdf in pdfs}
    with progress_bar(console) as progress:
        task = progress.add_task("PDFs", total=repeats * len(pdfs))
        for repeat in range(repeats):
            for pdf in pdfs:
                row = rows[pdf.name]
                progress.update(task, description=f"PDFs, round {repeat + 1}/{repeats}: {pdf.name[:32]}")
                if row.error is None:
                    measure_pdf(container, scratch, pdf, repeat, row)
                progress.advance(task)
    return list(rows.values())


def measure_pdf(container: Container, scratch: EmbeddedVectorIndex, pdf: Path, repeat: int, row: Row) -> None:
    from ragline.models import DocumentStatus

    data = pdf.read_bytes()
    # A tenant per round: the same bytes again in one tenant would be a duplicate, not an ingest.
    outcome = ingest_now(container, f"{BENCH_TENANT}-{repeat}", data, filename=pdf.name, source="bench")
    doc = outcome.document
    if doc.status != DocumentStatus.INDEXED:
        row.error = f"{doc.status.value}: {doc.error}"
        return
    stages = split_stages(container, scratch, data, doc.content_type, f"{doc.id}-stages", pdf.name)
    if len(stages.texts) != doc.chunk_count:
        raise RuntimeError(f"{pdf.name}: re-chunking gave {len(stages.texts)} chunks, ingest {doc.chunk_count}")
    row.pages, row.chunks = doc.page_count, doc.chunk_count
    row.samples.append(Sample(outcome.seconds, stages, bare_embed(container, stages.texts)))


def total_row(rows: list[Row]) -> Row:
    """All valid PDFs as one input: per round the sums, then medians over the rounds."""
    good = [r for r in rows if r.error is None and r.samples]
    total = Row("all valid PDFs", sum(r.pages for r in good), sum(r.chunks for r in good))
    for repeat in range(min((len(r.samples) for r in good), default=0)):
        stages = Stages()
        for r in good:
            stages.add(r.samples[repeat].stages)
        total.samples.append(
            Sample(
                sum(r.samples[repeat].e2e for r in good), stages, sum(r.samples[repeat].bare for r in good)
            )
        )
    return total


# ---- SciFact slice ------------------------------------------------------------------------------------
def bench_scifact(
    container: Container, scratch: EmbeddedVectorIndex, docs: list[BeirDoc], console: Console
) -> Row:
    from ragline.models import DocumentStatus

    tenant = f"{BENCH_TENANT}-scifact"
    e2e = 0.0
    chunks = 0
    ids: list[str] = []
    stages = Stages()
    with progress_bar(console) as progress:
        task = progress.add_task("SciFact end to end", total=len(docs))
        for doc in docs:
            outcome = ingest_beir_doc(container, tenant, doc)
            if outcome.document.status == DocumentStatus.INDEXED and not outcome.duplicate:
                e2e += outcome.seconds
                chunks += outcome.document.chunk_count
                ids.append(outcome.document.id)
                stages_doc = split_stages(
                    container, scratch, doc.as_text().encode("utf-8"), "text/plain", f"{outcome.document.id}-stages", None
                )
                stages.add(stages_doc)
            progress.advance(task)
    if len(stages.texts) != chunks:
        raise RuntimeError(f"SciFact: re-chunking gave {len(stages.texts)} chunks, ingest {chunks}")
    console.print(f"[dim]bare embedder on the same {chunks:,} SciFact chunk texts …[/]")
    bare = bare_embed(container, stages.texts)
    row = Row(f"SciFact first {len(docs):,} abstracts ({len(ids):,} indexed)", 0, chunks)
    row.samples.append(Sample(e2e, stages, bare))
    return row


# ---- the command ------------------------------------------------------------------------------------------
def run(args: argparse.Namespace, console: Console) -> Report:
    from ragline.adapters.local.vector_engine import EmbeddedVectorIndex
    from ragline.container import build_container

    shared = resolve_shared(args.shared)
    pdfs = pdf_files(shared)
    scifact = load_beir(shared, "scifact").corpus[: args.scifact_docs] if args.scifact_docs > 0 else []
    report = Report("ingest")
    with bench_data_dir(args.data_dir, "ingest") as data_dir:
        settings = bench_settings(data_dir)
        container = build_container(settings, snapshot_interval_seconds=0)
        scratch = EmbeddedVectorIndex(
            data_dir / "scratch-vectors",
            container.embedder.dimension,
            hnsw_m=settings.hnsw_m,
            ef_construction=settings.hnsw_ef_construction,
            ef_search=settings.hnsw_ef_search,
            exact_search_max_candidates=settings.exact_search_max_candidates,
            snapshot_interval_seconds=0,
        )
        try:
            warm_up(container.embedder)
            rows = bench_pdfs(container, scratch, pdfs, args.repeats, console)
            rows.append(total_row(rows))
            if scifact:
                rows.append(bench_scifact(container, scratch, scifact, console))
        finally:
            scratch.close()
            container.close()

    figures = [r.figures() for r in rows]
    report.figures = {
        "settings": {"chunk_size": settings.chunk_size, "chunk_overlap": settings.chunk_overlap,
                     "embedding_batch_size": settings.embedding_batch_size, "embedding_threads": settings.embedding_threads},
        "repeats": args.repeats,
        "rows": figures,
    }
    print_tables(figures, console)
    pdf_total = next(f for f in figures if f["name"] == "all valid PDFs")
    report.targets.append(at_least("ingest PDFs: end-to-end ÷ bare-embedder chunks/s", pdf_total.get("ratio_e2e_to_bare"), RATIO_TARGET))
    if scifact:
        report.targets.append(
            at_least("ingest SciFact: end-to-end ÷ bare-embedder chunks/s", figures[-1].get("ratio_e2e_to_bare"), RATIO_TARGET)
        )
    report.notes.append(
        "bare = one embed_documents call over all chunk texts of the input (length-sorted batches of "
        f"{settings.embedding_batch_size}); the embed stage = the groups IngestService embeds per document"
    )
    return report


def print_tables(figures: list[dict[str, Any]], console: Console) -> None:
    speed = []
    split = []
    failed = []
    for f in figures:
        if f.get("error"):
            speed.append((f["name"], "failed", *([None] * 7)))
            failed.append(f"{f['name']}: {f['error']}")
            continue
        speed.append(
            (f["name"], f["pages"] or None, f["chunks"], f["mean_tokens_per_chunk"], f["e2e_s"], f["pages_per_s"],
             f["chunks_per_s"], f["bare_chunks_per_s"], f["ratio_e2e_to_bare"])
        )
        split.append(
            (f["name"], f["e2e_s"], f["stage_parse_chunk_s"], f["stage_embed_s"], f["stage_index_s"], f["stage_other_s"],
             f["bare_embed_s"])
        )
    console.print(
        make_table(
            "ingest throughput (medians over rounds)",
            ("input", "pages", "chunks", "tok/chunk", "e2e s", "pages/s", "chunks/s", "bare chunks/s", "e2e÷bare"),
            speed,
            caption="\n".join(f"failed (expected for the corrupt PDF): {line}" for line in failed) or None,
        )
    )
    console.print(
        make_table(
            "where the time goes, seconds (stages re-run one at a time with ingest's own functions)",
            ("input", "end to end", "parse+chunk", "embed", "index", "other", "bare embed"),
            split,
            caption="other = end to end − the three stages: accept (hash, blob write), metadata and job updates",
        )
    )
