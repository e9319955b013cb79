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
