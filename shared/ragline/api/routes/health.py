"""Health: a public liveness answer and an admin view of every dependency."""

from __future__ import annotations

from typing import Any

import psutil
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ragline.api.dependencies import AdminPrincipal, ContainerDep
from ragline.api.errors import AUTHENTICATED, ErrorBody, error_responses
from ragline.models import HealthDetailedResponse, HealthResponse
from ragline.retrieval.filters import MatchAll

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness")
def health() -> HealthResponse:
    return HealthResponse(status="healthy")


def _check(name: str, probe: Any, results: dict[str, str]) -> None:
    try:
        probe()
        results[name] = "healthy"
    except Exception as exc:  # a health check reports any failure as the dependency's state
        results[name] = f"unhealthy: {type(exc).__name__}: {exc}"


# Answered as a JSONResponse (200 or 503 with the same body), so the body's model is declared here.
_DETAILED_RESPONSES = {
    **error_responses(*AUTHENTICATED),
    200: {"model": HealthDetailedResponse, "description": "Every dependency is healthy"},
}
_DETAILED_RESPONSES[503] = {
    "model": HealthDetailedResponse | ErrorBody,
    "description": "A dependency is unhealthy (the health body, status `unhealthy`), or one the key check "
    "needs is down (the error body)",
}


@router.get("/health/detailed", summary="Dependencies and system (admin)", responses=_DETAILED_RESPONSES)
def health_detailed(principal: AdminPrincipal, container: ContainerDep) -> JSONResponse:
    # Probes every adapter, so it takes the whole container rather than one service.
    dependencies: dict[str, str] = {}
    _check("metadata_store", container.store.ping, dependencies)
    _check("blob_store", lambda: container.blobs.exists("health-probe"), dependencies)
    tenant_chunks: list[int] = []  # the probe's answer, shown below
    _check(
        "vector_index",
        lambda: tenant_chunks.append(container.index.count(principal.tenant_id, MatchAll())),
        dependencies,
    )
    # embed_documents: the probe runs the model (searches' query vectors are cached in SearchService)
    _check("embedder", lambda: container.embedder.embed_documents(["health check"]), dependencies)
    dependencies["answer_model"] = f"healthy ({container.answerer.name})"
    process = psutil.Process()
    body = {
        "status": "healthy" if all(v.startswith("healthy") for v in dependencies.values()) else "unhealthy",
        "dependencies": dependencies,
        "system": {
            "memory_usage": round(psutil.virtual_memory().percent, 1),
            "cpu_usage": round(psutil.cpu_percent(interval=None), 1),
            "process_rss_mb": round(process.memory_info().rss / 1e6, 1),
        },
        # The caller's own figures only: server-wide counts would tell one tenant about the others.
        "index": {"tenant_chunks": tenant_chunks[0] if tenant_chunks else None},
    }
    return JSONResponse(body, status_code=200 if body["status"] == "healthy" else 503)
