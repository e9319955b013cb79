"""Documents: upload (multipart, JSON text, or presigned for large files), list, get, wait, delete, stats;
and ingestion jobs. Requests are built once below; ``Documents`` and ``AsyncDocuments`` only send them."""

from __future__ import annotations

import json
import mimetypes
import os
import time
from pathlib import Path
from typing import Any, AsyncIterator, BinaryIO, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import httpx

from ragline_client._core import Call, Flow, Sleep, body, envelope, model, segment
from ragline_client._transport import AsyncTransport, SyncTransport
from ragline_client.errors import WaitTimeoutError
from ragline_client.models import (
    BatchUploadResult,
    DeletedByFilters,
    Document,
    DocumentDeleted,
    DocumentPage,
    DocumentStats,
    Job,
    UploadResult,
    UploadTicket,
)

# A path, the bytes themselves (name them with filename=), or a binary file object.
FileInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]
TERMINAL_STATUSES = ("indexed", "failed")
DEFAULT_WAIT_TIMEOUT = 300.0
DEFAULT_PAGE_SIZE = 100


def read_file(file: FileInput, filename: Optional[str]) -> Tuple[bytes, str]:
    """The bytes to send and the file name the server will see (it tells the type by its suffix)."""
    if isinstance(file, (str, os.PathLike)):
        path = Path(file)
        return path.read_bytes(), filename or path.name
    if isinstance(file, (bytes, bytearray, memoryview)):
        data = bytes(file)
        name = filename
    elif hasattr(file, "read"):
        data = file.read()
        if not isinstance(data, bytes):
            raise TypeError("open the file in binary mode ('rb')")
        name = filename or os.path.basename(str(getattr(file, "name", "") or "")) or None
    else:
        raise TypeError(f"upload takes a path, bytes or a binary file, not {type(file).__name__}")
    if not name:
        raise ValueError("name the file with filename= (its suffix tells the server the type: .pdf, .txt, .md, .html)")
    return data, name


def guess_type(filename: str) -> Optional[str]:
    suffix = Path(filename).suffix.lower()
    if suffix in (".md", ".markdown"):
        return "text/markdown"  # not in every system's mimetypes table
    return mimetypes.guess_type(filename)[0]


def _form(**fields: Any) -> Dict[str, str]:
    form: Dict[str, str] = {}
    for name, value in fields.items():
        if value is None:
            continue
        form[name] = json.dumps(value) if isinstance(value, dict) else str(value)
    return form


def multipart_upload(
    data: bytes,
    filename: str,
    *,
    metadata: Optional[Dict[str, Any]],
    title: Optional[str],
    external_id: Optional[str],
    kb_id: Optional[str],
    chunk_size: Optional[int],
    chunk_overlap: Optional[int],
) -> Call[UploadResult]:
    return Call(
        "POST",
        "/v1/kb/documents",
        envelope(UploadResult),
        files=[("file", (filename, data, guess_type(filename)))],
        data=_form(
            metadata=metadata,
            title=title,
            external_id=external_id,
            kb_id=kb_id,
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
        ),
    )


def upload_flow(
    file: FileInput,
    *,
    filename: Optional[str],
    metadata: Optional[Dict[str, Any]],
    title: Optional[str],
    external_id: Optional[str],
    kb_id: Optional[str],
    chunk_size: Optional[int],
    chunk_overlap: Optional[int],
    presigned: Optional[bool],
    threshold: int,
) -> Flow[UploadResult]:
    data, name = read_file(file, filename)
    # A presigned upload carries only the file name, type, metadata and KB.
    given = {"title": title, "external_id": external_id, "chunk_size": chunk_size, "chunk_overlap": chunk_overlap}
    multipart_only = [name for name, value in given.items() if value is not None]
    if presigned and multipart_only:
        raise ValueError(f"a presigned upload cannot set {', '.join(multipart_only)}")
    if presigned is None:
        presigned = len(data) > threshold and not multipart_only
    if not presigned:
        result: UploadResult = yield multipart_upload(
            data,
            name,
            metadata=metadata,
            title=title,
            external_id=external_id,
            kb_id=kb_id,
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
        )
        return result
    content_type = guess_type(name)
    ticket: UploadTicket = yield Call(
        "POST",
        "/v1/kb/uploads",
        model(UploadTicket),
        json=body(filename=name, content_type=content_type, metadata=metadata, kb_id=kb_id),
    )
    # The URL's signature covers the content type declared above (S3 checks it): send exactly that.
    answer: httpx.Response = yield Call(
        ticket.method,
        ticket.upload_url,
        lambda response: response,
        content=data,
        headers={"content-type": content_type or "application/octet-stream"},
        authenticated=False,  # never send the API key to the storage service
    )
    return _presigned_result(ticket, answer)


