"""`ragline eval`: a tenant's golden questions against its knowledge base, as numbers a team can track.

A golden set is JSONL, one question a line:
    {"question": "...", "expected_document": "<document id or external_id>", "expected_page": 3,
     "expected_fragment": "text the answer must contain" (or a list: any of them), "expect_no_answer": true}
Every field but `question` is optional. Each question is searched (top 10 chunks, hybrid) and asked
(chat, the server's defaults); the metrics are means over the questions each applies to:

    recall@k        the expected document is among the first k distinct documents found
    mrr             1 / rank of the expected document (0 when not in the top 10)
    ndcg@10         1 / log2(rank + 1) with one relevant document
    page_hit@5      a chunk of the expected page (of the expected document, if given) is in the top 5
    fragment_hit    the answer contains the expected fragment (case and spacing ignored)
    abstention_precision / _recall   of the answers that said "not in the documents", how many were
                    meant to (precision); of the questions meant to, how many did (recall)

Logic only: the CLI (ragline.cli) prints and exits; a Runner asks a local data dir or a server.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ragline.chat.prompt import NOT_IN_DOCUMENTS
from ragline.errors import RaglineError

SEARCH_DEPTH = 10
PAGE_DEPTH = 5
METRICS = (
    "recall_at_k",
    "mrr",
    "ndcg_at_10",
    "page_hit_at_5",
    "fragment_hit_rate",
    "abstention_precision",
    "abstention_recall",
)
_FIELDS = {"question", "expected_document", "expected_page", "expected_fragment", "expect_no_answer"}


class EvalError(RaglineError):
    def __init__(self, message: str) -> None:
        super().__init__(message, error="Evaluation error")


@dataclass(frozen=True)
class GoldenQuestion:
    question: str
    expected_document: str | None = None
    expected_page: int | None = None
    expected_fragments: tuple[str, ...] = ()
    expect_no_answer: bool = False


def parse_golden(lines: Iterable[str], source: str = "golden set") -> list[GoldenQuestion]:
    """The questions of a JSONL golden set; a malformed line is an EvalError naming it."""
    questions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source} line {number}"
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise EvalError(f"{where} is not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise EvalError(f"{where} is not a JSON object")
        unknown = set(row) - _FIELDS
        if unknown:
            raise EvalError(f"{where} has unknown fields {sorted(unknown)}: use {sorted(_FIELDS)}")
        question = row.get("question")
        if not isinstance(question, str) or not question.strip():
            raise EvalError(f"{where} needs a non-empty string 'question'")
        document = row.get("expected_document")
        page = row.get("expected_page")
        fragments = row.get("expected_fragment", [])
        fragments = [fragments] if isinstance(fragments, str) else fragments
        if document is not None and not isinstance(document, str):
            raise EvalError(f"{where}: 'expected_document' must be a string (a document id or external_id)")
        if page is not None and (isinstance(page, bool) or not isinstance(page, int)):
            raise EvalError(f"{where}: 'expected_page' must be an integer")
        if not isinstance(fragments, list) or not all(isinstance(f, str) and f.strip() for f in fragments):
            raise EvalError(f"{where}: 'expected_fragment' must be a string or a list of strings")
        no_answer = row.get("expect_no_answer", False)
        if not isinstance(no_answer, bool):
            raise EvalError(f"{where}: 'expect_no_answer' must be true or false")
        questions.append(GoldenQuestion(question, document, page, tuple(fragments), no_answer))
    if not questions:
        raise EvalError(f"{source} has no questions")
    return questions


def load_golden(path: Path) -> list[GoldenQuestion]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EvalError(f"cannot read {path}: {exc.strerror}") from None
    return parse_golden(text.splitlines(), str(path))


@dataclass(frozen=True)
class Hit:
    document_id: str
    external_id: str | None
    page: int | None


@dataclass(frozen=True)
class Asked:
    hits: list[Hit]  # the search's chunks, best first
    answer: str
    cited_sources: int  # how many sources the chat answer came with
    confidence: float | None
    grounded: bool | None


class Runner(Protocol):
    def ask(self, question: str) -> Asked: ...


@dataclass
class QuestionResult:
    question: str
    rank: int | None  # of the expected document among distinct documents (1 = first); None: not found
    page_hit: bool | None
    fragment_hit: bool | None
    abstained: bool
    expect_no_answer: bool
    confidence: float | None
    grounded: bool | None
    answer: str


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def document_rank(hits: Sequence[Hit], expected: str) -> int | None:
    seen: list[str] = []
    for hit in hits:
        if hit.document_id not in seen:
            seen.append(hit.document_id)
        if expected in (hit.document_id, hit.external_id):
            return len(seen)
    return None


def judge(golden: GoldenQuestion, asked: Asked) -> QuestionResult:
    rank = document_rank(asked.hits, golden.expected_document) if golden.expected_document else None
    page_hit = None
    if golden.expected_page is not None:
        page_hit = any(
            hit.page == golden.expected_page
            and (golden.expected_document is None or golden.expected_document in (hit.document_id, hit.external_id))
            for hit in asked.hits[:PAGE_DEPTH]
        )
    fragment_hit = None
    if golden.expected_fragments:
        fragment_hit = any(_normal(f) in _normal(asked.answer) for f in golden.expected_fragments)
    abstained = asked.cited_sources == 0 or asked.answer.strip().startswith(NOT_IN_DOCUMENTS)
    return QuestionResult(
        golden.question,
        rank,
        page_hit,
        fragment_hit,
        abstained,
        golden.expect_no_answer,
        asked.confidence,
        asked.grounded,
        asked.answer,
    )


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def metrics(results: Sequence[QuestionResult], golden: Sequence[GoldenQuestion], k: int) -> dict[str, float | None]:
    with_document = [(r, g) for r, g in zip(results, golden, strict=True) if g.expected_document]
    ranks = [r.rank for r, _ in with_document]
    abstained = [r for r in results if r.abstained]
    meant = [r for r in results if r.expect_no_answer]
    return {
        "recall_at_k": _mean([1.0 if rank is not None and rank <= k else 0.0 for rank in ranks]),
        "mrr": _mean([1.0 / rank if rank is not None else 0.0 for rank in ranks]),
        "ndcg_at_10": _mean([1.0 / math.log2(rank + 1) if rank is not None and rank <= 10 else 0.0 for rank in ranks]),
        "page_hit_at_5": _mean([1.0 if r.page_hit else 0.0 for r in results if r.page_hit is not None]),
        "fragment_hit_rate": _mean([1.0 if r.fragment_hit else 0.0 for r in results if r.fragment_hit is not None]),
        "abstention_precision": _mean([1.0 if r.expect_no_answer else 0.0 for r in abstained]),
        "abstention_recall": _mean([1.0 if r.abstained else 0.0 for r in meant]),
    }


@dataclass
class Report:
    k: int
    metrics: dict[str, float | None]
    questions: list[QuestionResult]
    target: str
    drops: dict[str, float] = field(default_factory=dict)  # metric -> how much it fell against the baseline

    def as_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "k": self.k,
            "metrics": self.metrics,
            "questions": [asdict(q) for q in self.questions],
        }


def evaluate(
    runner: Runner,
    golden: Sequence[GoldenQuestion],
    *,
    k: int = SEARCH_DEPTH,
    target: str = "",
    progress: Callable[[int], None] | None = None,
) -> Report:
    results = []
    for number, question in enumerate(golden, start=1):
        results.append(judge(question, runner.ask(question.question)))
        if progress is not None:
            progress(number)
    return Report(k, metrics(results, golden, k), results, target)


def load_baseline(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EvalError(f"cannot read the baseline {path}: {exc.strerror}") from None
    except ValueError:
        raise EvalError(f"the baseline {path} is not JSON (an earlier `ragline eval --out` report)") from None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise EvalError(f"the baseline {path} is not a `ragline eval` report")
    return data


def metric_drops(now: dict[str, float | None], before: dict[str, Any]) -> dict[str, float]:
    """How much each metric fell (positive numbers), for metrics both runs measured."""
    drops = {}
    for name in METRICS:
        old, new = before.get(name), now.get(name)
        if isinstance(old, (int, float)) and new is not None and old - new > 0:
            drops[name] = round(old - new, 4)
    return drops


def question_changes(report: Report, before: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(question, what, before, now) for each per-question outcome that changed."""
    old = {q["question"]: q for q in before.get("questions", []) if isinstance(q, dict) and "question" in q}
    changes = []
    for result in report.questions:
        previous = old.get(result.question)
        if previous is None:
            changes.append((result.question, "new question", "", ""))
            continue
        for name in ("rank", "page_hit", "fragment_hit", "abstained"):
            was, now = previous.get(name), getattr(result, name)
            if was != now:
                changes.append((result.question, name, str(was), str(now)))
    return changes


