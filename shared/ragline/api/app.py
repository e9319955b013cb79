"""The FastAPI application: every route (or one capability's, for a Lambda function), the error
body, and (when serving) the background services the caller built, started and stopped with it."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from ragline import __version__
from ragline.api.activity import ActivityMiddleware
from ragline.api.admission import AdmissionLimits, AdmissionMiddleware, TenantAdmission, tenant_resolver
from ragline.api.errors import install_error_handlers
from ragline.api.idempotency import IdempotencyMiddleware, IdempotencyPolicy, document_idempotency
from ragline.api.limits import BodyLimitMiddleware, BodyLimits
from ragline.api.rate_limit import RateLimitHeadersMiddleware, document_rate_limits, limited_principal
from ragline.api.request_id import RequestIdMiddleware

if TYPE_CHECKING:
    from ragline.background import Background
    from ragline.container import Container

# Capability → its router modules under ragline.api.routes. Each Lambda function serves one subset,
# so the search function cannot answer chat and vice versa; `ragline serve` serves them all.
ROUTERS: dict[str, tuple[str, ...]] = {
    "health": ("health",),
    "documents": ("uploads", "documents", "jobs"),
    "knowledge_bases": ("knowledge_bases",),
    "search": ("search",),
    "chat": ("chat",),
    "stream": ("stream",),
    # `ragline serve` only: deployed, the WebSocket chat is API Gateway's WebSocket API and functions/chat_ws.
    "websocket": ("chat_ws",),
    "webhooks": ("webhooks",),
    "keys": ("keys", "audit"),
    "insight": ("queries",),
    # Pages for people, outside the OpenAPI: the page to try Ragline (GET /), and /docs and /redoc with
    # their assets served from the fastapi-offline package (no CDN), which no Lambda layer ships.
    "web": ("web", "docs"),
}


def _no_worker() -> None:
    """Without background work (Lambda), accepted jobs wait on the job queue for the ingest function."""


def create_app(
    container: Container, *, background: Background | None = None, routers: Collection[str] | None = None
) -> FastAPI:
    """``background``: what `ragline serve` runs besides the API (ingest worker, inbox watcher or
    the emulated event sources); None on Lambda."""
    selected = list(ROUTERS) if routers is None else list(routers)
    unknown = sorted(set(selected) - set(ROUTERS))
    if unknown:
        raise ValueError(f"unknown routers {unknown}: choose from {sorted(ROUTERS)}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if background is not None:
            background.start()
        try:
            yield
        finally:
            if background is not None:
                background.stop()

    app = FastAPI(
        title="Ragline",
        version=__version__,
        description="Knowledge-base API: ingest documents, search them by meaning, chat with cited answers.",
        lifespan=lifespan,
        # FastAPI's own pages load their scripts from a CDN: routes/docs.py serves them from the package instead.
        docs_url=None,
        redoc_url=None,
    )
    app.state.container = container
    app.state.background = background
    app.state.notify_worker = background.notify if background is not None else _no_worker
    install_error_handlers(app)
    settings = container.settings
    # Inside the body limits (added later = outer): an oversized body is refused before any key is claimed.
    app.add_middleware(
        IdempotencyMiddleware,
        store=lambda: container.idempotency,
        authenticate=lambda request: limited_principal(container, request, request.headers.get("x-api-key")),
        policy=IdempotencyPolicy(settings.idempotency_ttl_seconds, settings.idempotency_stale_after_seconds),
    )
    # Outside the idempotency middleware: its own answers (replays, 409s) carry the headers too.
    app.add_middleware(RateLimitHeadersMiddleware)
    app.add_middleware(BodyLimitMiddleware, limits=BodyLimits.from_settings(settings))
    # Outside the others but admission: it sees the answer of every request that reached a route.
    app.add_middleware(ActivityMiddleware, container=container)
    # Outermost: a request waits for its tenant's slot before any of its body is read. The WebSocket chat,
    # which no HTTP middleware sees, takes its slots from the same admission (app.state.admission).
    admission = TenantAdmission(AdmissionLimits.from_settings(settings))
    app.state.admission = admission
    app.add_middleware(
        AdmissionMiddleware,
        limits=admission.limits,
        tenant_of=tenant_resolver(container),
        admission=admission,
    )
    # Outside everything: an answer refused by admission or a body limit still names its request.
    app.add_middleware(RequestIdMiddleware)
    for name in selected:
        for module_name in ROUTERS[name]:
            app.include_router(importlib.import_module(f"ragline.api.routes.{module_name}").router)
    _document_idempotency(app)
    return app


def _document_idempotency(app: FastAPI) -> None:
    """The middleware's header and 409 in the OpenAPI of the routes it covers (built once, then cached)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        return document_rate_limits(document_idempotency(build()))

    app.openapi = openapi  # type: ignore[method-assign]
