"""A local Ragline in-process for service tests: SQLite, files, the embedded engine, a hash embedder,
and every published event recorded."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragline.adapters.local.events import InProcessEventBus
from ragline.adapters.local.filesystem import FilesystemBlobStore
from ragline.adapters.local.sqlite_store import SqliteMetadataStore
from ragline.adapters.local.vector_engine import EmbeddedVectorIndex
from ragline.config import Settings
from ragline.ingest.messages import IngestMessageHandler
from ragline.ingest.service import IngestService
from ragline.ports import BlobStore
from ragline.worker import IngestWorker

DIM = 8


class WordTokenizer:
    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        return [[m.span() for m in re.finditer(r"\S+", text)] for text in texts]


class HashEmbedder:
    """Deterministic unit vectors from the text: no model to load."""

    model_name = "hash"
    dimension = DIM
    tokenizer = WordTokenizer()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=DIM) for t in texts]
        return np.array([r / np.linalg.norm(r) for r in rows], dtype=np.float32).reshape(len(texts), DIM)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


@dataclass
class World:
    settings: Settings
    store: SqliteMetadataStore
    index: EmbeddedVectorIndex
    embedder: HashEmbedder
    ingest: IngestService
    events: list[dict[str, Any]] = field(default_factory=list)

    def published(self, event_type: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == event_type]

    def worker(self) -> IngestWorker:
        return IngestWorker(self.ingest, self.store, self.store, max_attempts=self.settings.max_ingest_attempts)

    def handler(self, *, inbox: BlobStore | None = None) -> IngestMessageHandler:
        """The ingest function's message handler, with this world's store as its job queue."""
        return IngestMessageHandler(
            self.settings, self.ingest, self.store, self.store, inbox=inbox, upload_drop=None, upload_claims=None
        )

    def close(self) -> None:
        self.index.close()


def open_world(data_dir: Path, **settings: Any) -> World:
    config = Settings(data_dir=data_dir, chunk_size=32, chunk_overlap=4, **settings)
    store = SqliteMetadataStore(config.metadata_db)
    index = EmbeddedVectorIndex(config.vector_dir, DIM, snapshot_interval_seconds=0)
    embedder = HashEmbedder()
    bus = InProcessEventBus()
    blobs = FilesystemBlobStore(config.blob_dir)
    ingest = IngestService(config, store, store, blobs, lambda: index, lambda: embedder, bus)
    world = World(config, store, index, embedder, ingest)
    bus.subscribe(world.events.append)
    return world
