"""The FastAPI application: every route, the error body, and (when serving) the background
ingest worker and the inbox watcher."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ragline import __version__
from ragline.api.errors import install_error_handlers
from ragline.api.routes import documents, health, search
from ragline.api.uploads import load_secret
from ragline.container import Container
from ragline.inbox import InboxSync, InboxWatcher
from ragline.worker import IngestWorker

log = logging.getLogger(__name__)


def create_app(container: Container, *, background: bool = True) -> FastAPI:
    worker = IngestWorker(
        container.ingest,
        container.store,
        container.store,
        threads=container.settings.ingest_workers,
        max_attempts=container.settings.max_ingest_attempts,
    )
    watcher = InboxWatcher(
        InboxSync(container.settings.inbox, container.ingest, container.store, worker.notify),
        settle_seconds=container.settings.inbox_settle_seconds,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if background:
            worker.start()
            watcher.start()
        try:
            yield
        finally:
            if background:
                watcher.stop()
                worker.stop()

    app = FastAPI(
        title="Ragline",
        version=__version__,
        description="Knowledge-base API: ingest documents, search them by meaning, chat with cited answers.",
        lifespan=lifespan,
    )
    app.state.container = container
    app.state.worker = worker
    app.state.notify_worker = worker.notify
    app.state.upload_secret = load_secret(container.settings.data_dir / "upload-secret")
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(documents.router)
    app.include_router(search.router)
    return app
