"""The API's answers as pydantic models.

Every model keeps fields it does not know (``extra="allow"``: a newer server's additions are kept, not
refused), so a client keeps working as the server grows. Statuses are plain strings for the same
reason; their documented values are listed beside them. Times are parsed to ``datetime`` (UTC).
"""

from __future__ import annotations

from datetime import date as calendar_date
from datetime import datetime
from typing import Any, Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field


class RaglineModel(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


# ---- documents -------------------------------------------------------------------------------------
class Document(RaglineModel):
    id: str
    kb_id: str = "default"
    title: Optional[str] = None
    filename: Optional[str] = None
    content_type: Optional[str] = None
    status: str  # queued | processing | indexed | failed | deleting
    chunk_count: int = 0
    page_count: int = 0
    size_bytes: int = 0
    content_sha256: Optional[str] = None
    external_id: Optional[str] = None
    source: Optional[str] = None
    metadata: Dict[str, Any] = Field(default_factory=dict)
    error: Optional[str] = None  # why a failed document failed
    created_at: Optional[datetime] = None
    updated_at: Optional[datetime] = None
    indexed_at: Optional[datetime] = None


class DocumentPage(RaglineModel):
    documents: List[Document]
    next_cursor: Optional[str] = None


class UploadResult(RaglineModel):
    """An accepted upload: ingestion runs after the answer (``documents.wait`` until it is indexed)."""

    document_id: str
    job_id: Optional[str] = None  # None for a presigned upload straight to S3 (the job starts on arrival)
    document_status: Optional[str] = None
    duplicate: bool = False  # the tenant already had these bytes: document_id is the existing document


class BatchFileResult(RaglineModel):
    filename: Optional[str] = None
    document_id: Optional[str] = None  # None when the file was rejected
    job_id: Optional[str] = None
    status: str  # the document's status, or "rejected"
    duplicate: bool = False
    error: Optional[str] = None
    code: Optional[int] = None  # the status a rejected file would have had alone (413, 415, ...)


class BatchUploadResult(RaglineModel):
    successful: int
    failed: int
    documents: List[BatchFileResult]


class UploadTicket(RaglineModel):
    document_id: str
    upload_url: str
    expires_in: int
    method: str = "PUT"
    max_bytes: Optional[int] = None


class DocumentDeleted(RaglineModel):
    document_id: str


class DeletedByFilters(RaglineModel):
    deleted_documents: int
    filters: Dict[str, Any] = Field(default_factory=dict)


class DocumentStats(RaglineModel):
    document_id: str
    title: Optional[str] = None
    filename: Optional[str] = None
    status: str
    chunk_count: int = 0
    page_count: int = 0
    sections: List[str] = Field(default_factory=list)
    processing_time_ms: Optional[float] = None
    size_bytes: int = 0
    created_at: Optional[datetime] = None
    indexed_at: Optional[datetime] = None
    query_count: int = 0
    last_referenced_at: Optional[datetime] = None


class Job(RaglineModel):
    id: str
    document_id: str
    status: str  # queued | processing | succeeded | failed
    attempts: int = 0
    error: Optional[str] = None
    document_status: Optional[str] = None
    created_at: Optional[datetime] = None
    updated_at: Optional[datetime] = None


# ---- search and chat -------------------------------------------------------------------------------
class SearchPayload(RaglineModel):
    document_id: str
    text: str
    tenant_id: Optional[str] = None
    kb_id: Optional[str] = None
    title: Optional[str] = None
    filename: Optional[str] = None
    page: Optional[int] = None
    section: Optional[str] = None
    metadata: Dict[str, Any] = Field(default_factory=dict)


class SearchHit(RaglineModel):
    id: str
    score: float
    payload: SearchPayload


class SearchResponse(RaglineModel):
    items: List[SearchHit]
    total_found: int
    latency_ms: float


class Source(RaglineModel):
    """A passage an answer cites as ``[n]``: ``sources[n - 1]``."""

    id: str
    score: float
    document_id: str
    title: Optional[str] = None
    filename: Optional[str] = None
    page: Optional[int] = None
    section: Optional[str] = None
    text: str


class Usage(RaglineModel):
    input_tokens: int = 0
    output_tokens: int = 0


class Timings(RaglineModel):
    embed_ms: float = 0.0
    retrieve_ms: float = 0.0
    generate_ms: float = 0.0


class ChatResponse(RaglineModel):
    answer: str
    sources: List[Source]
    usage: Usage
    model: str
    latency_ms: float
    query_id: str
    confidence: float
    grounded: bool
    cached: bool = False
    query_time_ms: float = 0.0
    timings: Timings = Field(default_factory=Timings)
    sources_used: List[str] = Field(default_factory=list)


# ---- knowledge bases -------------------------------------------------------------------------------
class KnowledgeBase(RaglineModel):
    id: str
    name: str
    description: Optional[str] = None
    chunk_size: Optional[int] = None
    chunk_overlap: Optional[int] = None
    status: str = "active"  # active | deleting
    document_count: int = 0
    chunk_count: int = 0
    created_at: Optional[datetime] = None
    updated_at: Optional[datetime] = None


class KnowledgeBasePage(RaglineModel):
    knowledge_bases: List[KnowledgeBase]
    next_cursor: Optional[str] = None


# ---- webhooks --------------------------------------------------------------------------------------
class Webhook(RaglineModel):
    id: str
    url: str
    events: List[str]
    description: Optional[str] = None
    active: bool = True
    disabled_reason: Optional[str] = None
    created_at: Optional[datetime] = None
    updated_at: Optional[datetime] = None


class WebhookCreated(Webhook):
    secret: str  # whsec_…: shown only in this answer and at rotation


class WebhookList(RaglineModel):
    webhooks: List[Webhook]


class WebhookSecret(RaglineModel):
    secret: str


class TestSent(RaglineModel):
    __test__ = False  # not a pytest test class
    event_id: str
    delivery_id: str


class DeliveryAttempt(RaglineModel):
    at: datetime
    status_code: Optional[int] = None
    error: Optional[str] = None
    latency_ms: float = 0.0
    response_body: str = ""


class Delivery(RaglineModel):
    id: str
    event_id: str
    event_type: str
    status: str  # pending | succeeded | failed
    attempts: List[DeliveryAttempt] = Field(default_factory=list)
    next_attempt_at: Optional[datetime] = None
    created_at: Optional[datetime] = None


class DeliveryPage(RaglineModel):
    deliveries: List[Delivery]
    next_cursor: Optional[str] = None


class WebhookEvent(RaglineModel):
    """A delivery's body: ``{"id", "type", "timestamp", "tenant_id", "data"}`` (see docs/events.md)."""

    id: str
    type: str
    timestamp: datetime
    tenant_id: str
    data: Dict[str, Any] = Field(default_factory=dict)


# ---- keys and audit --------------------------------------------------------------------------------
class ApiKey(RaglineModel):
    id: str
    name: Optional[str] = None
    prefix: str
    scopes: List[str]  # ingest | search | chat | admin
    created_at: Optional[datetime] = None
    expires_at: Optional[datetime] = None
    revoked_at: Optional[datetime] = None
    last_used_at: Optional[datetime] = None
    rate_limit_per_minute: Optional[int] = None
    replaced_by: Optional[str] = None
    rotated_from: Optional[str] = None


class ApiKeyCreated(ApiKey):
    key: str  # rl_…: the secret, shown only in this answer


class ApiKeyPage(RaglineModel):
    keys: List[ApiKey]
    next_cursor: Optional[str] = None


class ChatTokens(RaglineModel):
    input_tokens: int = 0
    output_tokens: int = 0


class KeyUsage(RaglineModel):
    key_id: str
    period_days: int
    since: datetime
    requests: int
    errors: int
    by_route: Dict[str, int] = Field(default_factory=dict)
    unique_ips: int = 0
    chat_tokens: ChatTokens = Field(default_factory=ChatTokens)
    last_used_at: Optional[datetime] = None


class AuditEvent(RaglineModel):
    id: str
    at: datetime
    key_id: str
    action: str
    method: str
    path: str
    target: Optional[str] = None
    ip: Optional[str] = None
    outcome: int  # the HTTP status answered


class AuditPage(RaglineModel):
    events: List[AuditEvent]
    next_cursor: Optional[str] = None


# ---- history, ratings, analytics -------------------------------------------------------------------
class HistoryItem(RaglineModel):
    query_id: str
    question: str
    timestamp: datetime
    confidence: float
    rating: Optional[int] = None
    query_time_ms: float = 0.0
    answer: Optional[str] = None  # only with include_answer=True


class HistoryPage(RaglineModel):
    queries: List[HistoryItem]
    total: int
    limit: int
    offset: int


class QuerySource(RaglineModel):
    document_id: str
    page: Optional[int] = None
    score: float


class QueryDetail(HistoryItem):
    comment: Optional[str] = None
    sources: List[QuerySource] = Field(default_factory=list)
    filters: Dict[str, Any] = Field(default_factory=dict)
    kb_id: Optional[str] = None
    model: Optional[str] = None
    usage: Usage = Field(default_factory=Usage)
    cached: bool = False
    answered: bool = True
    timings: Timings = Field(default_factory=Timings)
    key_id: Optional[str] = None


class QueryDeleted(RaglineModel):
    query_id: str


class RatingResult(RaglineModel):
    message: str
    query_id: str
    rating: int


class QuestionCount(RaglineModel):
    question: str
    count: int


class DocumentCount(RaglineModel):
    document_id: str
    title: Optional[str] = None
    reference_count: int


class PopularReport(RaglineModel):
    period_days: int
    top_questions: List[QuestionCount]
    top_documents: List[DocumentCount]


class DayCount(RaglineModel):
    date: calendar_date
    count: int


class LatencySummary(RaglineModel):
    p50: Optional[float] = None
    p95: Optional[float] = None


class UsageReport(RaglineModel):
    period_days: int
    total_questions: int
    questions_per_day: List[DayCount] = Field(default_factory=list)
    latency_ms: LatencySummary = Field(default_factory=LatencySummary)
    average_rating: Optional[float] = None
    rated_questions: int = 0
    unanswered_share: float = 0.0
    cached_share: float = 0.0


# ---- health ----------------------------------------------------------------------------------------
class Health(RaglineModel):
    status: str


class DetailedHealth(RaglineModel):
    status: str  # healthy | unhealthy
    dependencies: Dict[str, str] = Field(default_factory=dict)
    system: Dict[str, Any] = Field(default_factory=dict)
