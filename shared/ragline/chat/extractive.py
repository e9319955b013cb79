"""The answerer used when no LLM is configured: the passages' sentences that best match the
question, in rank order, each cited as [n]. Deterministic, instant and honest about what it is."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ragline.models import Usage
from ragline.ports import AnswerDelta, AnswerDone, AnswerPassage, AnswerRequest
from ragline.retrieval.analysis import analyze

EXTRACTIVE_MODEL = "extractive (no LLM configured)"
NO_ANSWER = "The knowledge base has no passages that match this question."
_SENTENCE = re.compile(r"[^.!?]+(?:[.!?]+|$)")
_PARAGRAPH = re.compile(r"\n\s*\n")
MAX_SENTENCES = 3
MAX_SENTENCE_CHARS = 400


def _is_prose(sentence: str) -> bool:
    """Headings, table rows and reference fragments make poor answers."""
    if not 30 <= len(sentence) <= MAX_SENTENCE_CHARS or len(sentence.split()) < 5 or "|" in sentence:
        return False
    letters = sum(ch.isalpha() or ch.isspace() for ch in sentence)
    return letters / len(sentence) >= 0.75


def _sentences(passage: AnswerPassage) -> list[str]:
    found = [
        " ".join(sentence.split())
        for paragraph in _PARAGRAPH.split(passage.text)  # PDF lines are not sentence ends; paragraphs are
        for sentence in _SENTENCE.findall(paragraph)
    ]
    return [s for s in found if _is_prose(s)]


def best_sentences(question: str, passages: list[AnswerPassage]) -> list[tuple[str, int]]:
    """Up to three (sentence, passage number) pairs, scored by question terms covered."""
    wanted = set(analyze(question))
    scored: list[tuple[float, int, int, str, int]] = []
    for rank, passage in enumerate(passages):
        for order, sentence in enumerate(_sentences(passage)):
            terms = set(analyze(sentence))
            overlap = len(wanted & terms)
            if overlap:
                # Coverage of the question, plus density so long sentences do not win by size alone;
                # then the passage's rank, then position in it.
                score = overlap / max(len(wanted), 1) + 0.5 * overlap / len(terms)
                scored.append((score, -rank, -order, sentence, passage.number))
    scored.sort(reverse=True)
    picked: list[tuple[str, int]] = []
    for _, _, _, sentence, number in scored:
        if sentence not in (s for s, _ in picked):
            picked.append((sentence, number))
        if len(picked) == MAX_SENTENCES:
            break
    if not picked and passages:
        first = _sentences(passages[0]) or [" ".join(passages[0].text.split())[:MAX_SENTENCE_CHARS]]
        picked.append((first[0], passages[0].number))
    return picked


def compose(question: str, passages: list[AnswerPassage]) -> str:
    picked = best_sentences(question, passages)
    if not picked:
        return NO_ANSWER
    parts = []
    for sentence, number in picked:
        sentence = sentence.rstrip()
        if sentence[-1:] not in ".!?":
            sentence += "."
        parts.append(f"{sentence[:-1]} [{number}]{sentence[-1]}")
    return "From the documents: " + " ".join(parts)


class ExtractiveAnswerer:
    name = EXTRACTIVE_MODEL

    def stream(self, request: AnswerRequest) -> Iterator[AnswerDelta | AnswerDone]:
        answer = compose(request.question, request.passages)
        for piece in re.findall(r"\S+\s*", answer):
            yield AnswerDelta(piece)
        yield AnswerDone(usage=Usage(), model=EXTRACTIVE_MODEL)
