"""`ragline bench sdk` with tiny numbers: it starts its server, times every arm as often as asked and writes
its figures and targets. No timing is asserted here: the figures are for people to read."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ragline_bench.cli import add_bench_parser

ARMS = {"GET document, raw httpx", "GET document, SDK", "search, raw httpx", "search, SDK"}


def test_the_sdk_benchmark_runs_and_reports(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers())
    out = tmp_path / "sdk.json"
    args = parser.parse_args(
        ["bench", "sdk", "--calls", "12", "--warmup", "1", "--data-dir", str(tmp_path / "data"), "--out", str(out)]
    )
    assert args.func(args) == 0

    report = json.loads(out.read_text())
    latency, overhead = report["figures"]["latency"], report["figures"]["overhead"]
    assert set(latency) == ARMS and all(arm["n"] == 12 for arm in latency.values())
    assert set(overhead) == {"GET document", "search"}
    assert [t["name"] for t in report["targets"]] == [
        "SDK overhead over raw httpx, GET document, p50",
        "SDK overhead over raw httpx, search, p50",
    ]
    assert all(t["goal"] == 1.0 and t["value"] == overhead[call]["paired_median_ms"]
               for t, call in zip(report["targets"], ("GET document", "search")))  # fmt: skip
