"""The answerer used when no LLM is configured: the sentences of the retrieved passages that best
answer the question, each cited as [n]. Deterministic, fast and honest about what it is.

Candidates are whole sentences (ragline.chat.sentences) of the top passages; a sentence cut off by
a page break is completed from the next page's first passage when the chat service supplied it.
Each is scored against the question by meaning (cosine of the sentence's embedding and the
question's, with the model search already loaded) and by words (the share of the question's
content terms it contains). The best two or three are quoted verbatim, grouped by passage and in
the order they are written there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ragline.chat.prompt import NOT_IN_DOCUMENTS
from ragline.chat.sentences import clean_passage, ends_complete, is_answer_sentence, split_sentences
from ragline.models import Usage
from ragline.ports import AnswerDelta, AnswerDone, AnswerPassage, AnswerRequest, Embedder
from ragline.retrieval.analysis import analyze
from ragline.retrieval.evidence import content_terms

if TYPE_CHECKING:
    import numpy as np

EXTRACTIVE_MODEL = "extractive (no LLM configured)"
ANSWER_LEAD = "From the documents: "
MAX_SENTENCES = 3
MIN_SENTENCES = 2  # a second sentence is added when it is nearly as good as the best (context helps)
# Sentences embedded per question, the most promising first, in one batch with the question. On the bench's
# questions (bench/ragline_bench/answers.py) 3 carry the fact as often as 6 did (23/30; 25 vs 24 with the
# former fusion), 2 less often (21/30); the answer's added p50 fell from 127 to 77 ms on a busy 2-core box.
EMBEDDED_CANDIDATES = 3
EMBEDDED_CHARS = 300  # of a long sentence, its start is what the embedding reads (cost grows with length)
SEMANTIC_WEIGHT = 0.65
RANK_PENALTY = 0.02  # per passage rank: among equal sentences, the better passage's
NUMBER_BONUS = 0.1  # for a sentence with a figure in it, when the question asks for a quantity
KEEP_SHARE = 0.85  # further sentences must score this share of the best one
SECOND_SHARE = 0.7  # ... or this share, for the second
# The source paper's own reference markers ("[12]", "[3–5]") would read as citations of our passages.
_PAPER_REFERENCE = re.compile(r"\s?\[\d+(?:\s*[,–-]\s*\d+)*\]")
_ASKS_QUANTITY = re.compile(
    r"\bhow (?:many|much|long|often|far|large|small|big|high|low|old|fast|thick|heavy)\b"
    r"|\b(?:what|which) (?:\w+ ){0,4}(?:number|value|level|rate|size|percentage|percent|temperature|thickness|"
    r"ratio|dose|age|amount|speed|speedup|efficiency|wavelength|year|date|duration|length|weight|height|mass|"
    r"concentration|voltage|current|bandgap|frequency|pressure|time|version)s?\b"
    r"|\bat what\b|\bwhen\b|\bby how\b",
    re.IGNORECASE,
)
_DIGIT = re.compile(r"\d")


def asks_quantity(question: str) -> bool:
    return bool(_ASKS_QUANTITY.search(question))


@dataclass(frozen=True)
class Candidate:
    text: str
    number: int  # the passage's citation number
    rank: int  # the passage's place in the results, 0 first
    position: int  # the sentence's place in its passage
    lexical: float  # share of the question's content terms it contains
    has_number: bool


OVERLAP_ANCHOR_CHARS = 40  # how much of a cut sentence's end is looked for in the chunk after it


def complete_sentence(tail: str, continuation: str) -> str | None:
    """The cut-off sentence `tail` completed from the text after it, or None when that text does not continue it.

    The next chunk on the same page repeats the tail (overlap): the sentence goes on after the repeat.
    The next page's first chunk does not: it continues the tail when it begins mid-sentence.
    """
    following = " ".join(clean_passage(continuation).split())
    anchor = tail[-OVERLAP_ANCHOR_CHARS:]
    at = following.find(anchor)
    if at >= 0:
        rest = following[at + len(anchor) :]
        ending = split_sentences(rest)
        if not ending:
            return None
        return tail + (" " if rest[:1].isspace() else "") + ending[0]
    ending = split_sentences(following)
    if ending and ending[0][:1].islower():  # the next page begins mid-sentence
        return f"{tail} {ending[0]}"
    return None


def passage_sentences(passage: AnswerPassage) -> list[str]:
    """The passage's whole sentences; a last one cut off at the passage's end is completed when possible."""
    sentences = split_sentences(clean_passage(passage.text))
    if sentences and not ends_complete(sentences[-1]) and passage.continuation:
        completed = complete_sentence(sentences[-1], passage.continuation)
        if completed is not None:
            sentences[-1] = completed
    return [_PAPER_REFERENCE.sub("", s) for s in sentences]


def candidates(question: str, passages: Sequence[AnswerPassage]) -> list[Candidate]:
    """Every quotable sentence once (overlapping passages repeat some), from its best-ranked passage."""
    wanted = content_terms(question)
    found: list[Candidate] = []
    seen: set[str] = set()
    for rank, passage in enumerate(passages):
        for position, sentence in enumerate(passage_sentences(passage)):
            key = " ".join(sentence.lower().split())
            if key in seen or not (is_answer_sentence(sentence) and ends_complete(sentence)):
                continue
            seen.add(key)
            lexical = len(wanted & set(analyze(sentence))) / len(wanted) if wanted else 0.0
            found.append(Candidate(sentence, passage.number, rank, position, lexical, bool(_DIGIT.search(sentence))))
    return found


def score(candidate: Candidate, cosine: float, wants_number: bool = False) -> float:
    value = SEMANTIC_WEIGHT * cosine + (1 - SEMANTIC_WEIGHT) * candidate.lexical - RANK_PENALTY * candidate.rank
    return value + (NUMBER_BONUS if wants_number and candidate.has_number else 0.0)


def choose(scored: Sequence[tuple[float, Candidate]]) -> list[Candidate]:
    """The best sentence, and up to two more nearly as good; grouped by passage, in reading order."""
    ranked = sorted(scored, key=lambda pair: (-pair[0], pair[1].rank, pair[1].position))
    if not ranked:
        return []
    best = ranked[0][0]
    picked = [ranked[0][1]]
    for value, candidate in ranked[1:MAX_SENTENCES]:
        share = SECOND_SHARE if len(picked) < MIN_SENTENCES else KEEP_SHARE
        if best > 0 and value >= share * best:
            picked.append(candidate)
    first_pick = {c.number: i for i, c in reversed(list(enumerate(picked)))}
    return sorted(picked, key=lambda c: (first_pick[c.number], c.position))


def cite(sentence: str, number: int) -> str:
    """The sentence with its citation before its end mark: "… 30 days [1]."."""
    sentence = sentence.rstrip()
    if sentence[-1:] in ".!?。！？":
        return f"{sentence[:-1]} [{number}]{sentence[-1]}"
    return f"{sentence} [{number}]."


def compose(picked: Sequence[Candidate]) -> str:
    if not picked:
        return NOT_IN_DOCUMENTS
    return ANSWER_LEAD + " ".join(cite(c.text, c.number) for c in picked)


class ExtractiveAnswerer:
    name = EXTRACTIVE_MODEL

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def best_sentences(self, question: str, passages: Sequence[AnswerPassage]) -> list[Candidate]:
        found = candidates(question, passages)
        wants_number = asks_quantity(question)
        # Embedding costs a few ms a sentence: only the most promising by the score's other terms (words,
        # rank, a figure when a quantity is asked) are embedded. With the figure counted here too, the
        # bench's answers carry their fact 25 times in 30 instead of 23 (the "how many"/"mean age" ones).
        found.sort(key=lambda c: (-score(c, 0.0, wants_number), c.rank, c.position))
        found = found[:EMBEDDED_CANDIDATES]
        if not found:
            return []
        cosines = self._cosines(question, [c.text for c in found])
        return choose([(score(c, float(cos), wants_number), c) for c, cos in zip(found, cosines, strict=True)])

    def _cosines(self, question: str, sentences: list[str]) -> np.ndarray:
        """One model run for the question and the sentences (a batch; embed_query is a batch of one)."""
        vectors = self.embedder.embed_documents([question, *(s[:EMBEDDED_CHARS] for s in sentences)])
        return vectors[1:] @ vectors[0]  # unit vectors

    def stream(self, request: AnswerRequest) -> Iterator[AnswerDelta | AnswerDone]:
        answer = compose(self.best_sentences(request.question, request.passages))
        for piece in re.findall(r"\S+\s*", answer):
            yield AnswerDelta(piece)
        yield AnswerDone(usage=Usage(), model=EXTRACTIVE_MODEL)
