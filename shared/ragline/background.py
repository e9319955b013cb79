"""What a long-running server does besides answering requests: run ingestion.

Local backend: the ingest worker threads, the drop-folder watcher and the webhook dispatcher. The emulated AWS backend
(`ragline serve --backend aws`) builds its own from ragline_emulator.serve.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ragline.container import Container, build_embedder
from ragline.ingest.service import IngestService


class Service(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


@dataclass
class Background:
    services: list[Service]
    notify: Callable[[], None]  # "new work was queued": wakes the local worker at once

    def start(self) -> None:
        for service in self.services:
            service.start()

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()


def background_services(container: Container) -> Background:
    """The local backend's: the ingest worker threads, the drop-folder watcher, the webhook dispatcher."""
    from ragline.inbox import InboxSync, InboxWatcher
    from ragline.worker import IngestWorker

    settings = container.settings
    worker = IngestWorker(
        _worker_ingest(container),
        container.queue,
        container.store,
        threads=settings.ingest_workers,
        max_attempts=settings.max_ingest_attempts,
        nice=settings.ingest_nice,
    )
    watcher = InboxWatcher(
        InboxSync(settings.inbox, container.ingest, container.store, worker.notify),
        settle_seconds=settings.inbox_settle_seconds,
    )
    purges = _ResumePurges(container)
    return Background([worker, watcher, _webhook_dispatcher(container), purges], worker.notify)


class _ResumePurges:
    """Knowledge bases whose purge a stop or crash cut short (still `deleting`, hidden from search) are
    purged again at start, on a thread, after the worker's own recovery."""

    def __init__(self, container: Container) -> None:
        self.container = container

    def start(self) -> None:
        threading.Thread(
            target=self.container.knowledge_bases.resume_purges, name="kb-purge-resume", daemon=True
        ).start()

    def stop(self) -> None:
        """Nothing to stop: an unfinished purge resumes at the next start."""


def _webhook_dispatcher(container: Container) -> Service:
    from ragline.adapters.local.sqlite_webhooks import SqliteWebhookStore
    from ragline.webhooks.dispatcher import LocalDeliveryScheduler, LocalWebhookDispatcher

    store, scheduler = container.webhook_store, container.delivery_scheduler
    assert isinstance(store, SqliteWebhookStore) and isinstance(scheduler, LocalDeliveryScheduler)
    return LocalWebhookDispatcher(
        container.webhooks,
        store,
        scheduler,
        retention_days=container.settings.webhook_delivery_retention_days,
    )


def _worker_ingest(container: Container) -> IngestService:
    """What the ingest threads run. With a lowered priority and the local model, an IngestService
    with a model session of its own, built on first use by an ingest thread (whose priority its
    onnxruntime threads then inherit): embedding a tenant's big upload then yields the cores to
    the searches and chats of every tenant, instead of taking them on equal terms. It costs one
    more session's memory while the server ingests (~0.15 GB: peak RSS ingesting a PDF 643 vs
    493 MB). The Lambda ingest function has no worker threads; Bedrock embeds remotely: shared."""
    settings = container.settings
    if not settings.ingest_nice or settings.embedding_provider != "local":
        return container.ingest
    return IngestService(
        settings,
        container.store,
        container.queue,
        container.blobs,
        lambda: container.index,
        lambda: build_embedder(settings),
        container.events,
        on_corpus_change=lambda tenant_id, kb_id: container.insight.corpus_changed(
            tenant_id, kb_id
        ),  # the answer cache
    )