def _presigned_result(ticket: UploadTicket, answer: httpx.Response) -> UploadResult:
    """Ragline's own receiver answers like an upload; S3 answers 200 with no body (ingestion starts on arrival)."""
    if answer.headers.get("content-type", "").startswith("application/json"):
        data = answer.json().get("data")
        if isinstance(data, dict) and data.get("document_id"):
            return UploadResult.model_validate(data)
    return UploadResult(document_id=ticket.document_id, document_status="queued")


def upload_many_call(
    files: Sequence[FileInput],
    *,
    metadata: Optional[Dict[str, Any]],
    kb_id: Optional[str],
    chunk_size: Optional[int],
    chunk_overlap: Optional[int],
    on_error: str,
) -> Call[BatchUploadResult]:
    parts = []
    for file in files:
        data, name = read_file(file, None)
        parts.append(("files", (name, data, guess_type(name))))
    return Call(
        "POST",
        "/v1/kb/documents",
        model(BatchUploadResult),
        files=parts,
        data=_form(
            metadata=metadata, kb_id=kb_id, chunk_size=chunk_size, chunk_overlap=chunk_overlap, on_error=on_error
        ),
    )


def upload_text_call(
    text: str,
    *,
    title: Optional[str],
    metadata: Optional[Dict[str, Any]],
    external_id: Optional[str],
    kb_id: Optional[str],
    chunk_size: Optional[int],
    chunk_overlap: Optional[int],
) -> Call[UploadResult]:
    return Call(
        "POST",
        "/v1/kb/documents",
        envelope(UploadResult),
        json=body(
            text=text,
            title=title,
            metadata=metadata,
            external_id=external_id,
            kb_id=kb_id,
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
        ),
    )


def list_page_call(
    status: Optional[str], kb_id: Optional[str], limit: int, cursor: Optional[str]
) -> Call[DocumentPage]:
    params = {"status": status, "kb_id": kb_id, "limit": limit, "cursor": cursor}
    return Call("GET", "/v1/kb/documents", model(DocumentPage), params=params)


def get_call(document_id: str) -> Call[Document]:
    return Call("GET", f"/v1/kb/documents/{segment(document_id)}", model(Document))


def wait_flow(document_id: str, timeout: float, poll_interval: float) -> Flow[Document]:
    """Poll the document until it is indexed or failed: quickly at first (small files index in well under a
    second), then every ``poll_interval`` seconds."""
    deadline = time.monotonic() + timeout
    pause = min(0.1, poll_interval)
    while True:
        document: Document = yield get_call(document_id)
        if document.status in TERMINAL_STATUSES:
            return document
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeoutError(
                f"document {document_id} is still {document.status} after {timeout:g} s", document=document
            )
        yield Sleep(min(pause, left))
        pause = min(pause * 2, poll_interval)


def delete_call(document_id: str) -> Call[DocumentDeleted]:
    return Call("DELETE", f"/v1/kb/documents/{segment(document_id)}", envelope(DocumentDeleted))


def delete_by_filters_call(filters: Dict[str, Any], everything: bool) -> Call[DeletedByFilters]:
    # Deleting what matches is the same whether it runs once or twice: safe to retry.
    return Call("POST", "/v1/kb/delete", envelope(DeletedByFilters), json=body(filters=filters, all=everything or None))


