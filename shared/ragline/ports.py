"""The ports services depend on. Adapters (local, AWS, OpenSearch, Claude) implement them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # arrays only in signatures: the authorizer and the API's import never load numpy
    import numpy as np

from ragline.models import ApiKey, ChatTurn, Document, DocumentStatus, IndexedChunk, Job, Principal, Usage
from ragline.retrieval.filters import FilterNode

if TYPE_CHECKING:
    from ragline.activity import AuditEvent, UsageDay, UsageDelta
    from ragline.idempotency import IdempotencyRecord, StoredResponse
    from ragline.insight.models import DayStats, QueryRecord
    from ragline.knowledge_bases import KnowledgeBase
    from ragline.rate_limits import Window
    from ragline.webhooks.models import AttemptOutcome, DeliveryStatus, WebhookDelivery, WebhookEndpoint


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def delete(self, key: str) -> None: ...
    def exists(self, key: str) -> bool: ...
    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob under a key prefix ending in '/'; return how many went."""


class PresigningBlobStore(BlobStore, Protocol):
    """A blob store clients can write to directly, through a URL it signs (S3)."""

    def presign_put(self, key: str, content_type: str, expires_in: int) -> str: ...


class MetadataStore(Protocol):
    # documents
    def get_document(self, tenant_id: str, document_id: str) -> Document | None: ...
    def find_document(
        self, tenant_id: str, *, content_sha256: str | None = None, external_id: str | None = None
    ) -> Document | None: ...
    def update_document(self, tenant_id: str, document_id: str, **fields: Any) -> Document: ...
    def list_documents(
        self,
        tenant_id: str,
        *,
        status: DocumentStatus | None = None,
        kb_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Document], str | None]: ...
    def delete_document(self, tenant_id: str, document_id: str) -> None: ...
    def documents_with_status(self, status: DocumentStatus) -> list[Document]: ...
    def documents_from_source(self, source: str) -> list[Document]: ...
    # jobs
    def get_job(self, tenant_id: str, job_id: str) -> Job | None: ...
    # keys
    def create_key(self, key: ApiKey) -> None: ...
    def find_key(self, key_hash: str) -> ApiKey | None: ...
    def count_keys(self) -> int: ...
    def get_key(self, key_id: str) -> ApiKey | None:
        """By id, whatever its tenant (the caller checks it)."""
        ...

    def list_keys(self, tenant_id: str, *, limit: int, cursor: str | None) -> tuple[list[ApiKey], str | None]:
        """The tenant's keys in id (creation) order; the cursor to the next page, or None on the last."""
        ...

    def revoke_key(self, key_id: str, revoked_at: str) -> ApiKey | None:
        """Mark the key revoked (a revoked key keeps its first revocation time); None if there is none."""
        ...

    def rotate_key(self, old_id: str, expires_at: str, new: ApiKey) -> None:
        """In one write: store ``new``, and make the old key expire at ``expires_at`` and name ``new`` as
        its successor. Conflict if the old key is revoked, rotated already, or gone."""
        ...

    def ping(self) -> None: ...


class KnowledgeBaseStore(Protocol):
    """A tenant's knowledge bases (ragline.knowledge_bases). Every call names the tenant: another
    tenant's KB is simply absent. Names are unique per tenant."""

    def create_kb(self, kb: KnowledgeBase) -> None:
        """Conflict when the tenant has a KB with this id or name already."""
        ...

    def get_kb(self, tenant_id: str, kb_id: str) -> KnowledgeBase | None: ...
    def list_kbs(self, tenant_id: str) -> list[KnowledgeBase]:
        """All of the tenant's KBs, in id order (few per tenant: one page)."""
        ...

    def update_kb(self, tenant_id: str, kb_id: str, changes: dict[str, Any]) -> KnowledgeBase:
        """Set these fields (name, description, chunk_size, chunk_overlap); NotFound if it is gone,
        Conflict if the new name is another KB's."""
        ...

    def mark_kb_deleting(self, tenant_id: str, kb_id: str) -> KnowledgeBase | None:
        """Set status `deleting` (idempotent); None if there is no such KB."""
        ...

    def delete_kb(self, tenant_id: str, kb_id: str) -> None:
        """Remove the record and free its name (nothing if it is gone)."""
        ...

    def deleting_kb_ids(self, tenant_id: str) -> set[str]:
        """The tenant's KBs being deleted (read by every search: one cheap, consistent read)."""
        ...

    def kbs_deleting(self) -> list[KnowledgeBase]:
        """Every tenant's KBs being deleted (to resume their purge after a restart)."""
        ...

    def kb_document_counts(self, tenant_id: str) -> dict[str, tuple[int, int]]:
        """Per kb_id of the tenant's documents: (documents, chunks)."""
        ...


