"""Chat: search, number the passages, let the answer model write with [n] citations."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from ragline.chat.citations import StreamingCitationFilter, drop_unknown_citations, is_grounded
from ragline.chat.pages import continuations
from ragline.chat.prompt import NOT_IN_DOCUMENTS
from ragline.errors import Unprocessable
from ragline.models import ChatRequest, ChatResponse, SearchRequest, Source, Usage, new_id
from ragline.ports import AnswerDelta, AnswerDone, AnswerModel, AnswerPassage, AnswerRequest, EventBus
from ragline.retrieval.evidence import ANSWER_FLOOR
from ragline.retrieval.service import SearchService


@dataclass(frozen=True)
class ChatBounds:
    """What a request may ask of the answer model, whose tokens cost money: which models, and how many tokens."""

    models: frozenset[str]
    max_tokens: int

    def check(self, request: ChatRequest) -> None:
        """A 422, in the shape of the request validation's, for a model not allowed or too many tokens."""
        if request.model is not None and request.model not in self.models:
            allowed = ", ".join(sorted(self.models))
            _reject("model", f"{request.model!r} is not an allowed model (allowed: {allowed})", "model_not_allowed")
        if request.max_tokens is not None and request.max_tokens > self.max_tokens:
            _reject("max_tokens", f"Input should be less than or equal to {self.max_tokens}", "less_than_equal")


def _not_in_documents(model: str) -> Generator[AnswerDelta | AnswerDone, None, None]:
    yield AnswerDelta(NOT_IN_DOCUMENTS)
    yield AnswerDone(Usage(), model)


def _reject(field: str, message: str, kind: str) -> None:
    raise Unprocessable(f"{field}: {message}", details=[{"loc": ["body", field], "msg": message, "type": kind}])


@dataclass
class PreparedChat:
    query_id: str
    sources: list[Source]
    request: AnswerRequest
    started: float
    confidence: float  # ragline.retrieval.evidence: how well the best passages match, absolutely
    # Below the answer floor the model is not asked: the answer says the documents lack it, citing nothing.
    abstained: bool = False


class ChatService:
    def __init__(
        self,
        search: SearchService,
        answerer: AnswerModel,
        events: EventBus,
        bounds: ChatBounds,
        *,
        default_limit: int = 5,
        answer_floor: float = ANSWER_FLOOR,
    ) -> None:
        self.search = search
        self.answerer = answerer
        self.events = events
        self.bounds = bounds
        self.default_limit = default_limit
        self.answer_floor = answer_floor

    def prepare(self, tenant_id: str, request: ChatRequest) -> PreparedChat:
        """Checks and retrieval happen before any byte of a stream is sent, so their errors are plain HTTP errors."""
        self.bounds.check(request)
        started = time.perf_counter()
        found, evidence = self.search.search_with_evidence(
            tenant_id,
            SearchRequest(
                query=request.query,
                filters=request.filters,
                limit=request.limit or self.default_limit,
                mode=request.mode,
            ),
        )
        sources = [
            Source(
                id=hit.id,
                score=hit.score,
                document_id=hit.payload["document_id"],
                title=hit.payload.get("title"),
                filename=hit.payload.get("filename"),
                page=hit.payload.get("page"),
                text=hit.payload["text"],
            )
            for hit in found.items
        ]
        abstained = evidence.confidence < self.answer_floor or not sources
        if abstained:
            sources = []
        following = continuations(self.search.index, tenant_id, sources)
        passages = [
            AnswerPassage(
                number=i, title=s.title or s.filename, page=s.page, text=s.text, continuation=following.get(s.id)
            )
            for i, s in enumerate(sources, start=1)
        ]
        answer_request = AnswerRequest(
            question=request.query,
            passages=passages,
            history=request.history,
            model=request.model,
            temperature=request.temperature,
            max_tokens=request.max_tokens,
        )
        return PreparedChat(new_id("qry"), sources, answer_request, started, evidence.confidence, abstained)

    def _answer_stream(self, prepared: PreparedChat) -> Iterator[AnswerDelta | AnswerDone]:
        if prepared.abstained:
            return _not_in_documents(prepared.request.model or self.answerer.name)
        return self.answerer.stream(prepared.request)

    def _completed(self, tenant_id: str, prepared: PreparedChat, usage: Usage, model: str) -> float:
        """Publish `query.completed` once the answer is whole; returns the latency it reports, which
        the response (or the stream's `done` event) reports too."""
        latency_ms = round((time.perf_counter() - prepared.started) * 1000, 2)
        self.events.publish(
            "query.completed",
            tenant_id,
            {
                "query_id": prepared.query_id,
                "latency_ms": latency_ms,
                "source_count": len(prepared.sources),
                "model": model,
                "usage": usage.model_dump(),
            },
        )
        return latency_ms

    def answer(self, tenant_id: str, request: ChatRequest) -> ChatResponse:
        prepared = self.prepare(tenant_id, request)
        pieces: list[str] = []
        done: AnswerDone | None = None
        for event in self._answer_stream(prepared):
            if isinstance(event, AnswerDelta):
                pieces.append(event.text)
            else:
                done = event
        assert done is not None, "an answer model must end with AnswerDone"
        latency_ms = self._completed(tenant_id, prepared, done.usage, done.model)
        answer = drop_unknown_citations("".join(pieces), len(prepared.sources)).strip()
        return ChatResponse(
            answer=answer,
            sources=prepared.sources,
            usage=done.usage,
            model=done.model,
            latency_ms=latency_ms,
            query_id=prepared.query_id,
            confidence=prepared.confidence,
            grounded=is_grounded(answer, len(prepared.sources)),
        )

    def stream_events(self, tenant_id: str, prepared: PreparedChat) -> Generator[dict[str, Any], None, None]:
        """The SSE events after `prepare`: sources, message deltas, done. Errors propagate to the caller."""
        yield {"event": "sources", "data": {"sources": [s.model_dump() for s in prepared.sources]}}
        citations = StreamingCitationFilter(len(prepared.sources))
        # Closing this generator closes the model's stream now, on this thread (see ragline.api.streaming).
        with closing(self._answer_stream(prepared)) as answer:
            for event in answer:
                if isinstance(event, AnswerDelta):
                    if text := citations.feed(event.text):
                        yield {"event": "message", "data": {"content": text}}
                else:
                    if rest := citations.flush():
                        yield {"event": "message", "data": {"content": rest}}
                    latency_ms = self._completed(tenant_id, prepared, event.usage, event.model)
                    yield {
                        "event": "done",
                        "data": {
                            "query_id": prepared.query_id,
                            "usage": event.usage.model_dump(),
                            "model": event.model,
                            "latency_ms": latency_ms,
                            "confidence": prepared.confidence,
                            "grounded": citations.grounded,
                        },
                    }
