"""`ragline bench webhooks` with tiny numbers: every delivery reaches its receiver exactly once, and the
bench's own count would notice a repeat or a loss.

No timings are asserted: the figures are for people to read; these check what they count.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ragline_bench import webhooks
from ragline_bench.cli import add_bench_parser
from ragline_bench.common import make_console

EVENTS, ENDPOINTS = 20, 3


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers())
    return parser.parse_args(["bench", "webhooks", *argv])


def test_every_delivery_arrives_exactly_once_with_and_without_a_hanging_endpoint(tmp_path: Path) -> None:
    out = tmp_path / "webhooks.json"
    args = _args(
        "--events", str(EVENTS), "--endpoints", str(ENDPOINTS), "--rate", "200",
        "--hang-timeout", "1", "--data-dir", str(tmp_path / "data"), "--out", str(out),
    )  # fmt: skip
    assert args.func(args) == 0

    figures = json.loads(out.read_text())["figures"]
    scenarios = figures["scenarios"]
    assert set(scenarios) == {"burst", "burst + hang", "paced 200/s", "paced 200/s + hang"}
    for name, s in scenarios.items():
        assert (s["expected"], s["delivered"], s["requests"]) == (EVENTS * ENDPOINTS,) * 3, name
        assert (s["duplicates"], s["missing"], s["events_short"], s["unknown_bodies"]) == (0, 0, 0, 0), name
        assert s["p50_ms"] <= s["p99_ms"] <= s["max_ms"]


def test_the_receivers_in_process_count_the_same() -> None:
    console = make_console()
    args = _args("--events", "10", "--endpoints", "2", "--pattern", "burst", "--receivers-in-process")
    report = webhooks.run(args, console)
    for s in report.figures["scenarios"].values():
        assert (s["delivered"], s["requests"], s["duplicates"]) == (20, 20, 0)


def test_a_repeat_and_a_loss_are_reported() -> None:
    published = [0.0, 0.0]
    arrivals = [
        (0, "evt_a", 0, 0.010),
        (0, "evt_a", 0, 0.020),  # the same event at the same receiver again
        (1, "evt_a", 0, 0.015),
        (0, "evt_b", 1, 0.030),  # evt_b never reaches receiver 1
    ]
    s = webhooks.summarize(arrivals, published, events=2, endpoints=2, rate=None, publish_s=0.0, hang=False)
    assert (s["requests"], s["delivered"], s["duplicates"], s["missing"], s["events_short"]) == (4, 3, 1, 1, 1)
    assert s["max_ms"] == 30.0  # latency from the first arrival of each delivery
