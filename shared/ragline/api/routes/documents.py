"""Documents: upload (multipart files or JSON text), list, get, delete one, delete by filters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ragline.api.dependencies import (
    IngestPrincipal,
    IngestServiceDep,
    SettingsDep,
    UploadServiceDep,
    WakeWorker,
)
from ragline.api.errors import AUTHENTICATED, LIMITED, WITH_BODY, error_responses
from ragline.api.upload_bodies import (
    UPLOAD_BODY,
    accepted_body,
    refuse_oversized_request,
    text_document,
    upload_form,
)
from ragline.errors import BadRequest, RaglineError
from ragline.ingest.service import Accepted
from ragline.ingest.uploads import IncomingFile
from ragline.models import (
    BatchUploadResponse,
    DeleteByFilterRequest,
    DeleteByFilterResponse,
    DocumentDeleted,
    DocumentList,
    DocumentOut,
    DocumentStatus,
    UploadAccepted,
)

router = APIRouter(prefix="/v1/kb", tags=["documents"], responses=error_responses(*AUTHENTICATED))


@router.post(
    "/documents",
    status_code=202,
    openapi_extra=UPLOAD_BODY,
    summary="Upload documents",
    responses={
        202: {
            # Answered as a JSONResponse: one document's body, or a batch's (several files, or any as 'files').
            "model": UploadAccepted | BatchUploadResponse,
            "description": "Accepted: one document (JSON text or a single `file`), or a batch with at least "
            "one file accepted (each file answered on its own)",
        },
        **error_responses(*WITH_BODY, *LIMITED, 404, 409, 415),
    },
)
async def upload_documents(
    request: Request,
    principal: IngestPrincipal,
    ingest: IngestServiceDep,
    uploads: UploadServiceDep,
    settings: SettingsDep,
    wake_worker: WakeWorker,
) -> JSONResponse:
    limit = settings.max_upload_bytes
    refuse_oversized_request(request, limit)
    declared = request.headers.get("content-type", "")

    if declared.startswith("application/json"):
        body = await text_document(request)
        accepted = await run_in_threadpool(
            ingest.accept,
            principal.tenant_id,
            body.text.encode("utf-8"),
            content_type="text/plain",
            title=body.title,
            metadata=body.metadata,
            kb_id=body.kb_id,
            external_id=body.external_id,
            chunk_size=body.chunk_size,
            chunk_overlap=body.chunk_overlap,
        )
        wake_worker()
        return JSONResponse(accepted_body(accepted), status_code=202)

    if not declared.startswith("multipart/form-data"):
        raise BadRequest(
            "send multipart/form-data with a 'file' (or 'files'), or JSON with 'text'", error="Unsupported request body"
        )
    form = await upload_form(request, limit)
    if form.batch:
        outcomes = await run_in_threadpool(
            uploads.accept_batch, principal.tenant_id, form.files, abort_on_error=form.abort_on_error, **form.options
        )
        wake_worker()
        return _batch_response(form.files, outcomes)
    file = form.files[0]
    if isinstance(file.data, RaglineError):
        raise file.data
    accepted = await run_in_threadpool(
        ingest.accept,
        principal.tenant_id,
        file.data,
        filename=file.filename,
        content_type=file.content_type,
        title=form.title,
        external_id=form.external_id,
        **form.options,
    )
    wake_worker()
    return JSONResponse(accepted_body(accepted), status_code=202)


def _batch_response(batch: list[IncomingFile], outcomes: list[Accepted | RaglineError]) -> JSONResponse:
    results = [_file_result(file.filename, outcome) for file, outcome in zip(batch, outcomes)]
    successful = sum(1 for r in results if r["document_id"])
    body = {"successful": successful, "failed": len(results) - successful, "documents": results}
    if successful == 0:
        status = results[0]["code"]
        return JSONResponse(
            {
                "error": "No file accepted",
                "message": "none of the files could be ingested",
                "code": status,
                "details": body,
            },
            status_code=status,
        )
    return JSONResponse(body, status_code=202)


def _file_result(filename: str | None, outcome: Accepted | RaglineError) -> dict[str, Any]:
    if isinstance(outcome, RaglineError):
        return {
            "filename": filename,
            "document_id": None,
            "status": "rejected",
            "error": outcome.message,
            "code": outcome.status,
        }
    return {
        "filename": filename,
        "document_id": outcome.document.id,
        "job_id": outcome.job_id,
        "status": outcome.document.status.value,
        "duplicate": outcome.duplicate,
    }


# Document.public() leaves out `error` when there is none: exclude_unset keeps it out of the answer.
@router.get("/documents", summary="List documents", response_model=DocumentList, response_model_exclude_unset=True)
def list_documents(
    principal: IngestPrincipal,
    ingest: IngestServiceDep,
    status: DocumentStatus | None = None,
    kb_id: str | None = Query(default=None, max_length=64),
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=100),
) -> dict[str, Any]:
    documents, next_cursor = ingest.list_documents(
        principal.tenant_id, status=status, kb_id=kb_id, limit=limit, cursor=cursor
    )
    return {"documents": [d.public() for d in documents], "next_cursor": next_cursor}


@router.get(
    "/documents/{document_id}",
    summary="Get a document",
    response_model=DocumentOut,
    response_model_exclude_unset=True,  # as in the list: no `error` key when there is none
    responses=error_responses(404),
)
def get_document(document_id: str, principal: IngestPrincipal, ingest: IngestServiceDep) -> dict[str, Any]:
    return ingest.document(principal.tenant_id, document_id).public()


@router.delete(
    "/documents/{document_id}",
    summary="Delete a document, its chunks and its original",
    response_model=DocumentDeleted,
    responses=error_responses(404, 409),
)
def delete_document(document_id: str, principal: IngestPrincipal, ingest: IngestServiceDep) -> dict[str, Any]:
    ingest.delete(principal.tenant_id, document_id)
    return {"status": "success", "data": {"document_id": document_id}}


@router.post(
    "/delete",
    summary="Delete every document matching filters",
    response_model=DeleteByFilterResponse,
    responses=error_responses(*WITH_BODY, 409),
)
def delete_by_filter(
    body: DeleteByFilterRequest, principal: IngestPrincipal, ingest: IngestServiceDep
) -> dict[str, Any]:
    deleted = ingest.delete_by_filter(principal.tenant_id, body.filters, everything=body.all)
    return {
        "status": "success",
        "data": {"deleted_documents": deleted, "filters": {**body.filters, "tenant_id": principal.tenant_id}},
    }
