"""The answer cache in process, with a counting answer model: a hit asks no model (whole or streamed),
a change in the tenant's documents (through the ingest service) ends it, and the setting turns it off."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ragline.chat.service import ChatService
from ragline.config import Settings
from ragline.container import Container
from ragline.insight.service import AnswerCache
from ragline.knowledge_bases import CreateKnowledgeBaseRequest
from ragline.models import ChatRequest
from ragline.ports import AnswerDelta, AnswerDone, AnswerModel, AnswerRequest


@dataclass
class Counting:
    inner: AnswerModel
    calls: int = 0

    @property
    def name(self) -> str:
        return self.inner.name

    def stream(self, request: AnswerRequest) -> Iterator[AnswerDelta | AnswerDone]:
        self.calls += 1
        return self.inner.stream(request)


def ingest(container: Container, tenant: str, text: str, **options) -> str:
    accepted = container.ingest.accept(tenant, text.encode(), filename="doc.txt", **options)
    job = container.store.claim(accepted.job_id)
    container.ingest.process(job)
    return accepted.document.id


@pytest.fixture(scope="module")
def container(tmp_path_factory) -> Iterator[Container]:
    built = Container(Settings(data_dir=tmp_path_factory.mktemp("cache"), anthropic_api_key=None))
    ingest(built, "t1", "Invoices are due within 30 days of the invoice date.", external_id="billing")
    yield built
    built.close()


def chat_service(container: Container, model: Counting, *, cache: bool = True) -> ChatService:
    base = container.chat
    return ChatService(
        base.search,
        model,
        base.events,
        base.bounds,
        insight=container.insight,
        cache=AnswerCache(100) if cache else None,
    )


def test_a_hit_asks_no_model_whole_or_streamed(container: Container) -> None:
    model = Counting(container.answerer)
    chat = chat_service(container, model)
    first = chat.answer("t1", ChatRequest(query="When are invoices due?"))
    assert (first.cached, model.calls) == (False, 1)
    second = chat.answer("t1", ChatRequest(query="when are INVOICES due"))
    assert (second.cached, model.calls) == (True, 1)
    assert second.answer == first.answer and second.sources == first.sources
    events = list(chat.stream_events("t1", chat.prepare("t1", ChatRequest(query="When are invoices due?"))))
    assert model.calls == 1 and events[-1]["data"]["cached"] is True
    assert events[0]["data"]["sources"] == [s.model_dump() for s in first.sources]
    # A conversation is never answered from the cache.
    chat.answer("t1", ChatRequest(query="When are invoices due?", history=[{"role": "user", "content": "hi"}]))
    assert model.calls == 2
    # Nor is another tenant's question (t2 has no documents: its answer abstains, asking no model).
    other = chat.answer("t2", ChatRequest(query="When are invoices due?"))
    assert (other.cached, other.sources, model.calls) == (False, [], 2)


def test_a_change_through_the_ingest_service_ends_the_hits(container: Container) -> None:
    model = Counting(container.answerer)
    chat = chat_service(container, model)
    question = ChatRequest(query="How long until invoices are due?")
    chat.answer("t1", question)
    chat.answer("t1", question)
    assert model.calls == 1
    before = container.insight.corpus_version("t1")
    ingest(container, "t1", "Invoices are due within 45 days now.", external_id="billing")  # a new version
    assert container.insight.corpus_version("t1") > before
    assert chat.answer("t1", question).cached is False and model.calls == 2
    other = ingest(container, "t1", "Refunds take ten days.")
    assert chat.answer("t1", question).cached is False and model.calls == 3
    container.ingest.delete("t1", other)
    assert chat.answer("t1", question).cached is False and model.calls == 4
    assert chat.answer("t1", question).cached is True and model.calls == 4


def test_without_the_cache_every_chat_asks_the_model(container: Container) -> None:
    model = Counting(container.answerer)
    chat = chat_service(container, model, cache=False)
    for _ in range(3):
        assert chat.answer("t1", ChatRequest(query="When are invoices due?")).cached is False
    assert model.calls == 3


def test_the_setting_turns_the_cache_off(tmp_path) -> None:
    assert Container(Settings(data_dir=tmp_path, answer_cache_enabled=False)).chat.cache is None
    assert Container(Settings(data_dir=tmp_path)).chat.cache is not None


def test_a_change_in_one_knowledge_base_keeps_the_answers_scoped_to_another(container: Container) -> None:
    manuals_kb = container.knowledge_bases.create("t3", CreateKnowledgeBaseRequest(name="Manuals")).id
    billing_kb = container.knowledge_bases.create("t3", CreateKnowledgeBaseRequest(name="Billing")).id
    ingest(container, "t3", "The pump must be primed before its first start.", kb_id=manuals_kb)
    ingest(container, "t3", "Invoices are due within 30 days.", kb_id=billing_kb)
    model = Counting(container.answerer)
    chat = chat_service(container, model)
    manuals = ChatRequest(query="What must be done before the pump's first start?", filters={"kb_id": manuals_kb})
    everywhere = ChatRequest(query="What must be done before the pump's first start?")
    for request in (manuals, everywhere):
        assert chat.answer("t3", request).cached is False
        assert chat.answer("t3", request).cached is True
    calls = model.calls
    ingest(container, "t3", "Refunds take ten days.", kb_id=billing_kb)
    # Scoped to the unchanged base: still a hit. Across the tenant: the corpus changed.
    assert chat.answer("t3", manuals).cached is True
    assert chat.answer("t3", everywhere).cached is False and model.calls == calls + 1
    ingest(container, "t3", "Bleed the air from the pump after priming.", kb_id=manuals_kb)
    assert chat.answer("t3", manuals).cached is False and model.calls == calls + 2