class UsageStore(Protocol):
    """Per key, per UTC day: requests, errors, routes, client IPs, chat tokens, last use."""

    def add_usage(self, deltas: Sequence[UsageDelta]) -> None:
        """Add these counts to the days' totals (counters only grow; concurrent writers add up)."""
        ...

    def usage_days(self, key_id: str, since_day: str) -> list[UsageDay]:
        """The key's days from ``since_day`` (YYYY-MM-DD) on."""
        ...

    def last_used(self, key_ids: Sequence[str]) -> dict[str, str]:
        """When each of these keys was last used (keys never used are absent)."""
        ...


class AuditLog(Protocol):
    """Append-only: nothing changes or removes an entry once written."""

    def append_audit(self, event: AuditEvent) -> None: ...
    def list_audit(self, tenant_id: str, *, limit: int, cursor: str | None) -> tuple[list[AuditEvent], str | None]:
        """The tenant's entries, newest first; the cursor to the next page, or None on the last."""
        ...


class JobQueue(Protocol):
    def enqueue(self, job: Job, document: Document | None = None) -> None:
        """Persist the document and its job together, so a crash cannot leave one without the other."""

    def claim(self, job_id: str | None = None, *, stale_before: str | None = None) -> Job | None:
        """Take the next queued job (or that one), marking it processing and counting the attempt.

        With ``stale_before`` (a timestamp), that job is also taken back when it has been
        `processing` since before then: its worker died (SQS redelivers a crashed invocation's
        message once the visibility timeout ends, and the claim it left must not block it).
        """

    def finish(self, job_id: str, *, error: str | None = None) -> None: ...
    def release(self, job_id: str, *, error: str) -> None:
        """Give a job back to the queue after a transient failure."""

    def latest_job_id(self, tenant_id: str, document_id: str) -> str | None: ...
    def recover_interrupted(self, max_attempts: int) -> list[Job]:
        """After a crash: re-queue jobs left processing; return the ones out of attempts."""


