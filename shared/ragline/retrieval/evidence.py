"""How much the retrieved passages support an answer, on an absolute scale.

Fused hybrid scores cannot say this: min-max normalisation per query makes the best hit look
perfect whatever it is. The evidence here is absolute: the best passage's cosine similarity to the
question (all-MiniLM-L6-v2), and the share of the question's content words that the best passage
contains (the same analyzer as keyword search: stemmed, stop words out). Both are properties of
the question and the passage alone, so they mean the same on any corpus size and on either engine.

    confidence = SEMANTIC_WEIGHT * ramp(cosine, COSINE_FLOOR, COSINE_FULL)
               + (1 - SEMANTIC_WEIGHT) * ramp(coverage, COVERAGE_FLOOR, COVERAGE_FULL)

ramp(x, lo, hi) is 0 below lo, 1 above hi and linear between: confidence never falls when either
piece of evidence grows. Below ANSWER_FLOOR the passages are not relevant enough to answer from.
The constants were set on the questions in bench/ragline_bench/answer_questions.jsonl: there,
answerable questions scored 0.64 and more, unanswerable ones 0.40 and less; a question half of
whose content words no passage contains needs a close semantic match to pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ragline.retrieval.analysis import analyze

COSINE_FLOOR = 0.20  # MiniLM cosine of a question and an unrelated passage is mostly below this
COSINE_FULL = 0.60  # and of a question and a passage that answers it mostly above this
COVERAGE_FLOOR = 0.30  # sharing a word or two of a question is common by chance
COVERAGE_FULL = 0.90
SEMANTIC_WEIGHT = 0.5
ANSWER_FLOOR = 0.50
# Words that make a question a question, not what it is about ("what is the dose" is about "dose").
QUESTION_WORDS = frozenset(
    analyze(
        "what which who whom whose when where why how does do did can could would should may might must "
        "i me my we our you your tell explain describe please give list show find know there here has have "
        "had many much about"
    )
)


@dataclass(frozen=True)
class Evidence:
    """The best absolute scores among a query's retrieved passages (None: that search did not run)."""

    cosine: float | None  # best cosine similarity of a passage to the question, -1..1
    bm25: float | None  # best BM25 score of a passage (reported, not used: it grows with corpus size)
    coverage: float  # largest share of the question's content terms that one passage contains, 0..1

    @property
    def confidence(self) -> float:
        return confidence(self)


def ramp(value: float, low: float, high: float) -> float:
    return min(1.0, max(0.0, (value - low) / (high - low)))


def content_terms(question: str) -> set[str]:
    terms = set(analyze(question))
    return (terms - QUESTION_WORDS) or terms


def term_coverage(question: str, texts: Sequence[str]) -> float:
    """The largest share of the question's content terms found in any one of the texts."""
    wanted = content_terms(question)
    if not wanted or not texts:
        return 0.0
    return max(len(wanted & set(analyze(text))) / len(wanted) for text in texts)


def confidence(evidence: Evidence) -> float:
    """0-1, monotone in the cosine and the coverage; without a cosine (keyword search) coverage alone."""
    lexical = ramp(evidence.coverage, COVERAGE_FLOOR, COVERAGE_FULL)
    if evidence.cosine is None:
        return round(lexical, 4)
    semantic = ramp(evidence.cosine, COSINE_FLOOR, COSINE_FULL)
    return round(SEMANTIC_WEIGHT * semantic + (1 - SEMANTIC_WEIGHT) * lexical, 4)


def relevant_enough(evidence: Evidence, floor: float = ANSWER_FLOOR) -> bool:
    return confidence(evidence) >= floor


def cosine_from_score(score: float) -> float:
    """The engines report a semantic hit's score as (1 + cosine) / 2 (OpenSearch's cosinesimil)."""
    return 2.0 * score - 1.0
