"""Search, chat (whole and streamed), history, ratings and analytics through the SDK against a real `ragline serve`
answering extractively (no ANTHROPIC_API_KEY)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from ragline_client import DoneEvent, MessageEvent, NotFoundError, SourcesEvent, UnprocessableEntityError
from ragline_client.models import ChatResponse, SearchResponse

from tests.sdk.conftest import Both


@pytest.fixture(scope="module")
def corpus_kb(sdk_server: Any) -> str:
    """A knowledge base of tenant s1 with two indexed documents, made once for the module."""
    from ragline_client import Ragline

    with Ragline(api_key=sdk_server.keys["s1"], base_url=sdk_server.url) as client:
        kb = client.knowledge_bases.create(f"answers {uuid.uuid4().hex[:8]}")
        texts = [
            "Refunds are processed within five business days of receiving the returned item.",
            "The warehouse ships orders every weekday morning by courier.",
        ]
        for text in texts:
            accepted = client.documents.upload_text(text, title=text.split()[1], kb_id=kb.id)
            assert client.documents.wait(accepted.document_id, timeout=90).status == "indexed"
        return kb.id


def test_search_returns_typed_hits(both: Both, s1: Any, corpus_kb: str) -> None:
    found = both(s1.search("how long do refunds take", filters={"kb_id": corpus_kb}, limit=5, mode="hybrid"))
    assert isinstance(found, SearchResponse) and found.total_found >= 1
    best = found.items[0]
    assert "five business days" in best.payload.text and best.payload.kb_id == corpus_kb
    assert 0 < best.score <= 1 and best.payload.document_id
    keyword = both(s1.search("warehouse courier", filters={"kb_id": corpus_kb}, mode="keyword", score_threshold=0.01))
    assert [hit.payload.text for hit in keyword.items][:1] == [
        "The warehouse ships orders every weekday morning by courier."
    ]
    with pytest.raises(UnprocessableEntityError) as invalid:
        both(s1.search("refunds", limit=1000))
    assert invalid.value.details and invalid.value.details[0]["loc"] == ["body", "limit"]


def test_chat_whole_and_streamed_give_the_same_cited_answer(both: Both, s1: Any, corpus_kb: str) -> None:
    question = f"How long do refunds take? ({uuid.uuid4().hex[:6]})"
    whole = both(s1.chat(question, filters={"kb_id": corpus_kb}))
    assert isinstance(whole, ChatResponse)
    assert "[1]" in whole.answer and whole.grounded and whole.sources and "extractive" in whole.model

    stream = s1.chat.stream(question, filters={"kb_id": corpus_kb})
    events = both.events(stream)
    assert isinstance(events[0], SourcesEvent) and isinstance(events[-1], DoneEvent)
    assert all(isinstance(event, MessageEvent) for event in events[1:-1]) and len(events) >= 3
    assert "".join(event.content for event in events[1:-1]) == stream.text == whole.answer
    assert [s.document_id for s in events[0].sources] == [s.document_id for s in whole.sources]
    done = events[-1]
    assert done.query_id != whole.query_id and done.grounded is True and stream.done == done
    assert stream.response.is_closed  # read to the end: the HTTP response is closed

    # Both answers are in the history, each under its own id.
    history = both(s1.queries.history(limit=5, include_answer=True))
    assert {whole.query_id, done.query_id} <= {item.query_id for item in history.queries}


def test_chat_with_history_and_options(both: Both, s1: Any, corpus_kb: str) -> None:
    answer = both(
        s1.chat(
            "And when does the warehouse ship?",
            filters={"kb_id": corpus_kb},
            limit=3,
            mode="semantic",
            history=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
        )
    )
    assert "weekday" in answer.answer and answer.cached is False


def test_queries_get_rate_delete_and_analytics(both: Both, s1: Any, s2: Any, corpus_kb: str) -> None:
    question = f"When are orders shipped? {uuid.uuid4().hex[:6]}"
    answer = both(s1.chat(question, filters={"kb_id": corpus_kb}))

    detail = both(s1.queries.get(answer.query_id))
    assert detail.query_id == answer.query_id and detail.question == question and detail.kb_id == corpus_kb
    assert detail.answer == answer.answer and detail.sources[0].document_id == answer.sources[0].document_id

    rated = both(s1.queries.rate(answer.query_id, 4, comment="useful"))
    assert (rated.query_id, rated.rating) == (answer.query_id, 4)
    assert both(s1.queries.get(answer.query_id)).rating == 4
    with pytest.raises(UnprocessableEntityError):
        both(s1.queries.rate(answer.query_id, 9))

    popular = both(s1.analytics.popular(period_days=1, limit=100))
    assert any(q.question == question.lower().replace("?", "").strip() for q in popular.top_questions)
    usage = both(s1.analytics.usage(period_days=7))
    assert usage.total_questions >= 1 and usage.rated_questions >= 1 and usage.questions_per_day

    for attempt in (
        lambda: s2.queries.get(answer.query_id),
        lambda: s2.queries.rate(answer.query_id, 1),
        lambda: s2.queries.delete(answer.query_id),
    ):
        with pytest.raises(NotFoundError):
            both(attempt())

    assert both(s1.queries.delete(answer.query_id)).query_id == answer.query_id
    with pytest.raises(NotFoundError):
        both(s1.queries.get(answer.query_id))
