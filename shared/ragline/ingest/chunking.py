"""Split text blocks into passages the embedding model can read whole.

Sizes are in the model's word pieces, and no passage is longer than `max_chars` characters,
whatever its token count (a 50 MB "word" is one token). Passages end at sentence or paragraph
ends where they can; a sentence longer than `max_chars` is first cut at a space (or anywhere, when
it has none), and one longer than a passage is cut by tokens. Consecutive passages share about
`overlap` tokens of trailing sentences. Every passage keeps its block's page and section.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ragline.config import DEFAULT_CHUNK_MAX_CHARS
from ragline.ingest.parsers import Block
from ragline.ingest.prefetch import grouped
from ragline.ports import Tokenizer

_UNIT_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n\s*\n")
_CUT_AT = (" ", "\n", "\t")
# Spans tokenized per call: the tokenizer's memory grows with the text it is given (measured 60-140
# bytes a character: a 5 MB block took 0.3-0.7 GB at once), so a block is handed over in parts.
TOKENIZE_BATCH = 64


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


def _pieces(text: str, start: int, end: int, max_chars: int) -> Iterator[tuple[int, int]]:
    """[start, end) in pieces of at most max_chars, cut after a space in the piece's second half if any."""
    while end - start > max_chars:
        limit = start + max_chars
        space = max(text.rfind(char, start + max_chars // 2, limit) for char in _CUT_AT)
        cut = space + 1 if space != -1 else limit
        yield start, cut
        start = cut
    yield start, end


def _unit_spans(text: str, max_chars: int) -> list[tuple[int, int]]:
    spans = []
    start = 0
    for match in _UNIT_END.finditer(text):
        if match.start() > start:
            spans.extend(_pieces(text, start, match.start(), max_chars))
        start = match.end()
    if start < len(text):
        spans.extend(_pieces(text, start, len(text), max_chars))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def _units(text: str, tokenizer: Tokenizer, size: int, overlap: int, max_chars: int) -> list[_Unit]:
    """Sentence-like units of at most max_chars; one longer than `size` tokens is cut into token windows."""
    units: list[_Unit] = []
    for spans in grouped(_unit_spans(text, max_chars), TOKENIZE_BATCH):
        offsets = tokenizer.token_offsets([text[a:b] for a, b in spans])
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


def chunk_blocks(
    blocks: Iterable[Block],
    tokenizer: Tokenizer,
    size: int,
    overlap: int,
    max_chars: int = DEFAULT_CHUNK_MAX_CHARS,
) -> Iterator[Passage]:
    if not 0 <= overlap < size:
        raise ValueError("overlap must be at least 0 and smaller than size")
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    for block in blocks:
        text = block.text
        units = _units(text, tokenizer, size, overlap, max_chars)
        index = 0
        while index < len(units):
            first = index
            tokens = 0
            while index < len(units) and (
                index == first
                or (tokens + units[index].tokens <= size and units[index].end - units[first].start <= max_chars)
            ):
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
