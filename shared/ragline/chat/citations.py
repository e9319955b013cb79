"""Numbered citations: one number per bracket, only to sources that exist.

A model may write "[1, 2]" or "[2-4]"; the API promises "[1][2]" (one number per bracket), so
groups are split first (a range only when short: "[1990-2010]" is not a citation), then any number
outside 1..len(sources) is dropped.
"""

from __future__ import annotations

import re

_CITATION = re.compile(r"\[(\d{1,3})\]")
_GROUP = re.compile(r"\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})+|\d{1,3}\s*[-–]\s*\d{1,3})\]")
MAX_RANGE = 10  # "[2-5]" is four citations; a wider "range" is something else and left alone
# What the start of a citation (group) may look like while the rest has not arrived yet.
_OPEN_GROUP = re.compile(r"\[(?:\d{1,3}(?:\s*[,;–-]\s*\d{0,3})*)?\s*")


def _split_group(match: re.Match[str]) -> str:
    inner = match.group(1)
    if "," in inner or ";" in inner:
        return "".join(f"[{int(n)}]" for n in re.split(r"\s*[,;]\s*", inner))
    low, high = (int(n) for n in re.split(r"\s*[-–]\s*", inner))
    if low < high and high - low < MAX_RANGE:
        return "".join(f"[{n}]" for n in range(low, high + 1))
    return match.group(0)


def one_number_per_bracket(answer: str) -> str:
    return _GROUP.sub(_split_group, answer)


def cited_numbers(answer: str) -> list[int]:
    """Source numbers cited, in order of first appearance."""
    seen: list[int] = []
    for match in _CITATION.finditer(answer):
        number = int(match.group(1))
        if number not in seen:
            seen.append(number)
    return seen


def drop_unknown_citations(answer: str, source_count: int) -> str:
    """Citations split one number per bracket, those of no source removed."""
    answer = one_number_per_bracket(answer)
    return _CITATION.sub(lambda m: m.group(0) if 1 <= int(m.group(1)) <= source_count else "", answer)


def is_grounded(answer: str, source_count: int) -> bool:
    """Whether the answer cites at least one of the sources."""
    return any(1 <= number <= source_count for number in cited_numbers(one_number_per_bracket(answer)))


class StreamingCitationFilter:
    """drop_unknown_citations for a stream: holds back a possible "[1, 1" until it knows what it is."""

    def __init__(self, source_count: int) -> None:
        self.source_count = source_count
        self._held = ""
        self.grounded = False  # whether anything let through so far cites a source

    def feed(self, text: str) -> str:
        text = self._held + text
        self._held = ""
        start = text.rfind("[")
        if start != -1 and "]" not in text[start:] and _OPEN_GROUP.fullmatch(text[start:]):
            text, self._held = text[:start], text[start:]
        return self._out(drop_unknown_citations(text, self.source_count))

    def flush(self) -> str:
        held, self._held = self._held, ""
        return self._out(held)

    def _out(self, text: str) -> str:
        self.grounded = self.grounded or is_grounded(text, self.source_count)
        return text
