"""Domain records and the request/response shapes of the HTTP API (see API.md)."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

TENANT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("query must not be blank")
    return value


QueryText = Annotated[str, Field(min_length=1, max_length=4000), AfterValidator(_not_blank)]


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    """Opaque, time-ordered id: listing by id is listing by creation time."""
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}"


class DocumentStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    INDEXED = "indexed"
    FAILED = "failed"
    DELETING = "deleting"


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Scope(StrEnum):
    INGEST = "ingest"
    SEARCH = "search"
    CHAT = "chat"
    ADMIN = "admin"


ALL_SCOPES = frozenset(Scope)


class Document(BaseModel):
    id: str
    tenant_id: str
    kb_id: str = "default"
    title: str | None = None
    filename: str | None = None
    content_type: str
    status: DocumentStatus = DocumentStatus.QUEUED
    chunk_count: int = 0
    page_count: int = 0
    size_bytes: int = 0
    content_sha256: str
    external_id: str | None = None
    source: str = "api"
    metadata: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    blob_key: str
    chunk_size: int
    chunk_overlap: int
    version: int = 1
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)
    indexed_at: str | None = None

    def public(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"tenant_id", "blob_key", "chunk_size", "chunk_overlap", "version"})
        if data["error"] is None:
            data.pop("error")
        return data


class Job(BaseModel):
    id: str
    tenant_id: str
    document_id: str
    status: JobStatus = JobStatus.QUEUED
    attempts: int = 0
    error: str | None = None
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"tenant_id"})


class ApiKey(BaseModel):
    id: str
    tenant_id: str
    key_hash: str
    prefix: str
    scopes: frozenset[Scope]
    name: str | None = None
    created_at: str = Field(default_factory=utcnow)
    expires_at: str | None = None
    revoked_at: str | None = None
    # Rotation makes a new key; the old one keeps working until its grace period ends (its expires_at).
    replaced_by: str | None = None
    rotated_from: str | None = None
    # None: the server's setting (RAGLINE_RATE_LIMIT_PER_MINUTE) as it is when a request is served.
    rate_limit_per_minute: int | None = None

    def public(self, last_used_at: str | None = None) -> dict[str, Any]:
        """What the Keys API shows: never the secret nor its hash."""
        data = self.model_dump(mode="json", exclude={"tenant_id", "key_hash"})
        data["scopes"] = sorted(data["scopes"])
        data["last_used_at"] = last_used_at
        return data


class Principal(BaseModel):
    """Who is calling: the tenant and scopes bound to the presented key."""

    model_config = ConfigDict(frozen=True)
    key_id: str
    tenant_id: str
    scopes: frozenset[Scope]
    # The key's own limit, for the rate limiter (None: the server's default).
    rate_limit_per_minute: int | None = None

    def can(self, scope: Scope) -> bool:
        return scope in self.scopes or Scope.ADMIN in self.scopes


class IndexedChunk(BaseModel):
    """A chunk with everything the vector index stores beside its embedding."""

    id: str
    tenant_id: str
    document_id: str
    text: str
    payload: dict[str, Any]


class SearchHit(BaseModel):
    id: str
    score: float
    payload: dict[str, Any]


SearchMode = Literal["hybrid", "semantic", "keyword"]


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: QueryText
    filters: dict[str, Any] = Field(default_factory=dict)
    limit: int = Field(default=10, ge=1, le=100)
    mode: SearchMode = "hybrid"
    score_threshold: float = Field(default=0.0, ge=0.0, le=1.0)


class SearchResponse(BaseModel):
    items: list[SearchHit]
    total_found: int
    latency_ms: float


class ChatTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]
    content: str = Field(min_length=1, max_length=20_000)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: QueryText
    filters: dict[str, Any] = Field(default_factory=dict)
    limit: int | None = Field(default=None, ge=1, le=50)
    model: str | None = Field(default=None, max_length=200)
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    history: list[ChatTurn] = Field(default_factory=list, max_length=50)
    mode: SearchMode = "hybrid"


class Source(BaseModel):
    id: str
    score: float
    document_id: str
    title: str | None
    filename: str | None
    page: int | None
    section: str | None = Field(
        default=None, description="The heading the passage sits under, where the parser found one"
    )
    text: str


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0


class Timings(BaseModel):
    """Milliseconds per stage of one answer; 0 for a stage not run (e.g. on a cache hit)."""

    embed_ms: float = 0.0
    retrieve_ms: float = 0.0
    generate_ms: float = 0.0


class ChatResponse(BaseModel):
    answer: str
    sources: list[Source]
    usage: Usage
    model: str
    latency_ms: float
    query_id: str
    confidence: float = Field(
        ge=0.0,
        le=1.0,
        description="How well the best passages match the question, from their cosine similarity and the share of "
        "the question's words they contain (absolute, not normalised per query); below the answer floor "
        "the answer says the documents do not contain it",
    )
    grounded: bool = Field(description="Whether the answer cites at least one of `sources`")
    cached: bool = Field(default=False, description="Answered from the answer cache (no model call)")
    query_time_ms: float = Field(default=0.0, description="Total time to answer, as recorded in the history")
    timings: Timings = Field(default_factory=Timings, description="Milliseconds per stage; 0 for a stage not run")
    sources_used: list[str] = Field(default_factory=list, description="The cited files' names, each once")


class TextDocumentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=20_000_000)
    title: str | None = Field(default=None, max_length=500)
    metadata: dict[str, Any] = Field(default_factory=dict)
    external_id: str | None = Field(default=None, min_length=1, max_length=500)
    kb_id: str | None = Field(default=None, pattern=TENANT_ID_PATTERN)
    chunk_size: int | None = None
    chunk_overlap: int | None = None


class DeleteByFilterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filters: dict[str, Any]
    all: bool = Field(
        default=False, description="Delete every document when filters are empty (empty filters without it are a 400)"
    )


class UploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filename: str = Field(min_length=1, max_length=500)
    content_type: str | None = Field(default=None, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)
    kb_id: str | None = Field(default=None, pattern=TENANT_ID_PATTERN)


# ---- response bodies (API.md) -------------------------------------------------------------------
# What the routes answer, for the served OpenAPI. Field order follows the bodies the routes build, so a
# route that answers through one of these models keeps its keys in the same order.


class HealthResponse(BaseModel):
    """``GET /health``."""

    status: Literal["healthy"]


class SystemFigures(BaseModel):
    memory_usage: float = Field(description="Percent of the host's memory in use")
    cpu_usage: float = Field(description="Percent of CPU used by the host since the previous health check")
    process_rss_mb: float = Field(description="The server process's resident memory, in MB")


class TenantIndexFigures(BaseModel):
    tenant_chunks: int | None = Field(
        description="The caller's tenant's chunks in the vector index (null when the index did not answer)"
    )


class HealthDetailedResponse(BaseModel):
    """``GET /health/detailed``: 200 when every dependency is healthy, else 503 with this same body."""

    status: Literal["healthy", "unhealthy"]
    dependencies: dict[str, str] = Field(
        description="Each dependency (metadata_store, blob_store, vector_index, embedder, answer_model) and its "
        'state: "healthy" (answer_model: "healthy (<model>)") or "unhealthy: <reason>"'
    )
    system: SystemFigures
    index: TenantIndexFigures = Field(description="The caller's tenant's figures only, never the server's")


class DocumentOut(BaseModel):
    """A document as the API shows it (``Document.public()``): the same in a list and alone."""

    id: str
    kb_id: str
    title: str | None
    filename: str | None
    content_type: str
    status: DocumentStatus
    chunk_count: int
    page_count: int = Field(description="0 for formats without pages")
    size_bytes: int
    content_sha256: str
    external_id: str | None
    source: str = Field(description='How it came in: "api", "inbox" (the drop folder) or "cli"')
    metadata: dict[str, Any]
    error: str | None = Field(default=None, description="Why it failed; absent when there is no error")
    created_at: str
    updated_at: str
    indexed_at: str | None


class DocumentList(BaseModel):
    documents: list[DocumentOut]
    next_cursor: str | None = Field(description="null on the last page")


class JobOut(BaseModel):
    """An ingestion job (``Job.public()``) and its document's status."""

    id: str
    document_id: str
    status: JobStatus
    attempts: int
    error: str | None
    created_at: str
    updated_at: str
    document_status: DocumentStatus | None = Field(description="null once the document is gone")


