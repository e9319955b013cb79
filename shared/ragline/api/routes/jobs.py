"""Ingestion jobs: where an accepted upload has got to."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ragline.api.dependencies import IngestPrincipal, IngestServiceDep
from ragline.api.errors import AUTHENTICATED, error_responses
from ragline.models import JobOut

router = APIRouter(prefix="/v1/kb", tags=["documents"], responses=error_responses(*AUTHENTICATED, 404))


@router.get("/jobs/{job_id}", summary="Ingestion job status", response_model=JobOut)
def get_job(job_id: str, principal: IngestPrincipal, ingest: IngestServiceDep) -> dict[str, Any]:
    job, document = ingest.job(principal.tenant_id, job_id)
    return {**job.public(), "document_status": document.status.value if document else None}
