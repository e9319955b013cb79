from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ragline.chunks import chunk_id
from ragline.config import Settings
from ragline.container import Container
from ragline.models import Document
from ragline.worker import IngestWorker


class Local:
    """A local-mode container (SQLite, files, the embedded engine, the real ONNX model) and its worker."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        self.container = Container(Settings(data_dir=data_dir, **settings), snapshot_interval_seconds=0)
        self.worker = IngestWorker(self.container.ingest, self.container.queue, self.container.store)

    def ingest(self, data: bytes, filename: str, tenant: str = "t1") -> Document:
        """Upload and run the queued jobs to the end; the document as it ends."""
        accepted = self.container.ingest.accept(tenant, data, filename=filename)
        self.worker.drain()
        document = self.container.store.get_document(tenant, accepted.document.id)
        assert document is not None
        return document

    def chunk_texts(self, document: Document) -> list[str]:
        ids = [chunk_id(document.id, document.version, n) for n in range(document.chunk_count)]
        payloads = self.container.index.get_payloads(document.tenant_id, ids)
        return [payloads[i]["text"] for i in ids]


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Callable[..., Local]]:
    made: list[Local] = []

    def make(**settings: Any) -> Local:
        made.append(Local(tmp_path / f"data-{len(made)}", **settings))
        return made[-1]

    yield make
    for each in made:
        each.container.close()
