"""`ragline bench ws` with tiny numbers: every arm asks every question once, and the figures add up.

No timing is asserted here (a loaded machine decides those); the benchmark's run is in the report.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ragline_bench.cli import add_bench_parser
from tests.support import shared_dir

QUESTIONS = 4


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers())
    return parser.parse_args(["bench", "ws", *argv])


def test_each_arm_times_every_question(tmp_path: Path) -> None:
    shared = shared_dir()
    out = tmp_path / "ws.json"
    args = _args(
        "--shared", str(shared), "--questions", str(QUESTIONS), "--warmup", "1", "--corpus-docs", "5",
        "--data-dir", str(tmp_path / "data"), "--out", str(out),
    )  # fmt: skip
    assert args.func(args) == 0
    figures = json.loads(out.read_text())["figures"]
    arms = figures["time_to_first_token"]
    assert set(arms) == {"sse", "ws", "ws, new connection"}
    for name, arm in arms.items():
        assert arm["n"] == QUESTIONS, name
        assert 0 < arm["p50_ms"] <= arm["p90_ms"], name
    assert figures["ws_p50_over_sse_p50"] == round(arms["ws"]["p50_ms"] / arms["sse"]["p50_ms"], 3)
