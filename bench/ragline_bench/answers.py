"""The answer part of `ragline bench quality`: extractive answers over the shared PDFs.

The PDFs of ../shared/pdfs go through the real ingest path (external_id = file name); each
question of answer_questions.jsonl (a golden set in `ragline eval`'s format: 30 answerable with
the fact the answer must contain, 11 that no PDF answers) is searched and answered by the real
services, without an LLM. Figures: the fact hit rate of the answers, abstention accuracy (share of
questions whose answer abstained exactly when it should), and the latency an answer adds over its
search (p50 of chat minus p50 of search with the same query, both warm).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragline_bench.common import BenchError, at_most, latency_summary, timed

if TYPE_CHECKING:
    from rich.console import Console

    from ragline.container import Container

TENANT = "answers"
QUESTIONS = Path(__file__).with_name("answer_questions.jsonl")
PDFS = (
    "tracemonkey-pldi09.pdf",
    "gainp-gaas-solar-cell-tunnel-junction.pdf",
    "turk-j-med-sci-2009-speed-exercise-nitric-oxide.pdf",
    "word2016-one-page-near-empty.pdf",
)
ADDED_LATENCY_TARGET_MS = 50.0


def measure(container: Container, shared: Path, console: Console) -> tuple[dict[str, Any], list[Any]]:
    from ragline import evaluation
    from ragline.models import ChatRequest, SearchRequest
    from ragline_bench.common import ingest_now

    for name in PDFS:
        path = shared / "pdfs" / name
        if not path.exists():
            raise BenchError(f"{path} is missing: the answer benchmark needs the shared PDFs")
        ingest_now(container, TENANT, path.read_bytes(), filename=name, external_id=name, source="bench")
    golden = evaluation.load_golden(QUESTIONS)
    runner = evaluation.LocalRunner(container.search, container.chat, TENANT)
    report = evaluation.evaluate(runner, golden, target="shared/pdfs")  # also warms every query up
    search_s, chat_s = [], []
    for question in golden:
        request = SearchRequest(query=question.question, limit=container.settings.chat_default_limit)
        search_s.append(timed(container.search.search, TENANT, request)[1])
        chat_s.append(timed(container.chat.answer, TENANT, ChatRequest(query=question.question))[1])
    search, chat = latency_summary(search_s), latency_summary(chat_s)
    answered = [q for q in report.questions if not q.expect_no_answer]
    figures = {
        "questions": len(golden),
        "unanswerable": len(golden) - len(answered),
        "fact_hit_rate": report.metrics["fragment_hit_rate"],
        "abstention_accuracy": round(sum(q.abstained == q.expect_no_answer for q in report.questions) / len(golden), 4),
        "abstention_precision": report.metrics["abstention_precision"],
        "abstention_recall": report.metrics["abstention_recall"],
        "page_hit_at_5": report.metrics["page_hit_at_5"],
        "search_latency": search,
        "chat_latency": chat,
        "answer_added_p50_ms": round(chat["p50_ms"] - search["p50_ms"], 3),
        "misses": [q.question for q in answered if q.fragment_hit is False],
    }
    targets = [
        at_most(
            "extractive answer p50 added over search", figures["answer_added_p50_ms"], ADDED_LATENCY_TARGET_MS, "ms"
        )
    ]
    return figures, targets


def print_figures(figures: dict[str, Any], console: Console) -> None:
    from ragline_bench.common import make_table

    rows = [
        ("fact hit rate (answerable)", f"{figures['fact_hit_rate']:.3f}"),
        ("abstention accuracy (all)", f"{figures['abstention_accuracy']:.3f}"),
        ("abstention precision / recall", f"{figures['abstention_precision']} / {figures['abstention_recall']}"),
        ("page hit@5", f"{figures['page_hit_at_5']}"),
        ("search p50 ms", f"{figures['search_latency']['p50_ms']:.1f}"),
        ("chat (extractive) p50 ms", f"{figures['chat_latency']['p50_ms']:.1f}"),
        ("answer added p50 ms", f"{figures['answer_added_p50_ms']:.1f}"),
    ]
    console.print(
        make_table(
            f"extractive answers over shared/pdfs: {figures['questions']} questions, {figures['unanswerable']} unanswerable",
            ("figure", "value"),
            rows,
        )
    )
