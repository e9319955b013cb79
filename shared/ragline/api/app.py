"""The FastAPI application: every route (or one capability's, for a Lambda function), the error
body, and (when serving) the background ingest worker and the inbox watcher."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from ragline import __version__
from ragline.api.errors import install_error_handlers

if TYPE_CHECKING:
    from ragline.container import Container

# Capability → router module under ragline.api.routes. Each Lambda function serves one subset,
# so the search function cannot answer chat and vice versa; `ragline serve` serves them all.
ROUTERS: dict[str, str] = {
    "health": "health",
    "documents": "documents",
    "search": "search",
    "chat": "chat",
    "stream": "stream",
}


def _no_worker() -> None:
    """Without background work (Lambda), accepted jobs wait on the job queue for the ingest function."""


def create_app(container: Container, *, background: bool = True, routers: Collection[str] | None = None) -> FastAPI:
    selected = list(ROUTERS) if routers is None else list(routers)
    unknown = sorted(set(selected) - set(ROUTERS))
    if unknown:
        raise ValueError(f"unknown routers {unknown}: choose from {sorted(ROUTERS)}")

    services = None
    if background:
        # Imported here: worker threads, the watcher and the SQS poller are for `ragline serve`,
        # not a Lambda's cold start. Local: ingest worker + inbox watcher; aws: the SQS poller.
        from ragline.background import background_services

        services = background_services(container)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services is not None:
            services.start()
        try:
            yield
        finally:
            if services is not None:
                services.stop()

    app = FastAPI(
        title="Ragline",
        version=__version__,
        description="Knowledge-base API: ingest documents, search them by meaning, chat with cited answers.",
        lifespan=lifespan,
    )
    app.state.container = container
    app.state.background = services
    app.state.notify_worker = services.notify if services is not None else _no_worker
    app.state.upload_secret = None
    if "documents" in selected and container.upload_drop is None:
        # Local presigned uploads are signed by this server; on AWS, S3 presigns them instead.
        from ragline.api.uploads import load_secret

        app.state.upload_secret = load_secret(container.settings.data_dir / "upload-secret")
    install_error_handlers(app)
    for name in selected:
        module = importlib.import_module(f"ragline.api.routes.{ROUTERS[name]}")
        app.include_router(module.router)
    return app
