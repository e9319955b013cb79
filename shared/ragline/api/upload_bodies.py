"""The HTTP side of uploads, shared by the documents and uploads routes: reading bodies within the
size limit, a multipart upload form and a JSON text document, and the 202 answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from ragline.errors import BadRequest, PayloadTooLarge, RaglineError, Unprocessable
from ragline.ingest.service import Accepted
from ragline.ingest.uploads import IncomingFile
from ragline.models import TextDocumentRequest

READ_CHUNK = 1024 * 1024
MAX_BATCH_FILES = 100


# The OpenAPI request body of POST /v1/kb/documents: the fields upload_form reads, or JSON text.
UPLOAD_BODY = {
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


@dataclass(frozen=True)
class UploadForm:
    files: list[IncomingFile]
    batch: bool  # several files, or any sent as 'files': each is answered on its own
    abort_on_error: bool
    title: str | None  # title and external_id name a single file only
    external_id: str | None
    options: dict[str, Any]  # metadata, kb_id, chunk_size, chunk_overlap: for every file


def accepted_body(accepted: Accepted) -> dict[str, Any]:
    return {
        "status": "accepted",
        "data": {
            "job_id": accepted.job_id,
            "document_id": accepted.document.id,
            "document_status": accepted.document.status.value,
            "duplicate": accepted.duplicate,
        },
    }


async def read_at_most(chunks: AsyncIterator[bytes], limit: int, what: str) -> bytes:
    """The whole body, refused (413) as soon as it passes ``limit`` bytes rather than after."""
    received = bytearray()
    async for piece in chunks:
        received += piece
        if len(received) > limit:
            raise PayloadTooLarge(f"{what} is larger than the {limit}-byte limit", error="File too large")
    return bytes(received)


async def file_chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while piece := await upload.read(READ_CHUNK):
        yield piece


def refuse_oversized_request(request: Request, limit: int) -> None:
    """413 before reading, when the declared length cannot fit a batch of files within ``limit`` each."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit * MAX_BATCH_FILES + 1_000_000:
        raise PayloadTooLarge(f"the request is larger than {limit * MAX_BATCH_FILES} bytes", error="Request too large")


async def upload_form(request: Request, limit: int) -> UploadForm:
    """A multipart upload with its files read (each within ``limit`` bytes, or the reason it is not)."""
    async with request.form(max_files=MAX_BATCH_FILES, max_fields=50, max_part_size=1024 * 1024) as form:
        singles = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
        many = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
        if not singles + many:
            raise BadRequest("no file in the request: send a multipart field 'file' or 'files'", error="No file")
        batch = bool(many) or len(singles) > 1
        options = dict(
            metadata=metadata_field(form),
            kb_id=str_field(form, "kb_id", 64),
            chunk_size=int_field(form, "chunk_size"),
            chunk_overlap=int_field(form, "chunk_overlap"),
        )
        on_error = str_field(form, "on_error") or "continue"
        if on_error not in ("continue", "abort"):
            raise Unprocessable("on_error must be 'continue' or 'abort'", error="Invalid on_error")
        return UploadForm(
            files=[await _incoming(upload, limit) for upload in singles + many],
            batch=batch,
            abort_on_error=on_error == "abort",
            title=None if batch else str_field(form, "title"),
            external_id=None if batch else str_field(form, "external_id"),
            options=options,
        )


async def _incoming(upload: UploadFile, limit: int) -> IncomingFile:
    try:
        data: bytes | RaglineError = await read_at_most(file_chunks(upload), limit, upload.filename or "the file")
    except PayloadTooLarge as exc:
        data = exc  # a batch reports it beside the other files
    return IncomingFile(upload.filename, upload.content_type, data)


async def text_document(request: Request) -> TextDocumentRequest:
    try:
        return TextDocumentRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        # Answered as FastAPI answers a body it validates itself: 400 for malformed JSON, else 422.
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from exc


def int_field(form: FormData, name: str) -> int | None:
    raw = form.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(str(raw))
    except ValueError as exc:
        raise Unprocessable(f"{name} must be a whole number", error=f"Invalid {name}") from exc


def str_field(form: FormData, name: str, max_length: int = 500) -> str | None:
    raw = form.get(name)
    if raw is None or raw == "":
        return None
    if isinstance(raw, UploadFile):
        raise BadRequest(f"{name} must be a text field, not a file")
    if len(raw) > max_length:
        raise Unprocessable(f"{name} is longer than {max_length} characters", error=f"Invalid {name}")
    return str(raw)


def metadata_field(form: FormData) -> dict[str, Any]:
    raw = str_field(form, "metadata", max_length=100_000)
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:  # RecursionError: nested deeper than Python parses
        raise BadRequest("metadata must be a JSON object encoded as a string", error="Invalid metadata") from exc
    if not isinstance(value, dict):
        raise BadRequest("metadata must be a JSON object", error="Invalid metadata")
    return value