class VectorIndex(Protocol):
    """Chunks and their vectors. Every read names its tenant and only ever sees that tenant's
    chunks, whatever the filter says; the filter narrows within them."""

    dimension: int

    def replace_document(
        self, tenant_id: str, document_id: str, chunks: Sequence[IndexedChunk], vectors: np.ndarray
    ) -> None:
        """Swap a document's chunks for these, atomically for readers."""

    def delete_document(self, tenant_id: str, document_id: str) -> int: ...
    def search_vector(self, tenant_id: str, vector: np.ndarray, flt: FilterNode, k: int) -> list[tuple[str, float]]: ...
    def search_keyword(self, tenant_id: str, text: str, flt: FilterNode, k: int) -> list[tuple[str, float]]: ...
    def get_payloads(self, tenant_id: str, chunk_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The payloads of those of these chunks that are the tenant's (others are not found)."""

    def count(self, tenant_id: str, flt: FilterNode) -> int: ...
    def stats(self) -> dict[str, int]: ...
    def close(self) -> None: ...


class Tokenizer(Protocol):
    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Character spans of the model's word pieces in each text (no special tokens)."""


class Embedder(Protocol):
    model_name: str
    dimension: int
    tokenizer: Tokenizer

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...
    def embed_query(self, text: str) -> np.ndarray: ...


@dataclass
class AnswerPassage:
    number: int
    title: str | None
    page: int | None
    text: str
    # The start of the next page, when this passage ends its page mid-sentence (see ragline.chat.pages).
    continuation: str | None = None


@dataclass
class AnswerRequest:
    question: str
    passages: list[AnswerPassage]
    history: list[ChatTurn] = field(default_factory=list)
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass
class AnswerDelta:
    text: str


@dataclass
class AnswerDone:
    usage: Usage
    model: str


class AnswerModel(Protocol):
    name: str

    def stream(self, request: AnswerRequest) -> Iterator[AnswerDelta | AnswerDone]:
        """Yield text deltas, then exactly one AnswerDone. Raises DependencyUnavailable when the model is down."""


class EventBus(Protocol):
    def publish(self, event_type: str, tenant_id: str, data: dict[str, Any]) -> None: ...


class EventOutbox(Protocol):
    """Events that could not be published yet (whole envelopes), kept until they are."""

    def hold_event(self, event: dict[str, Any]) -> None: ...
    def held_events(self, limit: int) -> list[dict[str, Any]]:
        """The oldest held events first, at most ``limit``."""
        ...

    def release_event(self, event: dict[str, Any]) -> None: ...


class WebhookStore(Protocol):
    """Tenants' webhook endpoints and the delivery log. Every read and write names the tenant: another
    tenant's endpoint or delivery is simply absent."""

    def create_webhook(self, endpoint: WebhookEndpoint) -> None: ...
    def get_webhook(self, tenant_id: str, webhook_id: str) -> WebhookEndpoint | None: ...
    def list_webhooks(self, tenant_id: str) -> list[WebhookEndpoint]:
        """Oldest first (at most a tenant's endpoint limit, so one page)."""
        ...

    def save_webhook(self, endpoint: WebhookEndpoint) -> None:
        """Write the endpoint's settings and secrets; NotFound if it was deleted meanwhile."""
        ...

    def delete_webhook(self, tenant_id: str, webhook_id: str) -> bool:
        """Remove the endpoint and its delivery log; False if there was none."""
        ...

    def count_event_outcome(self, tenant_id: str, webhook_id: str, *, failed: bool) -> int:
        """One more event whose deliveries all failed (``failed``), or a success (the run resets to 0):
        the consecutive failed events now, atomically against concurrent deliveries."""
        ...

    def disable_webhook(self, tenant_id: str, webhook_id: str, reason: str) -> WebhookEndpoint | None:
        """Mark an active endpoint inactive with ``reason``: the endpoint if this call disabled it,
        None if it was already inactive or is gone (so only one caller announces it)."""
        ...

    def add_deliveries(self, deliveries: Sequence[WebhookDelivery]) -> list[WebhookDelivery]:
        """Store new deliveries; one whose id exists already (a redelivered event) is left as it is.
        Returns those this call added."""
        ...

    def get_delivery(self, tenant_id: str, webhook_id: str, delivery_id: str) -> WebhookDelivery | None: ...
    def save_delivery(self, delivery: WebhookDelivery) -> None: ...
    def list_deliveries(
        self, tenant_id: str, webhook_id: str, *, status: DeliveryStatus | None, limit: int, cursor: str | None
    ) -> tuple[list[WebhookDelivery], str | None]:
        """Newest first; the cursor to the next page, or None on the last."""
        ...


class DueDeliveries(Protocol):
    """The local dispatcher's view of the log: what is due, and old entries to drop (DynamoDB has TTL
    and the queue's delays instead)."""

    def due_deliveries(
        self, now: str, *, limit: int, per_webhook: int, skip_webhooks: Sequence[str], skip_ids: Sequence[str]
    ) -> list[WebhookDelivery]:
        """Pending deliveries whose next attempt is due, soonest first: at most ``per_webhook`` of any
        one endpoint, none of ``skip_webhooks`` (endpoints that are busy) nor ``skip_ids`` (in flight)."""
        ...

    def next_due_at(self) -> str | None: ...
    def prune_deliveries(self, created_before: str) -> int: ...


class WebhookSender(Protocol):
    def send(self, url: str, headers: dict[str, str], body: bytes) -> AttemptOutcome:
        """One POST of one attempt; never raises for what the endpoint or the network did."""
        ...


class DeliveryScheduler(Protocol):
    """Gets a pending delivery attempted after ``delay_seconds``: locally by waking the dispatcher
    (which reads due deliveries from the store), deployed by a delayed message on the deliveries queue."""

    def schedule(self, delivery: WebhookDelivery, delay_seconds: float) -> None: ...


class IdempotencyStore(Protocol):
    """Records of Idempotency-Keys (ragline.idempotency), by (scope, key). Times are epoch seconds,
    passed in by the caller."""

    def claim(
        self, scope: str, key: str, token: str, *, now: float, ttl_seconds: float, stale_after_seconds: float
    ) -> IdempotencyRecord | None:
        """Atomically claim the key for a request about to run: None when this call claimed it (an
        in-progress record with ``token``, expiring ``ttl_seconds`` from ``now``), else the live record
        that holds it. An expired record, or one in progress for ``stale_after_seconds`` or more (its
        process died), is taken over as if absent."""
        ...

    def complete(self, scope: str, key: str, token: str, fingerprint: str, response: StoredResponse) -> bool:
        """Keep the answer on the claim; False when the claim is no longer ``token``'s (taken over)."""
        ...

    def release(self, scope: str, key: str, token: str) -> None:
        """Drop the claim (the request failed and may be retried), if it is still ``token``'s."""
        ...


class RateLimiter(Protocol):
    """Request counters per API key and window (ragline.rate_limits): the one atomic step that makes
    a limit exact across threads, processes and Lambda containers."""

    def acquire(self, key_id: str, window: Window, limit: int) -> int | None:
        """Count one request of the key in ``window`` if fewer than ``limit`` are counted there: the
        count with it. None when the window already holds ``limit`` (nothing is counted)."""
        ...


class HistoryStore(Protocol):
    """The query history and the counters analytics read, maintained as queries are recorded (no
    scans), and each tenant's corpus version (the answer cache's scope). Every read and write names
    the tenant: another tenant's query is simply absent. ``now``/``delete_after`` are epoch seconds."""

    def add_query(self, record: QueryRecord, *, delete_after: int) -> None:
        """Keep the record until ``delete_after``, and count it: its day's questions, unanswered,
        cached and latency; its normalised question on that day; each cited document (that day and
        in total, with the time it was last referenced)."""
        ...

    def get_query(self, tenant_id: str, query_id: str, *, now: int) -> QueryRecord | None: ...
    def list_queries(self, tenant_id: str, *, limit: int, offset: int, now: int) -> tuple[list[QueryRecord], int]:
        """Newest first, and how many the tenant has (retention not yet passed)."""
        ...

    def delete_query(self, tenant_id: str, query_id: str) -> bool:
        """Remove the record (its question no longer counts among the popular ones); False if none."""
        ...

    def rate_query(
        self, tenant_id: str, query_id: str, rating: int, comment: str | None, *, now: int
    ) -> QueryRecord | None:
        """Set the rating (a new one replaces the old in its day's average); None if there is no such query."""
        ...

    def day_stats(self, tenant_id: str, since_day: str) -> list[DayStats]:
        """The tenant's days from ``since_day`` (YYYY-MM-DD) on, oldest first."""
        ...

    def question_counts(self, tenant_id: str, since_day: str, limit: int) -> list[tuple[str, int]]:
        """The most asked normalised questions since that day, most first (ties: the question's text)."""
        ...

    def document_counts(self, tenant_id: str, since_day: str, limit: int) -> list[tuple[str, str | None, int]]:
        """(document id, title, references) of the most cited documents since that day, most first."""
        ...

    def document_references(self, tenant_id: str, document_id: str) -> tuple[int, str | None]:
        """How many recorded answers cited the document, and when the latest did."""
        ...

    def corpus_version(self, tenant_id: str, kb_id: str | None = None) -> int:
        """A number that changes whenever the searchable documents of the tenant (``kb_id`` None) or
        of one of its knowledge bases change."""
        ...

    def bump_corpus(self, tenant_id: str, kb_id: str) -> None:
        """A document of that knowledge base changed: its version and the tenant's both move, together."""
        ...


@dataclass(frozen=True)
class ChatConnection:
    """A client's WebSocket connection to the deployed chat, as the functions know it (API Gateway holds the
    socket itself): when it opened, and whose key it authenticated with."""

    connection_id: str
    connected_at: float  # epoch seconds, API Gateway's connectedAt
    principal: Principal | None  # None: connected without a key, its first message must authenticate it


class AnswerState(Enum):
    RUNNING = "running"
    CANCELLED = "cancelled"  # the client sent a cancel while it ran
    GONE = "gone"  # the connection ended (the client left), or the answer's claim was taken over


class ConnectionStore(Protocol):
    """The deployed WebSocket chat's connections: each message of one connection may be handled by another
    function invocation, at the same time as others, so what they share is here, changed by conditional writes."""

    def open_connection(self, connection: ChatConnection, *, expires_at: float) -> None:
        """Record a connection ($connect); forgotten by ``expires_at`` (epoch seconds) at the latest."""
        ...

    def get_connection(self, connection_id: str) -> ChatConnection | None: ...

    def authenticate_connection(self, connection_id: str, principal: Principal) -> bool:
        """Bind the key to a connection still waiting for it; False when it is gone or already has one."""
        ...

    def start_answer(self, connection_id: str, answer_id: str, *, now: float, until: float) -> bool:
        """Claim the connection for one answer until ``until``; False while another answer holds it (or the
        connection is gone). A claim past its ``until`` (its invocation died) may be taken over."""
        ...

    def answer_state(self, connection_id: str, answer_id: str) -> AnswerState: ...

    def cancel_answer(self, connection_id: str) -> bool:
        """Mark the running answer cancelled; False when none runs."""
        ...

    def finish_answer(self, connection_id: str, answer_id: str) -> None:
        """Release the claim, if it is still this answer's."""
        ...

    def close_connection(self, connection_id: str) -> None: ...


class ConnectionPush(Protocol):
    """Messages to a client of the deployed WebSocket chat (API Gateway's @connections management API)."""

    def send(self, connection_id: str, text: str) -> None:
        """Send one text frame; ConnectionGone when the client has left."""
        ...

    def disconnect(self, connection_id: str) -> None:
        """Close the connection from the server's side (nothing happens if it is gone already)."""
        ...


@runtime_checkable
class HoldsConnections(Protocol):
    """An adapter with pooled network connections of its own (not the shared boto3 clients).

    After a Lambda SnapStart restore, sockets opened during init belong to the machine the snapshot
    was taken on: the adapter closes them, and opens new ones on its next call.
    """

    def drop_connections(self) -> None: ...