def stats_call(document_id: str) -> Call[DocumentStats]:
    return Call("GET", f"/v1/kb/documents/{segment(document_id)}/stats", model(DocumentStats))


def job_call(job_id: str) -> Call[Job]:
    return Call("GET", f"/v1/kb/jobs/{segment(job_id)}", model(Job))


def _documents(page: DocumentPage) -> List[Document]:
    return page.documents


class Documents:
    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def upload(
        self,
        file: FileInput,
        *,
        filename: Optional[str] = None,
        metadata: Optional[Dict[str, Any]] = None,
        title: Optional[str] = None,
        external_id: Optional[str] = None,
        kb_id: Optional[str] = None,
        chunk_size: Optional[int] = None,
        chunk_overlap: Optional[int] = None,
        presigned: Optional[bool] = None,
    ) -> UploadResult:
        """Upload one file (202: indexing follows; ``wait`` for it). Files above the client's
        ``presigned_upload_threshold`` go through a presigned URL unless ``presigned=False``."""
        return self._t.run(
            upload_flow(
                file,
                filename=filename,
                metadata=metadata,
                title=title,
                external_id=external_id,
                kb_id=kb_id,
                chunk_size=chunk_size,
                chunk_overlap=chunk_overlap,
                presigned=presigned,
                threshold=self._t.config.presigned_upload_threshold,
            )
        )

    def upload_many(
        self,
        files: Sequence[FileInput],
        *,
        metadata: Optional[Dict[str, Any]] = None,
        kb_id: Optional[str] = None,
        chunk_size: Optional[int] = None,
        chunk_overlap: Optional[int] = None,
        on_error: str = "continue",
    ) -> BatchUploadResult:
        """Upload several files in one request (at most 100); the answer says what became of each."""
        return self._t.request(
            upload_many_call(
                files,
                metadata=metadata,
                kb_id=kb_id,
                chunk_size=chunk_size,
                chunk_overlap=chunk_overlap,
                on_error=on_error,
            )
        )

    def upload_text(
        self,
        text: str,
        *,
        title: Optional[str] = None,
        metadata: Optional[Dict[str, Any]] = None,
        external_id: Optional[str] = None,
        kb_id: Optional[str] = None,
        chunk_size: Optional[int] = None,
        chunk_overlap: Optional[int] = None,
    ) -> UploadResult:
        return self._t.request(
            upload_text_call(
                text,
                title=title,
                metadata=metadata,
                external_id=external_id,
                kb_id=kb_id,
                chunk_size=chunk_size,
                chunk_overlap=chunk_overlap,
            )
        )

    def list(
        self, *, status: Optional[str] = None, kb_id: Optional[str] = None, page_size: int = DEFAULT_PAGE_SIZE
    ) -> Iterator[Document]:
        """Every document (of a status, of a KB), oldest first, fetching page after page as you iterate."""
        return self._t.paginate(lambda cursor: list_page_call(status, kb_id, page_size, cursor), _documents)

    def list_page(
        self,
        *,
        status: Optional[str] = None,
        kb_id: Optional[str] = None,
        limit: int = DEFAULT_PAGE_SIZE,
        cursor: Optional[str] = None,
    ) -> DocumentPage:
        """One page; pass its ``next_cursor`` for the next."""
        return self._t.request(list_page_call(status, kb_id, limit, cursor))

    def get(self, document_id: str) -> Document:
        return self._t.request(get_call(document_id))

    def wait(self, document_id: str, *, timeout: float = DEFAULT_WAIT_TIMEOUT, poll_interval: float = 1.0) -> Document:
        """The document once it is ``indexed`` or ``failed`` (check ``status`` and ``error``);
        ``WaitTimeoutError`` after ``timeout`` seconds."""
        return self._t.run(wait_flow(document_id, timeout, poll_interval))

    def delete(self, document_id: str) -> DocumentDeleted:
        """Delete a document, its chunks and its original (none of its chunks is searchable on return)."""
        return self._t.request(delete_call(document_id))

    def delete_by_filters(self, filters: Dict[str, Any], *, all: bool = False) -> DeletedByFilters:
        """Delete every document matching ``filters`` (the search filter language). Empty filters
        delete nothing unless ``all=True``, which deletes every document of the tenant."""
        return self._t.request(delete_by_filters_call(filters, all))

    def stats(self, document_id: str) -> DocumentStats:
        return self._t.request(stats_call(document_id))


