"""`ragline bench …` — placeholder wiring; the benchmarks live beside this file."""

from __future__ import annotations

import argparse


def add_bench_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bench = sub.add_parser("bench", help="benchmarks that print their figures")
    bench.set_defaults(func=lambda args: bench.print_help() or 0)