# ---- runners ------------------------------------------------------------------------------------
class LocalRunner:
    """Against a data directory, in this process (the same services `ragline serve` runs)."""

    def __init__(self, search: Any, chat: Any, tenant_id: str) -> None:
        self.search = search
        self.chat = chat
        self.tenant_id = tenant_id

    def ask(self, question: str) -> Asked:
        from ragline.models import ChatRequest, SearchRequest

        found = self.search.search(self.tenant_id, SearchRequest(query=question, limit=SEARCH_DEPTH))
        answer = self.chat.answer(self.tenant_id, ChatRequest(query=question))
        return Asked(
            [_hit(item.payload) for item in found.items],
            answer.answer,
            len(answer.sources),
            answer.confidence,
            answer.grounded,
        )


class HttpRunner:
    """Against a running server, with an API key that has the search and chat scopes, through the SDK
    (imported here, not at the top: the Lambda layers ship this module without it)."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 60.0) -> None:
        from ragline.remote import Remote, connect

        self.url = url.rstrip("/")
        self._client = connect(Remote(self.url, api_key), timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def ask(self, question: str) -> Asked:
        from ragline.remote import one_line_errors

        try:
            with one_line_errors(self.url, key_needs="the search and chat scopes"):
                found = self._client.search(question, limit=SEARCH_DEPTH)
                answer = self._client.chat(question)
        except RaglineError as exc:
            raise EvalError(exc.message) from None
        return Asked(
            [_hit(item.payload.model_dump()) for item in found.items],
            answer.answer,
            len(answer.sources),
            answer.confidence,
            answer.grounded,
        )


def _hit(payload: dict[str, Any]) -> Hit:
    return Hit(str(payload["document_id"]), payload.get("external_id"), payload.get("page"))
