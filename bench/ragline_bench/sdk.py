"""`ragline bench sdk`: what the Python SDK adds to a call over raw httpx, against a real `ragline serve`.

Two calls, each made both ways, interleaved (the order rotates every round, so drift on a shared machine
hits every arm alike): `GET /v1/kb/documents/{id}` and `POST /v1/kb/search` (the same query each time,
so the server answers from its query-vector cache and the work it does is the same for both arms).
"raw httpx" is an `httpx.Client` sending the request and decoding the JSON body; "SDK" is
`Ragline.documents.get` / `Ragline.search`: building the request, the retry loop, the headers
(an Idempotency-Key on the search), and validating the answer into pydantic models. Both keep their
connection alive. The SDK's overhead is the median of the per-round differences (the SDK call minus the
raw call of the same round); the difference of the two p50s is printed beside it. Target: ≤ 1 ms p50.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ragline_bench.common import (
    BenchError,
    RaglineServer,
    Report,
    at_most,
    bench_data_dir,
    create_api_key,
    latency_summary,
    make_table,
)

if TYPE_CHECKING:
    from rich.console import Console

TARGET_OVERHEAD_MS = 1.0
QUERY = "how long do refunds take"
TEXT = "Refunds are processed within five business days of receiving the returned item. " * 8


def _arms(raw: Any, sdk: Any, document_id: str) -> dict[str, Callable[[], Any]]:
    return {
        "GET document, raw httpx": lambda: _checked(raw.get(f"/v1/kb/documents/{document_id}")),
        "GET document, SDK": lambda: sdk.documents.get(document_id),
        "search, raw httpx": lambda: _checked(raw.post("/v1/kb/search", json={"query": QUERY})),
        "search, SDK": lambda: sdk.search(QUERY),
    }


def _checked(response: Any) -> Any:
    if response.status_code != 200:
        raise BenchError(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text}"
        )
    return response.json()


def measure(url: str, key: str, calls: int, warmup: int) -> dict[str, list[float]]:
    import httpx
    from ragline_client import Ragline

    with (
        httpx.Client(base_url=url, headers={"x-api-key": key}, timeout=60) as raw,
        Ragline(api_key=key, base_url=url, timeout=60) as sdk,
    ):
        accepted = sdk.documents.upload_text(TEXT, title="Refunds")
        document = sdk.documents.wait(accepted.document_id, timeout=120)
        if document.status != "indexed":
            raise BenchError(f"the benchmark's document did not index: {document.error}")
        arms = _arms(raw, sdk, document.id)
        for _ in range(warmup):  # connections, the server's caches, both code paths
            for call in arms.values():
                call()
        seconds: dict[str, list[float]] = {name: [] for name in arms}
        order = list(arms)
        for n in range(calls):
            for name in order[n % len(order) :] + order[: n % len(order)]:
                started = time.perf_counter()
                arms[name]()
                seconds[name].append(time.perf_counter() - started)
    return seconds


def run(args: argparse.Namespace, console: Console) -> Report:
    if args.calls < 10:
        raise BenchError("--calls must be at least 10")
    report = Report("sdk")
    with bench_data_dir(args.data_dir, "sdk") as data_dir:
        key = create_api_key(data_dir, "bench")
        with RaglineServer(data_dir, data_dir / "server.log", env={"RAGLINE_LOG_LEVEL": "WARNING"}) as server:
            console.print(f"{server.url}: {args.calls} rounds of 4 interleaved calls after {args.warmup} to warm up")
            seconds = measure(server.url, key, args.calls, args.warmup)
    summaries = {name: latency_summary(values) for name, values in seconds.items()}
    overhead: dict[str, dict[str, float]] = {}
    for call in ("GET document", "search"):
        raw, sdk = seconds[f"{call}, raw httpx"], seconds[f"{call}, SDK"]
        paired = statistics.median((s - r) * 1000 for s, r in zip(sdk, raw, strict=True))
        overhead[call] = {
            "paired_median_ms": round(paired, 3),
            "p50_difference_ms": round(
                summaries[f"{call}, SDK"]["p50_ms"] - summaries[f"{call}, raw httpx"]["p50_ms"], 3
            ),
        }
        report.targets.append(
            at_most(f"SDK overhead over raw httpx, {call}, p50", round(paired, 3), TARGET_OVERHEAD_MS, "ms")
        )
    report.figures = {"calls": args.calls, "warmup": args.warmup, "latency": summaries, "overhead": overhead}
    rows = [(name, s["n"], s["p50_ms"], s["p99_ms"], s["mean_ms"]) for name, s in summaries.items()]
    console.print(make_table("per call (ms)", ("arm", "calls", "p50", "p99", "mean"), rows))
    rows = [(call, o["paired_median_ms"], o["p50_difference_ms"]) for call, o in overhead.items()]
    console.print(
        make_table(
            "SDK minus raw httpx (ms)",
            ("call", "median of paired differences", "difference of p50s"),
            rows,
        )
    )
    return report
