"""Text analysis for keyword (BM25) search, the same chain as OpenSearch's `english` analyzer:
standard tokenizer → possessive stemmer → lowercase → English stop words → Porter stemmer."""

from __future__ import annotations

import re
from functools import lru_cache

import Stemmer

# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET, which OpenSearch's `english` analyzer uses.
ENGLISH_STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with".split()
)
_TOKEN = re.compile(r"\w+(?:['’]\w+)*", re.UNICODE)
_stemmer = Stemmer.Stemmer("porter")


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    return _stemmer.stemWord(word)


def analyze(text: str) -> list[str]:
    terms: list[str] = []
    for match in _TOKEN.finditer(text.lower()):
        token = match.group()
        if token.endswith(("'s", "’s")):
            token = token[:-2]
        if not token or token in ENGLISH_STOP_WORDS:
            continue
        terms.append(_stem(token))
    return terms
