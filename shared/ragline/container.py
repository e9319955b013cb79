"""Wires adapters to services once per process, from settings. Nothing else builds adapters."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ragline.adapters.local.events import InProcessEventBus
from ragline.adapters.local.filesystem import FilesystemBlobStore
from ragline.adapters.local.onnx_embedder import OnnxEmbedder
from ragline.adapters.local.sqlite_store import SqliteMetadataStore
from ragline.adapters.local.vector_engine import EmbeddedVectorIndex
from ragline.chat.extractive import ExtractiveAnswerer
from ragline.chat.service import ChatService
from ragline.config import Settings
from ragline.ingest.service import IngestService
from ragline.ports import AnswerModel, VectorIndex
from ragline.retrieval.service import SearchService

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    store: SqliteMetadataStore
    blobs: FilesystemBlobStore
    index: VectorIndex
    embedder: OnnxEmbedder
    events: InProcessEventBus
    answerer: AnswerModel
    ingest: IngestService
    search: SearchService
    chat: ChatService

    def close(self) -> None:
        self.index.close()


def build_answerer(settings: Settings) -> AnswerModel:
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
    return ExtractiveAnswerer()


def build_vector_index(settings: Settings, dimension: int, *, snapshot_interval_seconds: float = 30.0) -> VectorIndex:
    """OpenSearch when OPENSEARCH_URL is set (its index and pipeline made if missing), else the embedded engine."""
    if settings.opensearch_url:
        from ragline.adapters.aws.opensearch_index import OpenSearchSettings, OpenSearchVectorIndex

        remote = OpenSearchVectorIndex(OpenSearchSettings(url=settings.opensearch_url), dimension)
        remote.ensure_index()
        return remote
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
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteMetadataStore(settings.metadata_db)
    blobs = FilesystemBlobStore(settings.blob_dir)
    embedder = OnnxEmbedder(
        settings.embedding_model_path, batch_size=settings.embedding_batch_size, threads=settings.embedding_threads
    )
    index = build_vector_index(settings, embedder.dimension, snapshot_interval_seconds=snapshot_interval_seconds)
    events = InProcessEventBus()
    answerer = build_answerer(settings)
    search = SearchService(
        index, embedder, hybrid_candidates=settings.hybrid_candidates, semantic_weight=settings.hybrid_semantic_weight
    )
    return Container(
        settings=settings,
        store=store,
        blobs=blobs,
        index=index,
        embedder=embedder,
        events=events,
        answerer=answerer,
        ingest=IngestService(settings, store, store, blobs, index, embedder, events),
        search=search,
        chat=ChatService(search, answerer, events, default_limit=settings.chat_default_limit),
    )
