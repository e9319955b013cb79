"""Split text blocks into passages the embedding model can read whole.

Sizes are in the model's word pieces. Passages end at sentence or paragraph ends where they
can; a sentence longer than a passage is cut by tokens. Consecutive passages share about
`overlap` tokens of trailing sentences. Every passage keeps its block's page and section.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ragline.ingest.parsers import Block
from ragline.ports import Tokenizer

_UNIT_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n\s*\n")


@dataclass
class Passage:
    text: str
    page: int | None
    section: str | None
    token_count: int


@dataclass
class _Unit:
    start: int
    end: int
    tokens: int


def _unit_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    start = 0
    for match in _UNIT_END.finditer(text):
        if match.start() > start:
            spans.append((start, match.start()))
        start = match.end()
    if start < len(text):
        spans.append((start, len(text)))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def _units(text: str, tokenizer: Tokenizer, size: int, overlap: int) -> list[_Unit]:
    """Sentence-like units; one longer than `size` tokens is cut into token windows."""
    spans = _unit_spans(text)
    offsets = tokenizer.token_offsets([text[a:b] for a, b in spans])
    units: list[_Unit] = []
    for (start, end), token_spans in zip(spans, offsets, strict=True):
        if len(token_spans) <= size:
            units.append(_Unit(start, end, max(len(token_spans), 1)))
            continue
        step = size - overlap
        for first in range(0, len(token_spans), step):
            window = token_spans[first : first + size]
            units.append(_Unit(start + window[0][0], start + window[-1][1], len(window)))
            if first + size >= len(token_spans):
                break
    return units


def chunk_blocks(blocks: Iterable[Block], tokenizer: Tokenizer, size: int, overlap: int) -> Iterator[Passage]:
    if not 0 <= overlap < size:
        raise ValueError("overlap must be at least 0 and smaller than size")
    for block in blocks:
        text = block.text
        units = _units(text, tokenizer, size, overlap)
        index = 0
        while index < len(units):
            first = index
            tokens = 0
            while index < len(units) and (index == first or tokens + units[index].tokens <= size):
                tokens += units[index].tokens
                index += 1
            passage = text[units[first].start : units[index - 1].end].strip()
            yield Passage(passage, block.page, block.section, tokens)
            if index >= len(units):
                break
            # Step back over trailing units that fit in the overlap, but always move forward.
            back = index
            carried = 0
            while back - 1 > first and carried + units[back - 1].tokens <= overlap:
                back -= 1
                carried += units[back].tokens
            index = back
