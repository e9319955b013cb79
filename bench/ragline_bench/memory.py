"""`ragline bench memory`: resident memory of the real server, idle, while it ingests the largest
PDF, and while it ingests a long text of SciFact abstracts (full-width chunks: the stress case for
onnxruntime's memory, which grows with batch size × chunk length).

The embedding model is loaded when the server starts (build_container constructs OnnxEmbedder,
whose constructor creates the onnxruntime session), so the idle figure includes it; the RSS after
one search shows what the first inference adds on top.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import TYPE_CHECKING, Any

from ragline_bench.common import (
    BENCH_TENANT,
    BenchError,
    RaglineServer,
    Report,
    at_most,
    bench_data_dir,
    create_api_key,
    largest_valid_pdf,
    load_beir,
    make_table,
    resolve_shared,
    rss_mb,
)

if TYPE_CHECKING:
    import httpx
    from rich.console import Console

IDLE_TARGET_MB = 600.0
PEAK_TARGET_MB = 1500.0
INDEX_TIMEOUT_S = 900.0


class RssSampler:
    """Samples a process's RSS on a background thread until stopped."""

    def __init__(self, pid: int, interval_s: float) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []  # (seconds since start, MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - self._started, rss_mb(self.pid)))
            self._stop.wait(self.interval_s)

    @property
    def peak_mb(self) -> float:
        return max(mb for _, mb in self.samples)


STRESS_ABSTRACTS = 200


def upload_and_wait(client: httpx.Client, name: str, **upload: Any) -> dict[str, Any]:
    """POST a document (multipart `files=` or JSON `json=`), then poll it until indexed or failed."""
    started = time.perf_counter()
    response = client.post("/v1/kb/documents", **upload)
    if response.status_code != 202:
        raise BenchError(f"upload of {name} answered {response.status_code}: {response.text[:300]}")
    document_id = response.json()["data"]["document_id"]
    deadline = time.monotonic() + INDEX_TIMEOUT_S
    while time.monotonic() < deadline:
        document = client.get(f"/v1/kb/documents/{document_id}").json()
        if document["status"] in ("indexed", "failed"):
            return {**document, "seconds": time.perf_counter() - started}
        time.sleep(0.1)
    raise BenchError(f"{name} was not indexed within {INDEX_TIMEOUT_S:.0f} s")


def run(args: argparse.Namespace, console: Console) -> Report:
    import httpx

    shared = resolve_shared(args.shared)
    pdf = args.pdf or largest_valid_pdf(shared)
    report = Report("memory")
    with bench_data_dir(args.data_dir, "memory") as data_dir:
        kb = data_dir / "kb"
        key = create_api_key(kb, BENCH_TENANT)
        with RaglineServer(kb, data_dir / "server.log") as server:
            time.sleep(args.settle_seconds)
            idle = rss_mb(server.pid)
            with httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=120) as client:
                search = client.post("/v1/kb/search", json={"query": "nitric oxide after exercise", "mode": "hybrid"})
                search.raise_for_status()
                warm = rss_mb(server.pid)
                status = console.status(f"uploading {pdf.name} and sampling RSS every {args.sample_ms} ms …")
                with status, RssSampler(server.pid, args.sample_ms / 1000) as sampler:
                    files = {"file": (pdf.name, pdf.read_bytes(), "application/pdf")}
                    document = upload_and_wait(client, pdf.name, files=files)
                after = rss_mb(server.pid)
                abstracts = load_beir(shared, "scifact").corpus[:STRESS_ABSTRACTS]
                text = "\n\n".join(f"{doc.title}. {doc.text}" for doc in abstracts)
                status = console.status(f"ingesting {STRESS_ABSTRACTS} SciFact abstracts as one text …")
                with status, RssSampler(server.pid, args.sample_ms / 1000) as stress:
                    long_text = upload_and_wait(client, "SciFact text", json={"text": text, "title": "stress"})

    for name, outcome in ((pdf.name, document), ("SciFact text", long_text)):
        if outcome["status"] != "indexed":
            raise BenchError(f"{name} failed to index: {outcome.get('error')}")
    report.figures = {
        "pdf": pdf.name,
        "pdf_bytes": pdf.stat().st_size,
        "pages": document["page_count"],
        "chunks": document["chunk_count"],
        "index_s": round(document["seconds"], 2),
        "idle_rss_mb": round(idle, 1),
        "after_first_search_rss_mb": round(warm, 1),
        "peak_rss_mb": round(sampler.peak_mb, 1),
        "after_indexing_rss_mb": round(after, 1),
        "stress_chunks": long_text["chunk_count"],
        "stress_index_s": round(long_text["seconds"], 2),
        "stress_peak_rss_mb": round(stress.peak_mb, 1),
        "samples": len(sampler.samples),
        "sample_interval_ms": args.sample_ms,
        "settle_s": args.settle_seconds,
    }
    f = report.figures
    console.print(
        make_table(
            "server resident memory (RSS, MB = 10^6 bytes)",
            ("moment", "RSS MB"),
            [
                (f"idle, {args.settle_seconds:g} s after /health answered (model loaded)", f["idle_rss_mb"]),
                ("after one search (first inference)", f["after_first_search_rss_mb"]),
                (
                    f"peak while ingesting {pdf.name} ({f['pages']} pages, {f['chunks']} chunks, {f['index_s']} s)",
                    f["peak_rss_mb"],
                ),
                ("after indexing", f["after_indexing_rss_mb"]),
                (
                    f"peak while ingesting {STRESS_ABSTRACTS} SciFact abstracts as one text "
                    f"({f['stress_chunks']} chunks, {f['stress_index_s']} s)",
                    f["stress_peak_rss_mb"],
                ),
            ],
            caption=f"{f['samples']} samples every {args.sample_ms} ms from the upload until the document was indexed",
        )
    )
    report.targets += [
        at_most("memory: idle server RSS", f["idle_rss_mb"], IDLE_TARGET_MB, "MB"),
        at_most("memory: peak RSS while ingesting the largest PDF", f["peak_rss_mb"], PEAK_TARGET_MB, "MB"),
        at_most("memory: peak RSS while ingesting long chunks (stress)", f["stress_peak_rss_mb"], PEAK_TARGET_MB, "MB"),
    ]
    return report
