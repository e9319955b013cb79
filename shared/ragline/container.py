"""Wires adapters to services once per process, from settings. Nothing else builds adapters."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cached_property, lru_cache, partial
from typing import TYPE_CHECKING, Any, Protocol

# Adapters are imported where they are built: a deployed function never loads faiss or SQLite
# code, and one that does not embed never loads onnxruntime (cold start, package size).
from ragline.activity import AuditTrail, UsageRecorder
from ragline.chat.extractive import ExtractiveAnswerer
from ragline.chat.service import ChatBounds, ChatService
from ragline.config import Settings, get_settings
from ragline.errors import ConfigurationError, DependencyUnavailable
from ragline.events import OutboxEventBus
from ragline.ingest.messages import INBOX_PREFIX, UPLOADS_PREFIX, IngestMessageHandler
from ragline.ingest.service import IngestService
from ragline.ingest.uploads import S3UploadUrls, SignedUploadUrls, UploadService, UploadUrls, load_secret
from ragline.insight.service import AnswerCache, InsightService
from ragline.keys import KeyService
from ragline.knowledge_bases import KnowledgeBaseService, PurgeScheduler, hidden_from_search
from ragline.models import ApiKey
from ragline.ports import (
    AnswerModel,
    AuditLog,
    BlobStore,
    ConnectionPush,
    ConnectionStore,
    DeliveryScheduler,
    Embedder,
    EventBus,
    HistoryStore,
    HoldsConnections,
    IdempotencyStore,
    JobQueue,
    KnowledgeBaseStore,
    MetadataStore,
    PresigningBlobStore,
    RateLimiter,
    UsageStore,
    VectorIndex,
    WebhookStore,
)
from ragline.retrieval.service import SearchService

if TYPE_CHECKING:
    from ragline.chat.connections import ConnectionChat
    from ragline.webhooks.service import WebhookService

log = logging.getLogger("ragline.container")


class ActivityStore(UsageStore, AuditLog, Protocol):
    """Key usage and the audit log live together (one SQLite file; the table)."""


class Container:
    """Every adapter and service of one process, each built on first use and then kept.

    Lazy, so a Lambda function builds only what it touches (the authorizer never loads the
    embedding model); ``warm()`` builds the rest up front for a long-running server.
    """

    def __init__(self, settings: Settings, *, snapshot_interval_seconds: float = 30.0) -> None:
        self.settings = settings
        self.snapshot_interval_seconds = snapshot_interval_seconds
        if settings.backend == "local":
            settings.data_dir.mkdir(parents=True, exist_ok=True)

    # ---- state --------------------------------------------------------------------------------------
    @cached_property
    def store(self) -> MetadataStore:
        if self.settings.backend == "aws":
            from ragline.adapters.aws.dynamodb.store import DynamoMetadataStore

            return DynamoMetadataStore(self.settings.table_name)
        from ragline.adapters.local.sqlite_store import SqliteMetadataStore

        return SqliteMetadataStore(self.settings.metadata_db)

    @cached_property
    def queue(self) -> JobQueue:
        if self.settings.backend == "aws":
            from ragline.adapters.aws.dynamodb.store import DynamoMetadataStore
            from ragline.adapters.aws.sqs_queue import SqsJobQueue

            assert isinstance(self.store, DynamoMetadataStore)
            return SqsJobQueue(self.store, _required(self.settings.ingest_queue_url, "RAGLINE_INGEST_QUEUE_URL"))
        from ragline.adapters.local.sqlite_store import SqliteMetadataStore

        assert isinstance(self.store, SqliteMetadataStore)
        return self.store  # SQLite holds the queue beside the documents, in the same transactions

    def _bucket_store(self, prefix: str) -> PresigningBlobStore:
        from ragline.adapters.aws.s3_blobs import S3BlobStore

        return S3BlobStore(_required(self.settings.documents_bucket, "RAGLINE_DOCUMENTS_BUCKET"), prefix)

    @cached_property
    def blobs(self) -> BlobStore:
        if self.settings.backend == "aws":
            return self._bucket_store("originals/")
        from ragline.adapters.local.filesystem import FilesystemBlobStore

        return FilesystemBlobStore(self.settings.blob_dir)

    @cached_property
    def inbox_objects(self) -> BlobStore | None:
        """The S3 drop folder (``inbox/<tenant>/…``); locally the inbox is a watched directory instead."""
        return self._bucket_store(INBOX_PREFIX) if self.settings.backend == "aws" else None

    @cached_property
    def upload_drop(self) -> PresigningBlobStore | None:
        """Where presigned uploads land (``uploads/<tenant>/<document>/<file>``) on AWS."""
        return self._bucket_store(UPLOADS_PREFIX) if self.settings.backend == "aws" else None

    @cached_property
    def upload_claims(self) -> BlobStore | None:
        """What each presigned upload was granted for, read when its bytes arrive (AWS)."""
        return self._bucket_store("upload-claims/") if self.settings.backend == "aws" else None

    @cached_property
    def events(self) -> EventBus:
        if self.settings.backend == "aws":
            return self.outbox_events
        from ragline.adapters.local.events import InProcessEventBus

        bus = InProcessEventBus()
        # Every event, from the server or from `ragline ingest`, becomes its webhook deliveries (pending
        # in SQLite until the server's dispatcher sends them). Deployed, the SNS topic fans them out.
        bus.subscribe(self._fan_out_to_webhooks)
        return bus

    def _fan_out_to_webhooks(self, event: dict[str, Any]) -> None:
        try:
            self.webhooks.fan_out(event)
        except DependencyUnavailable as exc:
            # The flow that published must go on; the event is in the log line for an operator.
            log.error("webhook deliveries for event %s %s not recorded: %s", event["type"], event["id"], exc)

    @cached_property
    def outbox_events(self) -> OutboxEventBus:
        """AWS backend: SNS, with the events it would not take held in the table for the events
        function to redeliver (the in-process bus of the local backend cannot be down)."""
        from ragline.adapters.aws.dynamodb.store import DynamoMetadataStore
        from ragline.adapters.aws.sns_events import SnsEventBus

        assert isinstance(self.store, DynamoMetadataStore)  # the table holds them beside the documents
        topic = SnsEventBus(_required(self.settings.events_topic_arn, "RAGLINE_EVENTS_TOPIC_ARN"))
        return OutboxEventBus(topic, self.store)

    # ---- models and vectors -------------------------------------------------------------------------
    @cached_property
    def embedder(self) -> Embedder:
        return build_embedder(self.settings)

    @cached_property
    def index(self) -> VectorIndex:
        # The dimension comes from the settings, so opening the index never loads the model.
        return build_vector_index(
            self.settings, self.settings.embedding_dimension, snapshot_interval_seconds=self.snapshot_interval_seconds
        )

    @cached_property
    def answerer(self) -> AnswerModel:
        return build_answerer(self.settings, lambda: self.embedder)

    # ---- services -------------------------------------------------------------------------------------
    @cached_property
    def ingest(self) -> IngestService:
        return IngestService(
            self.settings,
            self.store,
            self.queue,
            self.blobs,
            lambda: self.index,
            lambda: self.embedder,
            self.events,
            on_corpus_change=lambda tenant_id, kb_id: self.insight.corpus_changed(tenant_id, kb_id),
            knowledge_bases=_LazyKnowledgeBases(lambda: self.knowledge_bases),
        )

    @cached_property
    def search(self) -> SearchService:
        return SearchService(
            self.index,
            self.embedder,
            hybrid_candidates=self.settings.hybrid_candidates,
            fusion=self.settings.fusion(),
            # Only the store: a search function builds no ingest service nor purge queue for it.
            hidden=partial(hidden_from_search, self.kb_store),
        )

    # ---- knowledge bases ------------------------------------------------------------------------------
    @cached_property
    def kb_store(self) -> KnowledgeBaseStore:
        # Beside the documents (the same SQLite file; the same table), whose counts a KB shows.
        if self.settings.backend == "aws":
            from ragline.adapters.aws.dynamodb.store import DynamoMetadataStore

            assert isinstance(self.store, DynamoMetadataStore)
            return self.store
        from ragline.adapters.local.sqlite_store import SqliteMetadataStore

        assert isinstance(self.store, SqliteMetadataStore)
        return self.store

    @cached_property
    def kb_purges(self) -> PurgeScheduler:
        if self.settings.backend == "aws":
            from ragline.adapters.aws.sqs_purges import SqsPurgeScheduler

            return SqsPurgeScheduler(_required(self.settings.ingest_queue_url, "RAGLINE_INGEST_QUEUE_URL"))
        from ragline.knowledge_bases import ThreadPurgeScheduler

        return ThreadPurgeScheduler(lambda tenant_id, kb_id: self.knowledge_bases.purge(tenant_id, kb_id))

    @cached_property
    def knowledge_bases(self) -> KnowledgeBaseService:
        return KnowledgeBaseService(
            self.kb_store,
            self.events,
            self.ingest.check_chunking,
            self.kb_purges,
            lambda: self.ingest,
            lambda: self.index,
            max_per_tenant=self.settings.max_knowledge_bases_per_tenant,
        )

    @cached_property
    def chat(self) -> ChatService:
        return ChatService(
            self.search,
            self.answerer,
            self.events,
            ChatBounds(self.settings.chat_models, self.settings.chat_max_tokens_limit),
            default_limit=self.settings.chat_default_limit,
            answer_floor=self.settings.chat_answer_floor,
            insight=self.insight,
            cache=AnswerCache(self.settings.answer_cache_entries) if self.settings.answer_cache_enabled else None,
        )

    # ---- the WebSocket chat, deployed (locally `ragline serve` holds each socket itself) ------------------
    @cached_property
    def chat_connections(self) -> ConnectionStore:
        if self.settings.backend != "aws":
            raise ConfigurationError("WebSocket connections are recorded only on the aws backend")
        from ragline.adapters.aws.dynamodb.connections import DynamoConnectionStore

        return DynamoConnectionStore(self.settings.table_name)

    @cached_property
    def connection_push(self) -> ConnectionPush:
        from ragline.adapters.aws.websocket_push import ApiGatewayConnectionPush

        return ApiGatewayConnectionPush(_required(self.settings.ws_callback_url, "RAGLINE_WS_CALLBACK_URL"))

    @cached_property
    def connection_chat(self) -> ConnectionChat:
        from ragline.chat.connections import ConnectionChat, ConnectionChatSettings

        return ConnectionChat(
            self.chat,
            self.chat_connections,
            self.store,
            self.rate_limiter,
            self.usage,
            ConnectionChatSettings(
                auth_timeout_seconds=self.settings.ws_auth_timeout_seconds,
                max_message_bytes=self.settings.max_json_body_bytes,
                default_rate_limit=self.settings.rate_limit_per_minute,
            ),
        )

    # ---- history, analytics, the answer cache's scope ----------------------------------------------
    @cached_property
    def history_store(self) -> HistoryStore:
        if self.settings.backend == "aws":
            from ragline.adapters.aws.dynamodb.history import DynamoHistoryStore

            return DynamoHistoryStore(self.settings.table_name, retention_days=self.settings.history_retention_days)
        from ragline.adapters.local.sqlite_history import SqliteHistoryStore

        return SqliteHistoryStore(self.settings.history_db, retention_days=self.settings.history_retention_days)

    @cached_property
    def insight(self) -> InsightService:
        return InsightService(
            self.history_store,
            retention_days=self.settings.history_retention_days,
            store_answers=self.settings.history_store_answers,
            index=lambda: self.index,
        )

    @cached_property
    def uploads(self) -> UploadService:
        urls: UploadUrls
        if self.upload_drop is not None and self.upload_claims is not None:
            urls = S3UploadUrls(self.upload_drop, self.upload_claims)
        else:  # local: this server signs its own upload URLs
            urls = SignedUploadUrls(load_secret(self.settings.data_dir / "upload-secret"))
        return UploadService(self.ingest, urls)

    @cached_property
    def ingest_messages(self) -> IngestMessageHandler:
        """What the ingest function does with each SQS message (AWS backend)."""
        return IngestMessageHandler(
            self.settings,
            self.ingest,
            self.queue,
            self.store,
            inbox=self.inbox_objects,
            upload_drop=self.upload_drop,
            upload_claims=self.upload_claims,
            purge_kb=lambda tenant_id, kb_id: self.knowledge_bases.purge(tenant_id, kb_id),
        )

    # ---- webhooks ---------------------------------------------------------------------------------
    @cached_property
    def webhook_store(self) -> WebhookStore:
        if self.settings.backend == "aws":
            from ragline.adapters.aws.dynamodb.webhooks import DynamoWebhookStore

            return DynamoWebhookStore(
                self.settings.table_name, retention_days=self.settings.webhook_delivery_retention_days
            )
        from ragline.adapters.local.sqlite_webhooks import SqliteWebhookStore

        return SqliteWebhookStore(self.settings.webhooks_db)

    @cached_property
    def delivery_scheduler(self) -> DeliveryScheduler:
        if self.settings.backend == "aws":
            from ragline.adapters.aws.sqs_deliveries import SqsDeliveryScheduler

            return SqsDeliveryScheduler(_required(self.settings.webhook_queue_url, "RAGLINE_WEBHOOK_QUEUE_URL"))
        from ragline.webhooks.dispatcher import LocalDeliveryScheduler

        return LocalDeliveryScheduler()

    @cached_property
    def webhooks(self) -> WebhookService:
        from ragline.adapters.http_webhooks import HttpWebhookSender
        from ragline.webhooks.service import WebhookPolicy, WebhookService
        from ragline.webhooks.targets import SystemResolver

        settings = self.settings
        return WebhookService(
            WebhookPolicy(
                retry_seconds=settings.webhook_retry_seconds,
                allow_private_targets=settings.webhooks_allow_private_targets,
                disable_after_failed_events=settings.webhook_disable_after_failed_events,
            ),
            self.webhook_store,
            HttpWebhookSender(
                allow_private=settings.webhooks_allow_private_targets, timeout_seconds=settings.webhook_timeout_seconds
            ),
            self.delivery_scheduler,
            self.events,
            SystemResolver(),
        )

    # ---- idempotent writes ------------------------------------------------------------------------
    @cached_property
    def idempotency(self) -> IdempotencyStore:
        if self.settings.backend == "aws":
            from ragline.adapters.aws.dynamodb.idempotency import DynamoIdempotencyStore

            return DynamoIdempotencyStore(self.settings.table_name)
        from ragline.adapters.local.sqlite_idempotency import SqliteIdempotencyStore

        return SqliteIdempotencyStore(self.settings.idempotency_db)

    # ---- keys, usage, audit -------------------------------------------------------------------------
    @cached_property
    def activity(self) -> ActivityStore:
        if self.settings.backend == "aws":
            from ragline.adapters.aws.dynamodb.activity import DynamoActivityStore

            return DynamoActivityStore(self.settings.table_name)
        from ragline.adapters.local.sqlite_activity import SqliteActivityStore

        return SqliteActivityStore(self.settings.activity_db)

    @cached_property
    def usage(self) -> UsageRecorder:
        return UsageRecorder(self.activity, flush_seconds=self.settings.usage_flush_seconds)

    @cached_property
    def audit(self) -> AuditTrail:
        return AuditTrail(self.activity)

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        if self.settings.backend == "aws":  # one counter per key and window for every Lambda container
            from ragline.adapters.aws.dynamodb.rate_limits import DynamoRateLimiter

            return DynamoRateLimiter(self.settings.table_name)
        from ragline.adapters.local.memory_rate_limits import InMemoryRateLimiter

        return InMemoryRateLimiter()

    @cached_property
    def keys(self) -> KeyService:
        on_created = None
        usage_plan_id = self.settings.usage_plan_id
        if self.settings.backend == "aws" and usage_plan_id:
            from ragline.adapters.aws.api_gateway import add_usage_plan_key

            def on_created(key: ApiKey, plaintext: str) -> None:
                # Deployed, API Gateway checks the key before the authorizer does: it must know the new secret.
                add_usage_plan_key(usage_plan_id, name=f"ragline-{key.tenant_id}-{key.id}", value=plaintext)

        return KeyService(self.store, self.usage.last_used, on_created)

    def warm(self) -> Container:
        """Build everything now: a server should pay for the model load at start, not on a request."""
        for member in (
            "store",
            "queue",
            "blobs",
            "events",
            "embedder",
            "index",
            "answerer",
            "ingest",
            "search",
            "chat",
            "rate_limiter",  # before the first requests race to build it (in-memory: one set of counters)
        ):
            getattr(self, member)
        return self

    def close(self) -> None:
        if "usage" in self.__dict__:  # the counts not written yet
            self.usage.close()
        if "index" in self.__dict__:  # never build the index just to close it
            self.index.close()

    def after_restore(self) -> None:
        """Lambda SnapStart resumed this process from a snapshot of its init, taken on another
        machine: no connection opened then may be reused. Each reopens on its next call."""
        if self.settings.backend == "aws":
            from ragline.adapters.aws import clients

            clients.close_connections()
        for built in list(vars(self).values()):  # only what init built: nothing is built here
            if isinstance(built, HoldsConnections):
                built.drop_connections()


class _LazyKnowledgeBases:
    """The KB service for the ingest service, which the KB service itself depends on (for its purge)."""

    def __init__(self, build: Callable[[], KnowledgeBaseService]) -> None:
        self._build = build

    def for_upload(self, tenant_id: str, kb_id: str) -> Any:
        return self._build().for_upload(tenant_id, kb_id)


def _required(value: str | None, variable: str) -> str:
    if not value:
        raise ConfigurationError(f"{variable} must be set for the aws backend")
    return value


def build_embedder(settings: Settings) -> Embedder:
    if settings.embedding_provider == "bedrock":
        from ragline.adapters.aws.bedrock_embedder import BedrockEmbedder
        from ragline.adapters.local.wordpiece import WordPieceTokenizer, load_tokenizer

        # Chunks are still counted in the bundled model's word pieces: sizes mean the same on both.
        return BedrockEmbedder(
            settings.bedrock_model_id, settings.bedrock_dimension, tokenizer=WordPieceTokenizer(load_tokenizer())
        )
    from ragline.adapters.local.onnx_embedder import OnnxEmbedder

    return OnnxEmbedder(
        settings.embedding_model_path,
        batch_size=settings.embedding_batch_size,
        threads=settings.embedding_threads,
        fast_load=settings.embedding_fast_load,
    )


def build_answerer(settings: Settings, embedder: Callable[[], Embedder]) -> AnswerModel:
    """Claude when a key is set; else the extractive answerer, which scores sentences with the search model."""
    if settings.anthropic_api_key:
        from ragline.adapters.anthropic_claude import ClaudeAnswerModel

        return ClaudeAnswerModel(
            settings.anthropic_api_key,
            model=settings.chat_model,
            max_tokens=settings.chat_max_tokens,
            base_url=settings.anthropic_base_url,
            timeout=settings.chat_timeout_seconds,
            max_retries=settings.chat_max_retries,
        )
    return ExtractiveAnswerer(embedder())


def build_vector_index(settings: Settings, dimension: int, *, snapshot_interval_seconds: float = 30.0) -> VectorIndex:
    """OpenSearch when OPENSEARCH_URL is set (its index made if missing), else the embedded engine."""
    if settings.opensearch_url:
        from ragline.adapters.aws.opensearch.index import OpenSearchVectorIndex
        from ragline.adapters.aws.opensearch.settings import OpenSearchSettings

        remote = OpenSearchVectorIndex(OpenSearchSettings.from_settings(settings), dimension)
        remote.ensure_index()
        return remote
    from ragline.adapters.local.vector_engine import EmbeddedVectorIndex

    return EmbeddedVectorIndex(
        settings.vector_dir,
        dimension,
        hnsw_m=settings.hnsw_m,
        ef_construction=settings.hnsw_ef_construction,
        ef_search=settings.hnsw_ef_search,
        exact_search_max_candidates=settings.exact_search_max_candidates,
        snapshot_interval_seconds=snapshot_interval_seconds,
    )


def build_container(settings: Settings, *, snapshot_interval_seconds: float = 30.0) -> Container:
    """A container with everything built (servers, the CLI, benchmarks)."""
    return Container(settings, snapshot_interval_seconds=snapshot_interval_seconds).warm()


@lru_cache(maxsize=1)
def get_container() -> Container:
    """The process's container, built lazily from the environment (Lambda functions: once per container)."""
    return Container(get_settings())