class AsyncDocuments:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def upload(
        self,
        file: FileInput,
        *,
        filename: Optional[str] = None,
        metadata: Optional[Dict[str, Any]] = None,
        title: Optional[str] = None,
        external_id: Optional[str] = None,
        kb_id: Optional[str] = None,
        chunk_size: Optional[int] = None,
        chunk_overlap: Optional[int] = None,
        presigned: Optional[bool] = None,
    ) -> UploadResult:
        return await self._t.run(
            upload_flow(
                file,
                filename=filename,
                metadata=metadata,
                title=title,
                external_id=external_id,
                kb_id=kb_id,
                chunk_size=chunk_size,
                chunk_overlap=chunk_overlap,
                presigned=presigned,
                threshold=self._t.config.presigned_upload_threshold,
            )
        )

    async def upload_many(
        self,
        files: Sequence[FileInput],
        *,
        metadata: Optional[Dict[str, Any]] = None,
        kb_id: Optional[str] = None,
        chunk_size: Optional[int] = None,
        chunk_overlap: Optional[int] = None,
        on_error: str = "continue",
    ) -> BatchUploadResult:
        return await self._t.request(
            upload_many_call(
                files,
                metadata=metadata,
                kb_id=kb_id,
                chunk_size=chunk_size,
                chunk_overlap=chunk_overlap,
                on_error=on_error,
            )
        )

    async def upload_text(
        self,
        text: str,
        *,
        title: Optional[str] = None,
        metadata: Optional[Dict[str, Any]] = None,
        external_id: Optional[str] = None,
        kb_id: Optional[str] = None,
        chunk_size: Optional[int] = None,
        chunk_overlap: Optional[int] = None,
    ) -> UploadResult:
        return await self._t.request(
            upload_text_call(
                text,
                title=title,
                metadata=metadata,
                external_id=external_id,
                kb_id=kb_id,
                chunk_size=chunk_size,
                chunk_overlap=chunk_overlap,
            )
        )

    def list(
        self, *, status: Optional[str] = None, kb_id: Optional[str] = None, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[Document]:
        return self._t.paginate(lambda cursor: list_page_call(status, kb_id, page_size, cursor), _documents)

    async def list_page(
        self,
        *,
        status: Optional[str] = None,
        kb_id: Optional[str] = None,
        limit: int = DEFAULT_PAGE_SIZE,
        cursor: Optional[str] = None,
    ) -> DocumentPage:
        return await self._t.request(list_page_call(status, kb_id, limit, cursor))

    async def get(self, document_id: str) -> Document:
        return await self._t.request(get_call(document_id))

    async def wait(
        self, document_id: str, *, timeout: float = DEFAULT_WAIT_TIMEOUT, poll_interval: float = 1.0
    ) -> Document:
        return await self._t.run(wait_flow(document_id, timeout, poll_interval))

    async def delete(self, document_id: str) -> DocumentDeleted:
        return await self._t.request(delete_call(document_id))

    async def delete_by_filters(self, filters: Dict[str, Any], *, all: bool = False) -> DeletedByFilters:
        return await self._t.request(delete_by_filters_call(filters, all))

    async def stats(self, document_id: str) -> DocumentStats:
        return await self._t.request(stats_call(document_id))


class Jobs:
    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def get(self, job_id: str) -> Job:
        """An ingestion job (``UploadResult.job_id``): its status, attempts and error."""
        return self._t.request(job_call(job_id))


class AsyncJobs:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def get(self, job_id: str) -> Job:
        return await self._t.request(job_call(job_id))
