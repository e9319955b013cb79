"""Every pattern the parsers, the chunker and the keyword analyzer run over a tenant's text is
linear-time on adversarial input: long runs of what it matches and of near-misses.

Each case runs in its own interpreter with a hard timeout: a pattern that backtracks holds the GIL
inside the regex engine, where no signal or thread can stop it. The bound is a regression guard,
not a benchmark: at these sizes every case takes 0.3 s at most here, and a pattern that is
quadratic (or worse) on its input would take minutes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from ragline.ingest import chunking, parsers
from ragline.ingest.service import safe_filename
from ragline.retrieval.analysis import analyze
from ragline_bench.adversarial import TEXTS, N
from tests.support import REPO

BOUND_SECONDS = 2.0  # ~10x the slowest case here (0.26 s: 200,000 one-character sentences)


class WordTokenizer:
    def token_offsets(self, texts):
        return [[(0, len(text))] if text else [] for text in texts]


def _chunk(text: str) -> None:
    list(chunking.chunk_blocks([parsers.Block(text)], WordTokenizer(), size=200, overlap=40))


def _markdown(text: str) -> None:
    list(parsers.parse(text.encode(), parsers.MARKDOWN).blocks)


RUN: dict[str, Callable[[str], object]] = {
    "markdown": _markdown,
    "clean_text": parsers.clean_text,
    "chunk": _chunk,
    "analyze": analyze,
    "filename": safe_filename,
}
# name: (what runs, the adversarial text); the texts are ragline_bench's, which `bench fairness` uploads too
CASES: dict[str, tuple[Callable[[str], object], Callable[[], str]]] = {
    name: (RUN[target], make) for name, (target, make) in TEXTS.items()
}

_CHILD = """
import sys, time
from tests.security.test_linear_time import CASES
run, make = CASES[sys.argv[1]]
text = make()
started = time.perf_counter()
run(text)
print(time.perf_counter() - started)
"""


@pytest.mark.parametrize("name", list(CASES))
def test_pattern_is_linear_on_adversarial_input(name):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, name],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=BOUND_SECONDS + 30,  # the interpreter's start and imports, on a busy machine
            check=True,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name}: still running after {BOUND_SECONDS + 30:g} s: the pattern backtracks")
    seconds = float(done.stdout.strip().splitlines()[-1])
    assert seconds < BOUND_SECONDS, f"{name}: {seconds:.2f} s for {N:,} characters"


def test_padded_heading_parses_in_well_under_a_second():
    """The 2 KB upload that stalled every route for 38 s (12 s alone on an idle machine)."""
    data = ("# a" + " " * 2000 + "x").encode()
    started = time.perf_counter()
    parsed = parsers.parse(data, parsers.MARKDOWN)
    blocks = list(parsed.blocks)
    assert time.perf_counter() - started < 0.1
    assert parsed.title == "a" + " " * 2000 + "x"
    assert [b.section for b in blocks] == [parsed.title]