class UploadResponse(BaseModel):
    """``POST /v1/kb/uploads``: where to PUT the file's bytes."""

    document_id: str
    upload_url: str = Field(description="PUT the file's bytes here before it expires")
    expires_in: int = Field(description="Seconds the URL stays valid")
    method: Literal["PUT"]
    max_bytes: int = Field(description="The largest file the URL accepts")


class AcceptedDocument(BaseModel):
    job_id: str | None = Field(
        description="The ingestion job; for a duplicate, the existing document's latest job (null if it has none)"
    )
    document_id: str
    document_status: DocumentStatus
    duplicate: bool = Field(description="The tenant already had these bytes: this is the existing document")


class UploadAccepted(BaseModel):
    """202 for one document (a JSON text, a single multipart ``file``, or a presigned upload's bytes)."""

    status: Literal["accepted"]
    data: AcceptedDocument


class BatchFileAccepted(BaseModel):
    filename: str | None
    document_id: str
    job_id: str | None
    status: DocumentStatus
    duplicate: bool


class BatchFileRejected(BaseModel):
    filename: str | None
    document_id: None
    status: Literal["rejected"]
    error: str = Field(description="Why the file was refused")
    code: int = Field(description="The HTTP status the file alone would have had")


class BatchUploadResponse(BaseModel):
    """202 for a batch (several files, or any sent as ``files``) in which at least one file was accepted;
    when none is, the answer is an error whose ``details`` is this body."""

    successful: int
    failed: int
    documents: list[BatchFileAccepted | BatchFileRejected] = Field(description="One per file, in the order sent")


class DocumentDeletedData(BaseModel):
    document_id: str


class DocumentDeleted(BaseModel):
    status: Literal["success"]
    data: DocumentDeletedData


class DeleteByFilterData(BaseModel):
    deleted_documents: int
    filters: dict[str, Any] = Field(description="The filters applied, with the caller's tenant_id filled in")


class DeleteByFilterResponse(BaseModel):
    status: Literal["success"]
    data: DeleteByFilterData
