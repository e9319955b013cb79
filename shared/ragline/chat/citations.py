"""Numbered citations: find them, and drop any that point at no source."""

from __future__ import annotations

import re

_CITATION = re.compile(r"\[(\d{1,3})\]")


def cited_numbers(answer: str) -> list[int]:
    """Source numbers cited, in order of first appearance."""
    seen: list[int] = []
    for match in _CITATION.finditer(answer):
        number = int(match.group(1))
        if number not in seen:
            seen.append(number)
    return seen


def drop_unknown_citations(answer: str, source_count: int) -> str:
    return _CITATION.sub(lambda m: m.group(0) if 1 <= int(m.group(1)) <= source_count else "", answer)


class StreamingCitationFilter:
    """drop_unknown_citations for a stream: holds back a possible "[12" until it knows what it is."""

    def __init__(self, source_count: int) -> None:
        self.source_count = source_count
        self._held = ""

    def feed(self, text: str) -> str:
        text = self._held + text
        self._held = ""
        start = text.rfind("[")
        if start != -1 and "]" not in text[start:] and re.fullmatch(r"\[\d{0,3}", text[start:]):
            text, self._held = text[:start], text[start:]
        return drop_unknown_citations(text, self.source_count)

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held
