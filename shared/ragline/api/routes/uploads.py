"""Presigned uploads: a URL to PUT a large file to, and (local backend) the route that receives it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ragline.api.dependencies import IngestPrincipal, SettingsDep, UploadServiceDep, WakeWorker
from ragline.api.errors import AUTHENTICATED, LIMITED, WITH_BODY, error_responses
from ragline.api.upload_bodies import accepted_body, read_at_most
from ragline.models import UploadAccepted, UploadRequest, UploadResponse

router = APIRouter(prefix="/v1/kb", tags=["documents"])


@router.post(
    "/uploads",
    summary="Get a URL to upload a large file to",
    response_model=UploadResponse,
    responses=error_responses(*AUTHENTICATED, *WITH_BODY, 415),
)
async def create_upload(
    body: UploadRequest, request: Request, principal: IngestPrincipal, uploads: UploadServiceDep, settings: SettingsDep
) -> dict[str, Any]:
    def receiver_url(document_id: str, token: str) -> str:
        # The configured public URL, not the request's Host header, which the client chooses.
        path = request.app.url_path_for("receive_upload", document_id=document_id)
        return f"{settings.public_base_url}{path}?{urlencode({'token': token})}"

    ticket = await run_in_threadpool(uploads.presign, principal.tenant_id, body, receiver_url)
    return {
        "document_id": ticket.document_id,
        "upload_url": ticket.upload_url,
        "expires_in": ticket.expires_in,
        "method": "PUT",
        "max_bytes": ticket.max_bytes,
    }


@router.put(
    "/uploads/{document_id}",
    status_code=202,
    name="receive_upload",
    summary="Receive a presigned upload",
    # The token in the URL is the authorization: 403 for a bad or expired one.
    responses={
        202: {"model": UploadAccepted, "description": "The bytes arrived: ingestion has started"},
        **error_responses(400, 403, 404, 409, 415, 422, 503, *WITH_BODY, *LIMITED),
    },
)
async def receive_upload(
    document_id: str,
    request: Request,
    uploads: UploadServiceDep,
    settings: SettingsDep,
    wake_worker: WakeWorker,
    token: str = Query(...),
) -> JSONResponse:
    # The token is the authorization (no API key): check it before reading the body.
    claims = uploads.redeem(document_id, token)
    data = await read_at_most(request.stream(), settings.max_upload_bytes, "the file")
    accepted = await run_in_threadpool(uploads.accept_upload, claims, data, request.headers.get("content-type"))
    wake_worker()
    return JSONResponse(accepted_body(accepted), status_code=202)
