"""Chat: search, number the passages, let the answer model write with [n] citations."""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from ragline.chat.citations import StreamingCitationFilter, drop_unknown_citations, is_grounded
from ragline.chat.pages import continuations
from ragline.chat.prompt import NOT_IN_DOCUMENTS
from ragline.errors import DependencyUnavailable, Unprocessable
from ragline.insight.models import QueryRecord, SourceRef, Timings
from ragline.insight.service import AnswerCache, InsightService
from ragline.insight.text import cache_key, normalise_question
from ragline.models import ChatRequest, ChatResponse, SearchRequest, Source, Usage, new_id, utcnow
from ragline.ports import AnswerDelta, AnswerDone, AnswerModel, AnswerPassage, AnswerRequest, EventBus
from ragline.retrieval.evidence import ANSWER_FLOOR
from ragline.retrieval.service import SearchService

log = logging.getLogger(__name__)


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
    chat: ChatRequest | None = None
    key_id: str | None = None
    timings: Timings = field(default_factory=Timings)
    cache_key: str | None = None  # None: not cacheable (a conversation, or the cache is off)
    hit: dict[str, Any] | None = None  # the cached answer this question gets, without asking the model

    @property
    def cached(self) -> bool:
        return self.hit is not None


def sources_used(sources: list[Source]) -> list[str]:
    """The cited files' names, each once, in the order of ``sources`` (SageAI's field)."""
    names: list[str] = []
    for source in sources:
        name = source.filename or source.title
        if name and name not in names:
            names.append(name)
    return names


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


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
        insight: InsightService | None = None,
        cache: AnswerCache | None = None,
    ) -> None:
        self.search = search
        self.answerer = answerer
        self.events = events
        self.bounds = bounds
        self.default_limit = default_limit
        self.answer_floor = answer_floor
        self.insight = insight  # None: answers are not recorded (nor cached)
        self.cache = cache if insight is not None else None

    def _cache_key(self, tenant_id: str, request: ChatRequest) -> str | None:
        if self.cache is None or self.insight is None or request.history:
            return None  # an answer within a conversation depends on more than the question
        parameters = {
            "limit": request.limit or self.default_limit,
            "mode": request.mode,
            "model": request.model or self.answerer.name,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        try:
            # A question scoped to one knowledge base keeps its cached answer while other bases change.
            kb_id = request.filters.get("kb_id")
            version = self.insight.corpus_version(tenant_id, kb_id if isinstance(kb_id, str) else None)
        except DependencyUnavailable as exc:
            # The answer does not need the cache: without the corpus version, answer afresh.
            log.warning("answer cache skipped for tenant %s: %s", tenant_id, exc)
            return None
        return cache_key(tenant_id, normalise_question(request.query), request.filters, parameters, version)

    def prepare(self, tenant_id: str, request: ChatRequest, *, key_id: str | None = None) -> PreparedChat:
        """Checks and retrieval happen before any byte of a stream is sent, so their errors are plain HTTP errors."""
        self.bounds.check(request)
        started = time.perf_counter()
        key = self._cache_key(tenant_id, request)
        hit = self.cache.get(key) if self.cache is not None and key is not None else None
        if hit is not None:
            return PreparedChat(
                new_id("qry"),
                hit["sources"],
                AnswerRequest(question=request.query, passages=[]),
                started,
                hit["confidence"],
                hit["abstained"],
                chat=request,
                key_id=key_id,
                cache_key=key,
                hit=hit,
            )
        timings = Timings()
        if request.mode != "keyword":
            # Embedded here to time it apart; the search finds the vector in its cache.
            embedding = time.perf_counter()
            self.search.query_vector(tenant_id, request.query)
            timings.embed_ms = _ms(embedding)
        retrieving = time.perf_counter()
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
                section=hit.payload.get("section"),
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
        timings.retrieve_ms = _ms(retrieving)
        return PreparedChat(
            new_id("qry"),
            sources,
            answer_request,
            started,
            evidence.confidence,
            abstained,
            chat=request,
            key_id=key_id,
            timings=timings,
            cache_key=key,
        )

    def _answer_stream(self, prepared: PreparedChat) -> Iterator[AnswerDelta | AnswerDone]:
        if prepared.hit is not None:
            return self._cached_stream(prepared)
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

    def _finish(
        self, tenant_id: str, prepared: PreparedChat, answer: str, usage: Usage, model: str, latency_ms: float
    ) -> None:
        """Keep a freshly generated answer in the cache, and record every answer in the history."""
        if self.insight is None or prepared.chat is None:
            return
        if prepared.hit is None and prepared.cache_key is not None and self.cache is not None:
            self.cache.put(
                prepared.cache_key,
                {
                    "answer": answer,
                    "sources": prepared.sources,
                    "model": model,
                    "confidence": prepared.confidence,
                    "abstained": prepared.abstained,
                },
            )
        request = prepared.chat
        kb_id = request.filters.get("kb_id")
        self.insight.record(
            QueryRecord(
                query_id=prepared.query_id,
                tenant_id=tenant_id,
                key_id=prepared.key_id,
                question=request.query,
                question_key=normalise_question(request.query),
                filters=request.filters,
                kb_id=kb_id if isinstance(kb_id, str) else None,
                answer=answer,
                sources=[
                    SourceRef(document_id=s.document_id, page=s.page, score=s.score, title=s.title, filename=s.filename)
                    for s in prepared.sources
                ],
                model=model,
                usage=usage,
                confidence=prepared.confidence,
                answered=not prepared.abstained,
                cached=prepared.cached,
                timings=prepared.timings,
                query_time_ms=latency_ms,
                timestamp=utcnow(),
            )
        )

    def _cached_stream(self, prepared: PreparedChat) -> Iterator[AnswerDelta | AnswerDone]:
        assert prepared.hit is not None
        yield AnswerDelta(prepared.hit["answer"])
        yield AnswerDone(Usage(), prepared.hit["model"])  # no model was asked: no tokens spent

    def answer(self, tenant_id: str, request: ChatRequest, *, key_id: str | None = None) -> ChatResponse:
        prepared = self.prepare(tenant_id, request, key_id=key_id)
        pieces: list[str] = []
        done: AnswerDone | None = None
        generating = time.perf_counter()
        for event in self._answer_stream(prepared):
            if isinstance(event, AnswerDelta):
                pieces.append(event.text)
            else:
                done = event
        assert done is not None, "an answer model must end with AnswerDone"
        if not prepared.cached:
            prepared.timings.generate_ms = _ms(generating)
        latency_ms = self._completed(tenant_id, prepared, done.usage, done.model)
        answer = drop_unknown_citations("".join(pieces), len(prepared.sources)).strip()
        self._finish(tenant_id, prepared, answer, done.usage, done.model, latency_ms)
        return ChatResponse(
            answer=answer,
            sources=prepared.sources,
            usage=done.usage,
            model=done.model,
            latency_ms=latency_ms,
            query_id=prepared.query_id,
            confidence=prepared.confidence,
            grounded=is_grounded(answer, len(prepared.sources)),
            cached=prepared.cached,
            query_time_ms=latency_ms,
            timings=prepared.timings,
            sources_used=sources_used(prepared.sources),
        )

    def stream_events(self, tenant_id: str, prepared: PreparedChat) -> Generator[dict[str, Any], None, None]:
        """The SSE events after `prepare`: sources, message deltas, done. Errors propagate to the caller."""
        yield {"event": "sources", "data": {"sources": [s.model_dump() for s in prepared.sources]}}
        citations = StreamingCitationFilter(len(prepared.sources))
        sent: list[str] = []
        generating = time.perf_counter()
        # Closing this generator closes the model's stream now, on this thread (see ragline.api.streaming).
        with closing(self._answer_stream(prepared)) as answer:
            for event in answer:
                if isinstance(event, AnswerDelta):
                    if text := citations.feed(event.text):
                        sent.append(text)
                        yield {"event": "message", "data": {"content": text}}
                else:
                    if rest := citations.flush():
                        sent.append(rest)
                        yield {"event": "message", "data": {"content": rest}}
                    if not prepared.cached:
                        prepared.timings.generate_ms = _ms(generating)
                    latency_ms = self._completed(tenant_id, prepared, event.usage, event.model)
                    self._finish(tenant_id, prepared, "".join(sent).strip(), event.usage, event.model, latency_ms)
                    yield {
                        "event": "done",
                        "data": {
                            "query_id": prepared.query_id,
                            "usage": event.usage.model_dump(),
                            "model": event.model,
                            "latency_ms": latency_ms,
                            "confidence": prepared.confidence,
                            "grounded": citations.grounded,
                            "cached": prepared.cached,
                            "query_time_ms": latency_ms,
                            "timings": prepared.timings.model_dump(),
                            "sources_used": sources_used(prepared.sources),
                        },
                    }
