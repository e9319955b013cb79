"""Documents and ingestion routes: uploads (multipart, JSON text, presigned), list, get, delete, jobs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from ragline.api.auth import require
from ragline.api.uploads import sign_upload, verify_upload
from ragline.errors import BadRequest, NotFound, PayloadTooLarge, RaglineError, Unprocessable
from ragline.ingest.parsers import detect_content_type
from ragline.ingest.service import Accepted, safe_filename
from ragline.models import (
    DeleteByFilterRequest,
    DocumentStatus,
    Principal,
    Scope,
    TextDocumentRequest,
    UploadRequest,
    new_id,
    utcnow,
)

if TYPE_CHECKING:
    from ragline.container import Container

router = APIRouter(prefix="/v1/kb", tags=["documents"])
UPLOAD_URL_TTL = 3600
MAX_BATCH_FILES = 100

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "metadata": {"type": "string", "description": "JSON object"},
                        "kb_id": {"type": "string"},
                        "title": {"type": "string"},
                        "external_id": {"type": "string"},
                        "chunk_size": {"type": "integer"},
                        "chunk_overlap": {"type": "integer"},
                        "on_error": {"type": "string", "enum": ["continue", "abort"]},
                    },
                }
            },
            "application/json": {"schema": TextDocumentRequest.model_json_schema()},
        },
    }
}


def _container(request: Request) -> Container:
    return request.app.state.container


def _accepted_body(accepted: Accepted) -> dict[str, Any]:
    return {
        "status": "accepted",
        "data": {
            "job_id": accepted.job_id,
            "document_id": accepted.document.id,
            "document_status": accepted.document.status.value,
            "duplicate": accepted.duplicate,
        },
    }


def _int_field(form: Any, name: str) -> int | None:
    raw = form.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(str(raw))
    except ValueError as exc:
        raise Unprocessable(f"{name} must be a whole number", error=f"Invalid {name}") from exc


def _str_field(form: Any, name: str, max_length: int = 500) -> str | None:
    raw = form.get(name)
    if raw is None or raw == "":
        return None
    if isinstance(raw, UploadFile):
        raise BadRequest(f"{name} must be a text field, not a file")
    if len(raw) > max_length:
        raise Unprocessable(f"{name} is longer than {max_length} characters", error=f"Invalid {name}")
    return str(raw)


def _metadata_field(raw: str | None) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadRequest("metadata must be a JSON object encoded as a string", error="Invalid metadata") from exc
    if not isinstance(value, dict):
        raise BadRequest("metadata must be a JSON object", error="Invalid metadata")
    return value


async def _read_limited(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"{upload.filename} is larger than the {limit}-byte limit", error="File too large")
    return data


@router.post("/documents", status_code=202, openapi_extra=_UPLOAD_BODY, summary="Upload documents")
async def upload_documents(request: Request, principal: Principal = Depends(require(Scope.INGEST))) -> JSONResponse:
    container = _container(request)
    limit = container.settings.max_upload_bytes
    declared = request.headers.get("content-type", "")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit * MAX_BATCH_FILES + 1_000_000:
        raise PayloadTooLarge(f"the request is larger than {limit * MAX_BATCH_FILES} bytes", error="Request too large")

    if declared.startswith("application/json"):
        try:
            body = TextDocumentRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                raise BadRequest("the request body is not valid JSON", error="Malformed JSON") from exc
            raise Unprocessable(
                str(exc.errors()[0]["msg"]), details=[dict(loc=list(e["loc"]), msg=e["msg"]) for e in exc.errors()]
            ) from exc
        data = body.text.encode("utf-8")
        accepted = await run_in_threadpool(
            container.ingest.accept,
            principal.tenant_id,
            data,
            filename=None,
            content_type="text/plain",
            title=body.title,
            metadata=body.metadata,
            kb_id=body.kb_id,
            external_id=body.external_id,
            chunk_size=body.chunk_size,
            chunk_overlap=body.chunk_overlap,
        )
        request.app.state.notify_worker()
        return JSONResponse(_accepted_body(accepted), status_code=202)

    if not declared.startswith("multipart/form-data"):
        raise BadRequest(
            "send multipart/form-data with a 'file' (or 'files'), or JSON with 'text'", error="Unsupported request body"
        )
    async with request.form(max_files=MAX_BATCH_FILES, max_fields=50, max_part_size=1024 * 1024) as form:
        singles = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
        many = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
        uploads = singles + many
        if not uploads:
            raise BadRequest("no file in the request: send a multipart field 'file' or 'files'", error="No file")
        metadata = _metadata_field(_str_field(form, "metadata", max_length=100_000))
        options = dict(
            metadata=metadata,
            kb_id=_str_field(form, "kb_id", 64),
            chunk_size=_int_field(form, "chunk_size"),
            chunk_overlap=_int_field(form, "chunk_overlap"),
        )
        on_error = _str_field(form, "on_error") or "continue"
        if on_error not in ("continue", "abort"):
            raise Unprocessable("on_error must be 'continue' or 'abort'", error="Invalid on_error")

        if len(uploads) == 1 and not many:
            upload = uploads[0]
            accepted = await _accept_upload(
                request,
                principal,
                upload,
                await _read_limited(upload, limit),
                title=_str_field(form, "title"),
                external_id=_str_field(form, "external_id"),
                **options,
            )
            return JSONResponse(_accepted_body(accepted), status_code=202)

        # A batch: read and type-check every file first, so `abort` stores nothing when one is bad.
        staged: list[tuple[UploadFile, bytes | RaglineError]] = []
        for upload in uploads:
            try:
                data = await _read_limited(upload, limit)
                detect_content_type(upload.filename, upload.content_type, data[:8192])
                staged.append((upload, data))
            except RaglineError as exc:
                staged.append((upload, exc))
    return await _ingest_batch(request, principal, staged, options, on_error)


async def _accept_upload(
    request: Request, principal: Principal, upload: UploadFile, data: bytes, **options: Any
) -> Accepted:
    accepted = await run_in_threadpool(
        _container(request).ingest.accept,
        principal.tenant_id,
        data,
        filename=upload.filename,
        content_type=upload.content_type,
        **options,
    )
    request.app.state.notify_worker()
    return accepted


async def _ingest_batch(
    request: Request,
    principal: Principal,
    staged: list[tuple[UploadFile, bytes | RaglineError]],
    options: dict[str, Any],
    on_error: str,
) -> JSONResponse:
    failures = [(upload, item) for upload, item in staged if isinstance(item, RaglineError)]
    if on_error == "abort" and failures:
        first = failures[0][1]
        raise type(first)(
            f"batch aborted: {len(failures)} of {len(staged)} files cannot be ingested; nothing was stored",
            error=first.error,
            details=[{"filename": u.filename, "error": e.message, "code": e.status} for u, e in failures],
        )
    results: list[dict[str, Any]] = []
    for upload, item in staged:
        if not isinstance(item, RaglineError):
            try:
                accepted = await _accept_upload(request, principal, upload, item, **options)
                results.append(
                    {
                        "filename": upload.filename,
                        "document_id": accepted.document.id,
                        "job_id": accepted.job_id,
                        "status": accepted.document.status.value,
                        "duplicate": accepted.duplicate,
                    }
                )
                continue
            except RaglineError as exc:
                item = exc
        results.append(
            {
                "filename": upload.filename,
                "document_id": None,
                "status": "rejected",
                "error": item.message,
                "code": item.status,
            }
        )
    successful = sum(1 for r in results if r["document_id"])
    body = {"successful": successful, "failed": len(results) - successful, "documents": results}
    if successful == 0:
        status = next(r["code"] for r in results)
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


@router.post("/uploads", summary="Get a URL to upload a large file to")
async def create_upload(
    body: UploadRequest, request: Request, principal: Principal = Depends(require(Scope.INGEST))
) -> dict[str, Any]:
    container = _container(request)
    detect_content_type(body.filename, body.content_type, b"")
    document_id = new_id("doc")
    claims = {
        "document_id": document_id,
        "tenant_id": principal.tenant_id,
        "filename": body.filename,
        "content_type": body.content_type,
        "metadata": body.metadata,
        "kb_id": body.kb_id,
    }
    upload_drop, upload_claims = container.upload_drop, container.upload_claims
    if upload_drop is not None and upload_claims is not None:
        # AWS: the client PUTs straight to S3; the claims wait beside it for the ingest function,
        # which the uploads/ notification wakes (and which accepts under this document id).
        tenant = principal.tenant_id
        await run_in_threadpool(
            upload_claims.put,
            f"{tenant}/{document_id}.json",
            json.dumps({**claims, "created_at": utcnow()}).encode("utf-8"),
        )
        url = await run_in_threadpool(
            upload_drop.presign_put,
            f"{tenant}/{document_id}/{safe_filename(body.filename)}",
            body.content_type or "application/octet-stream",
            UPLOAD_URL_TTL,
        )
        return {
            "document_id": document_id,
            "upload_url": url,
            "expires_in": UPLOAD_URL_TTL,
            "method": "PUT",
            "max_bytes": container.settings.max_upload_bytes,
        }
    token = sign_upload(request.app.state.upload_secret, claims, UPLOAD_URL_TTL)
    url = str(request.url_for("receive_upload", document_id=document_id).include_query_params(token=token))
    return {
        "document_id": document_id,
        "upload_url": url,
        "expires_in": UPLOAD_URL_TTL,
        "method": "PUT",
        "max_bytes": container.settings.max_upload_bytes,
    }


@router.put("/uploads/{document_id}", status_code=202, name="receive_upload", summary="Receive a presigned upload")
async def receive_upload(document_id: str, request: Request, token: str = Query(...)) -> JSONResponse:
    container = _container(request)
    if request.app.state.upload_secret is None:
        # On AWS upload URLs point at S3; this server never issued one.
        raise NotFound("uploads go to the URL POST /v1/kb/uploads returned", error="Not found")
    claims = verify_upload(request.app.state.upload_secret, token, document_id)
    limit = container.settings.max_upload_bytes
    chunks: list[bytes] = []
    size = 0
    async for piece in request.stream():
        size += len(piece)
        if size > limit:
            raise PayloadTooLarge(f"the file is larger than the {limit}-byte limit", error="File too large")
        chunks.append(piece)
    accepted = await run_in_threadpool(
        container.ingest.accept,
        claims["tenant_id"],
        b"".join(chunks),
        filename=claims["filename"],
        content_type=claims.get("content_type") or request.headers.get("content-type"),
        metadata=claims.get("metadata") or {},
        kb_id=claims.get("kb_id"),
        document_id=document_id,
    )
    request.app.state.notify_worker()
    return JSONResponse(_accepted_body(accepted), status_code=202)


@router.get("/documents", summary="List documents")
def list_documents(
    request: Request,
    status: DocumentStatus | None = None,
    kb_id: str | None = Query(default=None, max_length=64),
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=100),
    principal: Principal = Depends(require(Scope.INGEST)),
) -> dict[str, Any]:
    documents, next_cursor = _container(request).store.list_documents(
        principal.tenant_id, status=status, kb_id=kb_id, limit=limit, cursor=cursor
    )
    return {"documents": [d.public() for d in documents], "next_cursor": next_cursor}


@router.get("/documents/{document_id}", summary="Get a document")
def get_document(
    document_id: str, request: Request, principal: Principal = Depends(require(Scope.INGEST))
) -> dict[str, Any]:
    doc = _container(request).store.get_document(principal.tenant_id, document_id)
    if doc is None:
        raise NotFound(f"document {document_id} does not exist", error="Document not found")
    return doc.public()


@router.delete("/documents/{document_id}", summary="Delete a document, its chunks and its original")
def delete_document(
    document_id: str, request: Request, principal: Principal = Depends(require(Scope.INGEST))
) -> dict[str, Any]:
    _container(request).ingest.delete(principal.tenant_id, document_id)
    return {"status": "success", "data": {"document_id": document_id}}


@router.post("/delete", summary="Delete every document matching filters")
def delete_by_filter(
    body: DeleteByFilterRequest, request: Request, principal: Principal = Depends(require(Scope.INGEST))
) -> dict[str, Any]:
    deleted = _container(request).ingest.delete_by_filter(principal.tenant_id, body.filters)
    return {
        "status": "success",
        "data": {"deleted_documents": deleted, "filters": {**body.filters, "tenant_id": principal.tenant_id}},
    }


@router.get("/jobs/{job_id}", summary="Ingestion job status")
def get_job(job_id: str, request: Request, principal: Principal = Depends(require(Scope.INGEST))) -> dict[str, Any]:
    container = _container(request)
    job = container.store.get_job(principal.tenant_id, job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist", error="Job not found")
    body = job.public()
    doc = container.store.get_document(principal.tenant_id, job.document_id)
    body["document_status"] = doc.status.value if doc else None
    return body
