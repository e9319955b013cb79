"""The records of the query history and the shapes of the history, ratings and analytics routes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragline.models import Timings, Usage

__all__ = ["Timings"]


class SourceRef(BaseModel):
    document_id: str
    page: int | None = None
    score: float
    title: str | None = None
    filename: str | None = None


class QueryRecord(BaseModel):
    """One answered question, as the history keeps it."""

    query_id: str
    tenant_id: str
    key_id: str | None = None
    question: str
    question_key: str  # ragline.insight.text.normalise_question: what popular questions group by
    filters: dict[str, Any] = Field(default_factory=dict)
    kb_id: str | None = None
    answer: str | None = None  # None when RAGLINE_HISTORY_STORE_ANSWERS=false
    sources: list[SourceRef] = Field(default_factory=list)
    model: str
    usage: Usage = Field(default_factory=Usage)
    confidence: float
    answered: bool  # False: no passage was relevant enough (the answer abstained)
    cached: bool = False
    timings: Timings = Field(default_factory=Timings)
    query_time_ms: float
    timestamp: str
    rating: int | None = None
    comment: str | None = None

    @property
    def day(self) -> str:
        return self.timestamp[:10]

    def cited_documents(self) -> dict[str, str | None]:
        """The distinct documents this answer cites, with a title for each (first seen wins)."""
        cited: dict[str, str | None] = {}
        for source in self.sources:
            cited.setdefault(source.document_id, source.title or source.filename)
        return cited

    def item(self, *, include_answer: bool) -> dict[str, Any]:
        """A history list entry."""
        data: dict[str, Any] = {
            "query_id": self.query_id,
            "question": self.question,
            "timestamp": self.timestamp,
            "confidence": self.confidence,
            "rating": self.rating,
            "query_time_ms": self.query_time_ms,
        }
        if include_answer:
            data["answer"] = self.answer
        return data

    def detail(self) -> dict[str, Any]:
        """``GET /v1/queries/{id}``: the list entry's fields and everything else the history keeps."""
        data = self.item(include_answer=self.answer is not None)
        data.update(
            {
                "comment": self.comment,
                "sources": [s.model_dump(include={"document_id", "page", "score"}) for s in self.sources],
                "filters": self.filters,
                "kb_id": self.kb_id,
                "model": self.model,
                "usage": self.usage.model_dump(),
                "cached": self.cached,
                "answered": self.answered,
                "timings": self.timings.model_dump(),
                "key_id": self.key_id,
            }
        )
        return data


class DayStats(BaseModel):
    """A tenant's counters for one UTC day, maintained as queries are recorded and rated."""

    day: str
    questions: int = 0
    unanswered: int = 0
    cached: int = 0
    rating_sum: int = 0
    rating_count: int = 0
    latency_buckets: dict[int, int] = Field(default_factory=dict)  # ragline.insight.text.latency_bucket


class RatingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=2000)


class RatingResponse(BaseModel):
    message: str
    query_id: str
    rating: int


class HistoryItem(BaseModel):
    query_id: str
    question: str
    timestamp: str
    confidence: float
    rating: int | None
    query_time_ms: float
    answer: str | None = None


class CitedPassage(BaseModel):
    document_id: str
    page: int | None
    score: float


class QueryDetail(HistoryItem):
    """``GET /v1/queries/{query_id}`` (``QueryRecord.detail()``): the history item's fields and the rest of
    the record. ``answer`` is absent when answers are not stored."""

    comment: str | None
    sources: list[CitedPassage]
    filters: dict[str, Any]
    kb_id: str | None
    model: str
    usage: Usage
    cached: bool
    answered: bool = Field(description="false: no passage was relevant enough and the answer abstained")
    timings: Timings
    key_id: str | None = Field(description="The key that asked")


class QueryDeletedData(BaseModel):
    query_id: str


class QueryDeleted(BaseModel):
    status: Literal["success"]
    data: QueryDeletedData


class HistoryPage(BaseModel):
    queries: list[HistoryItem]
    total: int
    limit: int
    offset: int


class QuestionCount(BaseModel):
    question: str
    count: int


class DocumentCount(BaseModel):
    document_id: str
    title: str | None
    reference_count: int


class PopularAnswer(BaseModel):
    period_days: int
    top_questions: list[QuestionCount]
    top_documents: list[DocumentCount]


class DayCount(BaseModel):
    date: str
    count: int


class LatencySummary(BaseModel):
    p50: float | None
    p95: float | None


class UsageAnswer(BaseModel):
    period_days: int
    total_questions: int
    questions_per_day: list[DayCount]
    latency_ms: LatencySummary
    average_rating: float | None
    rated_questions: int
    unanswered_share: float
    cached_share: float


class DocumentStats(BaseModel):
    document_id: str
    title: str | None
    filename: str | None
    status: str
    chunk_count: int
    page_count: int
    sections: list[str]
    processing_time_ms: float | None
    size_bytes: int
    created_at: str
    indexed_at: str | None
    query_count: int
    last_referenced_at: str | None
