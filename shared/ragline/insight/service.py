"""Insight: records answered questions, reads them back (history, ratings), summarises them
(analytics, document statistics), and keeps the answer cache."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ragline.chunks import chunk_id
from ragline.errors import DependencyUnavailable, NotFound
from ragline.insight.models import (
    DayCount,
    DocumentCount,
    DocumentStats,
    LatencySummary,
    PopularAnswer,
    QueryRecord,
    QuestionCount,
    RatingResponse,
    UsageAnswer,
)
from ragline.insight.text import percentile_from_buckets
from ragline.models import Document, DocumentStatus
from ragline.ports import HistoryStore, VectorIndex

log = logging.getLogger(__name__)

DAY_SECONDS = 86_400


def since_day(period_days: int, now: float) -> str:
    """The first UTC day of a period of ``period_days`` days that ends today."""
    return (datetime.fromtimestamp(now, UTC) - timedelta(days=period_days - 1)).date().isoformat()


class AnswerCache:
    """Whole answers by ``ragline.insight.text.cache_key``, least recently used dropped first. The key
    holds the tenant's corpus version, so a change in the corpus makes older entries unreachable (they
    age out); nothing expires by time."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: str, value: dict[str, Any]) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


class InsightService:
    def __init__(
        self,
        store: HistoryStore,
        *,
        retention_days: int = 90,
        store_answers: bool = True,
        index: Callable[[], VectorIndex] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._index = index  # read only for a document's sections
        self.retention_days = retention_days
        self.store_answers = store_answers
        self.clock = clock

    # ---- recording --------------------------------------------------------------------------------
    def record(self, record: QueryRecord) -> None:
        """Keep an answered question. A history that is down does not fail the answer already given."""
        if not self.store_answers:
            record = record.model_copy(update={"answer": None})
        try:
            self.store.add_query(record, delete_after=int(self.clock()) + self.retention_days * DAY_SECONDS)
        except DependencyUnavailable as exc:
            log.error("query %s of tenant %s not recorded: %s", record.query_id, record.tenant_id, exc)

    # ---- history ----------------------------------------------------------------------------------
    def history(self, tenant_id: str, *, limit: int, offset: int, include_answer: bool) -> dict[str, Any]:
        records, total = self.store.list_queries(tenant_id, limit=limit, offset=offset, now=int(self.clock()))
        return {
            "queries": [r.item(include_answer=include_answer) for r in records],
            "total": total,
            "limit": limit,
            "offset": offset,
        }

    def query(self, tenant_id: str, query_id: str) -> QueryRecord:
        record = self.store.get_query(tenant_id, query_id, now=int(self.clock()))
        if record is None:
            raise NotFound(f"query {query_id} not found", error="Query not found")
        return record

    def delete(self, tenant_id: str, query_id: str) -> None:
        if not self.store.delete_query(tenant_id, query_id):
            raise NotFound(f"query {query_id} not found", error="Query not found")

    def rate(self, tenant_id: str, query_id: str, rating: int, comment: str | None) -> RatingResponse:
        record = self.store.rate_query(tenant_id, query_id, rating, comment, now=int(self.clock()))
        if record is None:
            raise NotFound(f"query {query_id} not found", error="Query not found")
        return RatingResponse(message="Rating saved", query_id=query_id, rating=rating)

    # ---- analytics --------------------------------------------------------------------------------
    def popular(self, tenant_id: str, *, period_days: int, limit: int) -> PopularAnswer:
        first = since_day(period_days, self.clock())
        return PopularAnswer(
            period_days=period_days,
            top_questions=[
                QuestionCount(question=q, count=n) for q, n in self.store.question_counts(tenant_id, first, limit)
            ],
            top_documents=[
                DocumentCount(document_id=d, title=title, reference_count=n)
                for d, title, n in self.store.document_counts(tenant_id, first, limit)
            ],
        )

    def usage(self, tenant_id: str, *, period_days: int) -> UsageAnswer:
        days = self.store.day_stats(tenant_id, since_day(period_days, self.clock()))
        total = sum(d.questions for d in days)
        buckets: dict[int, int] = {}
        for d in days:
            for bucket, count in d.latency_buckets.items():
                buckets[bucket] = buckets.get(bucket, 0) + count
        rated = sum(d.rating_count for d in days)
        return UsageAnswer(
            period_days=period_days,
            total_questions=total,
            questions_per_day=[DayCount(date=d.day, count=d.questions) for d in days if d.questions],
            latency_ms=LatencySummary(
                p50=percentile_from_buckets(buckets, 0.5), p95=percentile_from_buckets(buckets, 0.95)
            ),
            average_rating=round(sum(d.rating_sum for d in days) / rated, 3) if rated else None,
            rated_questions=rated,
            unanswered_share=round(sum(d.unanswered for d in days) / total, 4) if total else 0.0,
            cached_share=round(sum(d.cached for d in days) / total, 4) if total else 0.0,
        )

    def sections(self, document: Document) -> list[str]:
        """The headings the parser found in the indexed version, in document order, each once."""
        if self._index is None or document.status != DocumentStatus.INDEXED or not document.chunk_count:
            return []
        ids = [chunk_id(document.id, document.version, position) for position in range(document.chunk_count)]
        payloads = self._index().get_payloads(document.tenant_id, ids)
        found: list[str] = []
        for cid in ids:
            section = payloads.get(cid, {}).get("section")
            if isinstance(section, str) and section and section not in found:
                found.append(section)
        return found

    def document_stats(self, document: Document) -> DocumentStats:
        sections = self.sections(document)
        count, last = self.store.document_references(document.tenant_id, document.id)
        return DocumentStats(
            document_id=document.id,
            title=document.title,
            filename=document.filename,
            status=document.status.value,
            chunk_count=document.chunk_count,
            page_count=document.page_count,
            sections=sections,
            processing_time_ms=processing_time_ms(document),
            size_bytes=document.size_bytes,
            created_at=document.created_at,
            indexed_at=document.indexed_at,
            query_count=count,
            last_referenced_at=last,
        )

    # ---- the answer cache's scope -----------------------------------------------------------------
    def corpus_version(self, tenant_id: str, kb_id: str | None = None) -> int:
        return self.store.corpus_version(tenant_id, kb_id)

    def corpus_changed(self, tenant_id: str, kb_id: str) -> None:
        self.store.bump_corpus(tenant_id, kb_id)


def processing_time_ms(document: Document) -> float | None:
    """From upload (``created_at``) to searchable (``indexed_at``): queueing, parsing, embedding, indexing."""
    if document.indexed_at is None:
        return None
    start = datetime.fromisoformat(document.created_at.replace("Z", "+00:00"))
    end = datetime.fromisoformat(document.indexed_at.replace("Z", "+00:00"))
    return round(max(0.0, (end - start).total_seconds() * 1000), 1)
