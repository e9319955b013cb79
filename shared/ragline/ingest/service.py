"""Ingestion: accept a file (202), store it, queue it; a worker parses, chunks, embeds and
indexes it; deletes remove chunks, original and record. One code path for API, CLI and inbox."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

from ragline.chunks import chunk_id, chunk_payload, document_payload
from ragline.config import DEFAULT_CHUNK_MAX_CHARS, DEFAULT_PARSE_TIMEOUT_SECONDS, MAX_CHUNK_TOKENS, Settings
from ragline.errors import (
    BadRequest,
    Conflict,
    DependencyUnavailable,
    DocumentParseError,
    DuplicateContent,
    JobUndeliverable,
    NotFound,
    PayloadTooLarge,
    RaglineError,
    Unprocessable,
)
from ragline.ingest.chunking import Passage, chunk_blocks
from ragline.ingest.metadata import MetadataLimits, check_metadata
from ragline.ingest.parse_budget import parse_with_budget
from ragline.ingest.parsers import detect_content_type
from ragline.ingest.prefetch import prefetch_groups
from ragline.models import Document, DocumentStatus, IndexedChunk, Job, new_id, utcnow
from ragline.ports import BlobStore, Embedder, EventBus, JobQueue, MetadataStore, VectorIndex
from ragline.retrieval.filters import Term, matches, scope_to_tenant

if TYPE_CHECKING:
    import numpy as np

    from ragline.knowledge_bases import KnowledgeBase

log = logging.getLogger(__name__)

EMBED_GROUP = 64  # at most this many passages embedded per call while the next ones are parsed
# At least this many (fewer only at a document's end): embedding starts once a batch or two are chunked,
# instead of waiting for a whole group (a 45-chunk PDF used to be parsed entirely before its first batch).
# Measured (shared/pdfs, 3 interleaved rounds, quiet machine): the un-overlapped rest fell 0.38 -> 0.17 s,
# but e2e/bare stayed ~0.78 (0.788 vs 0.774): what is left is parse+chunk CPU competing with onnxruntime's
# two threads for the 2 cores, not waiting.
EMBED_GROUP_MIN = 16
INGESTION_ERROR = "error.ingestion"
INTERNAL_ERROR = "internal error while indexing"  # what a bug says on the document (the log has the rest)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Accepted:
    document: Document
    job_id: str | None
    duplicate: bool = False


def safe_filename(name: str | None) -> str:
    base = PurePosixPath((name or "document").replace("\\", "/")).name
    return _UNSAFE.sub("_", base)[:120] or "document"


# Told, after each group of chunks is embedded: (document, pages read so far, page count, chunks embedded).
ProgressHook = Callable[[Document, int, int, int], None]


def extract_passages(
    doc: Document,
    blobs: BlobStore,
    embedder: Embedder,
    *,
    max_chars: int = DEFAULT_CHUNK_MAX_CHARS,
    parse_timeout_seconds: float = DEFAULT_PARSE_TIMEOUT_SECONDS,
    progress: ProgressHook | None = None,
) -> tuple[list[Passage], np.ndarray, int, str | None]:
    """Parse a document's stored original (in a parser process: DocumentParseError once parsing takes
    longer than parse_timeout_seconds), chunk it (passages of at most max_chars characters) and embed
    the chunks (the next pages are parsed while the current ones are embedded): passages, vectors,
    page count, parsed title. `progress`, if given, is told after each embedded group."""
    import numpy as np  # here, not at import: the API functions and the authorizer never need it

    parsed = parse_with_budget(blobs.get(doc.blob_key), doc.content_type, doc.filename, parse_timeout_seconds)
    passages: list[Passage] = []
    parts: list[np.ndarray] = []
    chunks = chunk_blocks(parsed.blocks, embedder.tokenizer, doc.chunk_size, doc.chunk_overlap, max_chars)
    for group in prefetch_groups(chunks, EMBED_GROUP_MIN, EMBED_GROUP):
        parts.append(embedder.embed_documents([p.text for p in group]))
        passages.extend(group)
        if progress is not None:
            pages = max((p.page for p in group if p.page is not None), default=parsed.page_count)
            progress(doc, pages, parsed.page_count, len(passages))
    if not passages:
        raise DocumentParseError("no text found in the file: there is nothing to index")
    vectors = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return passages, vectors, parsed.page_count, parsed.title


def document_chunks(doc: Document, passages: list[Passage], parsed_title: str | None) -> list[IndexedChunk]:
    """The indexed chunks of one version of a document."""
    base = document_payload(doc.model_copy(update={"title": doc.title or parsed_title}))
    return [
        IndexedChunk(
            id=chunk_id(doc.id, doc.version, position),
            tenant_id=doc.tenant_id,
            document_id=doc.id,
            text=passage.text,
            payload=chunk_payload(
                base, version=doc.version, position=position, page=passage.page, section=passage.section
            ),
        )
        for position, passage in enumerate(passages)
    ]


class KnowledgeBaseDirectory(Protocol):
    def for_upload(self, tenant_id: str, kb_id: str) -> KnowledgeBase:
        """The KB a new upload goes to: NotFound if unknown, Conflict while it is being deleted."""
        ...


class IngestService:
    """Accepts, processes and deletes documents.

    The index and the embedder come from providers called on first use: accepting a document and
    reading its record need neither, so taking an upload never loads the model or opens the index.
    """

    def __init__(
        self,
        settings: Settings,
        store: MetadataStore,
        queue: JobQueue,
        blobs: BlobStore,
        index: Callable[[], VectorIndex],
        embedder: Callable[[], Embedder],
        events: EventBus,
        *,
        on_corpus_change: Callable[[str, str], None] | None = None,
        knowledge_bases: KnowledgeBaseDirectory | None = None,
    ) -> None:
        self.settings = settings
        # None (tools that only process or re-index): kb_id is taken as given, unchecked.
        self.knowledge_bases = knowledge_bases
        self.store = store
        self.queue = queue
        self.blobs = blobs
        self._index_provider = index
        self._embedder_provider = embedder
        self.events = events
        self.progress: ProgressHook | None = None  # `ragline ingest` shows pages and chunks per second
        # Told (with the tenant) after the searchable chunks changed: the answer cache's scope.
        self._corpus_changed = on_corpus_change or (lambda tenant_id, kb_id: None)

    @cached_property
    def index(self) -> VectorIndex:
        return self._index_provider()

    @cached_property
    def embedder(self) -> Embedder:
        return self._embedder_provider()

    # ---- accepting --------------------------------------------------------------------------
    def check_chunking(self, chunk_size: int | None, chunk_overlap: int | None) -> tuple[int, int]:
        """The chunk size and overlap these settings make (server defaults for None), or a 422."""
        return self._chunking(chunk_size, chunk_overlap)

    def _chunking(self, chunk_size: int | None, chunk_overlap: int | None) -> tuple[int, int]:
        size = self.settings.chunk_size if chunk_size is None else chunk_size
        overlap = self.settings.chunk_overlap if chunk_overlap is None else chunk_overlap
        if not 32 <= size <= MAX_CHUNK_TOKENS:
            raise Unprocessable(
                f"chunk_size is counted in model tokens and must be between 32 and {MAX_CHUNK_TOKENS}",
                error="Invalid chunk_size",
            )
        if not 0 <= overlap < size:
            raise Unprocessable(
                "chunk_overlap must be at least 0 and smaller than chunk_size", error="Invalid chunk_overlap"
            )
        return size, overlap

    def accept(
        self,
        tenant_id: str,
        data: bytes,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
        kb_id: str | None = None,
        external_id: str | None = None,
        chunk_size: int | None = None,
        chunk_overlap: int | None = None,
        source: str = "api",
        document_id: str | None = None,
    ) -> Accepted:
        if len(data) > self.settings.max_upload_bytes:
            raise PayloadTooLarge(
                f"the file is {len(data)} bytes; the limit is {self.settings.max_upload_bytes} bytes",
                error="File too large",
            )
        kind = detect_content_type(filename, content_type, data[:8192])
        previous = self.store.find_document(tenant_id, external_id=external_id) if external_id else None
        if self.knowledge_bases is not None and (kb_id is not None or previous is None):
            # Before anything is stored: an unknown KB is a 404, one being deleted a 409. Its chunk
            # settings are the defaults of an upload that gives none (each on its own).
            kb = self.knowledge_bases.for_upload(tenant_id, kb_id or "default")
            kb_id = kb.id
            chunk_size = kb.chunk_size if chunk_size is None else chunk_size
            chunk_overlap = kb.chunk_overlap if chunk_overlap is None else chunk_overlap
        size, overlap = self._chunking(chunk_size, chunk_overlap)
        metadata = check_metadata(metadata or {}, MetadataLimits.from_settings(self.settings))
        sha = hashlib.sha256(data).hexdigest()

        if previous is None:
            same_bytes = self.store.find_document(tenant_id, content_sha256=sha)
            if same_bytes is not None and same_bytes.status != DocumentStatus.DELETING:
                if same_bytes.status != DocumentStatus.FAILED:
                    return Accepted(same_bytes, self._latest_job_id(same_bytes), duplicate=True)
                previous = same_bytes  # the same bytes failed before: try them again
        elif previous.content_sha256 == sha and previous.status != DocumentStatus.FAILED:
            return Accepted(previous, self._latest_job_id(previous), duplicate=True)
        if previous is not None and previous.status == DocumentStatus.DELETING:
            raise BadRequest(
                "that document is being deleted; upload it again once the delete is done", error="Conflict"
            )

        if previous is None and document_id is not None and self.store.get_document(tenant_id, document_id):
            raise Conflict(f"document {document_id} has already been uploaded", error="Upload already used")
        document_id = previous.id if previous else (document_id or new_id("doc"))
        version = previous.version + 1 if previous else 1
        name = filename or (f"{title}.txt" if title else None)
        blob_key = f"{tenant_id}/{document_id}/v{version}/{safe_filename(name)}"
        self.blobs.put(blob_key, data)
        now = utcnow()
        document = Document(
            id=document_id,
            tenant_id=tenant_id,
            kb_id=kb_id or (previous.kb_id if previous else "default"),
            title=title or (previous.title if previous and previous.external_id else None),
            filename=name,
            content_type=kind,
            status=DocumentStatus.QUEUED,
            chunk_count=previous.chunk_count if previous else 0,
            page_count=previous.page_count if previous else 0,
            size_bytes=len(data),
            content_sha256=sha,
            external_id=external_id,
            source=source,
            metadata=metadata,
            blob_key=blob_key,
            chunk_size=size,
            chunk_overlap=overlap,
            version=version,
            created_at=previous.created_at if previous else now,
            updated_at=now,
            indexed_at=previous.indexed_at if previous else None,
        )
        job = Job(id=new_id("job"), tenant_id=tenant_id, document_id=document_id)
        try:
            self.queue.enqueue(job, document)
        except DuplicateContent:
            # The same bytes, uploaded at the same moment, won the store's uniqueness check.
            self.blobs.delete_prefix(f"{tenant_id}/{document_id}/v{version}/")
            return self._existing_duplicate(tenant_id, sha)
        except JobUndeliverable as exc:
            # Stored, but no worker will ever see it: the document says so (uploading the same
            # bytes again retries a failed document). The caller still gets the 503.
            self.fail_job(job, exc.message)
            raise
        self.events.publish(
            "document.uploaded",
            tenant_id,
            {"document_id": document_id, "filename": name, "version": version, "job_id": job.id},
        )
        return Accepted(document, job.id)

    def _existing_duplicate(self, tenant_id: str, sha: str) -> Accepted:
        existing = self.store.find_document(tenant_id, content_sha256=sha)
        if existing is None or existing.status == DocumentStatus.DELETING:
            raise BadRequest(
                "a document with the same bytes is being deleted; upload it again once the delete is done",
                error="Conflict",
            )
        return Accepted(existing, self._latest_job_id(existing), duplicate=True)

    def _latest_job_id(self, document: Document) -> str | None:
        return self.queue.latest_job_id(document.tenant_id, document.id)

    # ---- processing -------------------------------------------------------------------------
    def process(self, job: Job) -> Document | None:
        """Run one claimed job to the end. Bad input ends `failed`; transient trouble re-queues."""
        doc = self.store.get_document(job.tenant_id, job.document_id)
        if doc is None or doc.status == DocumentStatus.DELETING:
            self.queue.finish(job.id, error="the document was deleted before it was indexed")
            return None
        doc = self.store.update_document(doc.tenant_id, doc.id, status=DocumentStatus.PROCESSING, error=None)
        try:
            passages, vectors, page_count, title = extract_passages(
                doc,
                self.blobs,
                self.embedder,
                max_chars=self.settings.chunk_max_chars,
                parse_timeout_seconds=self.settings.parse_timeout_seconds,
                progress=self.progress,
            )
            chunks = document_chunks(doc, passages, title)
            self.index.replace_document(doc.tenant_id, doc.id, chunks, vectors)
            self._corpus_changed(doc.tenant_id, doc.kb_id)  # before the document reads indexed
        except DocumentParseError as exc:
            return self.fail_job(job, str(exc))
        except (OSError, DependencyUnavailable) as exc:
            if job.attempts >= self.settings.max_ingest_attempts:
                return self.fail_job(job, f"gave up after {job.attempts} attempts: {exc}")
            log.warning("ingest of %s hit %s; re-queued", doc.id, exc)
            self.store.update_document(doc.tenant_id, doc.id, status=DocumentStatus.QUEUED)
            self.queue.release(job.id, error=str(exc))
            return None
        current = self.store.get_document(doc.tenant_id, doc.id)
        if current is None or current.status == DocumentStatus.DELETING:
            self.index.delete_document(doc.tenant_id, doc.id)  # deleted while we worked: leave nothing behind
            self.queue.finish(job.id, error="the document was deleted while it was being indexed")
            return None
        indexed = self.store.update_document(
            doc.tenant_id,
            doc.id,
            status=DocumentStatus.INDEXED,
            chunk_count=len(chunks),
            page_count=page_count,
            title=doc.title or title,
            indexed_at=utcnow(),
            error=None,
        )
        self.queue.finish(job.id)
        self._drop_older_originals(indexed)
        data = {"document_id": doc.id, "chunk_count": len(chunks), "page_count": page_count, "version": doc.version}
        self.events.publish("document.indexed", doc.tenant_id, data)
        if doc.version > 1 and doc.indexed_at is not None:
            # A new version replaced one that had been searchable (the same external_id, an
            # overwritten drop-folder file). indexed_at is carried over from version to version, so
            # a document none of whose versions was ever indexed (a failed file retried) is only
            # "indexed" the first time it is.
            self.events.publish("document.updated", doc.tenant_id, data)
        return indexed

    def fail_job(self, job: Job, reason: str) -> Document | None:
        """The one way a document ends `failed`, whatever failed it (a bad file, out of attempts or
        deliveries, a bug, a job nothing will run): no chunk of it stays searchable, its record
        says `failed` with the reason, its job is finished with it, and `error.ingestion` says so.
        A document deleted meanwhile only has its job finished."""
        doc = self.store.get_document(job.tenant_id, job.document_id)
        if doc is None or doc.status == DocumentStatus.DELETING:
            self.queue.finish(job.id, error=reason)
            return None
        # Only indexed documents have searchable chunks: a failed new version takes the old one's away.
        self.index.delete_document(doc.tenant_id, doc.id)
        self._corpus_changed(doc.tenant_id, doc.kb_id)
        failed = self.store.update_document(
            doc.tenant_id, doc.id, status=DocumentStatus.FAILED, error=reason, chunk_count=0
        )
        self.queue.finish(job.id, error=reason)
        self.events.publish(INGESTION_ERROR, doc.tenant_id, {"document_id": doc.id, "job_id": job.id, "error": reason})
        return failed

    def accept_or_report(self, tenant_id: str, subject: dict[str, str], data: bytes, **options: Any) -> Accepted | None:
        """``accept`` for a file that arrived without an API call (drop folder, presigned upload), so
        no caller hears a 4xx: a file no retry helps (wrong type, too large, bad chunking) is
        reported by `error.ingestion`, naming it by ``subject``, and None is returned.
        DependencyUnavailable still raises: the file's event must come back later."""
        try:
            return self.accept(tenant_id, data, **options)
        except DependencyUnavailable:
            raise
        except RaglineError as exc:
            self.report_refused(tenant_id, subject, exc.message, code=exc.status)
            return None

    def report_refused(self, tenant_id: str, subject: dict[str, str], error: str, *, code: int | None = None) -> None:
        """`error.ingestion` for a file that never became a document (no caller to answer): ``subject``
        names it, ``error`` says why, ``code`` is the HTTP status an API upload of it would have got."""
        log.warning("not ingested (%s): %s", subject, error)
        data: dict[str, Any] = {**subject, "error": error}
        if code is not None:
            data["code"] = code
        self.events.publish(INGESTION_ERROR, tenant_id, data)

    def _drop_older_originals(self, doc: Document) -> None:
        for version in range(1, doc.version):
            self.blobs.delete_prefix(f"{doc.tenant_id}/{doc.id}/v{version}/")

    # ---- reading ------------------------------------------------------------------------------
    def document(self, tenant_id: str, document_id: str) -> Document:
        doc = self.store.get_document(tenant_id, document_id)
        if doc is None:
            raise NotFound(f"document {document_id} does not exist", error="Document not found")
        return doc

    def list_documents(
        self, tenant_id: str, *, status: DocumentStatus | None, kb_id: str | None, limit: int, cursor: str | None
    ) -> tuple[list[Document], str | None]:
        return self.store.list_documents(tenant_id, status=status, kb_id=kb_id, limit=limit, cursor=cursor)

    def job(self, tenant_id: str, job_id: str) -> tuple[Job, Document | None]:
        """A job and its document (None once the document is deleted)."""
        job = self.store.get_job(tenant_id, job_id)
        if job is None:
            raise NotFound(f"job {job_id} does not exist", error="Job not found")
        return job, self.store.get_document(tenant_id, job.document_id)

    # ---- deleting -----------------------------------------------------------------------------
    def delete(self, tenant_id: str, document_id: str) -> None:
        doc = self.document(tenant_id, document_id)
        self.store.update_document(tenant_id, document_id, status=DocumentStatus.DELETING)
        self._finish_delete(doc)

    def _finish_delete(self, doc: Document) -> None:
        """Chunks first, then the originals, then the record; `document.deleted` last, once no chunk
        of the document is left in the index."""
        self.index.delete_document(doc.tenant_id, doc.id)
        self._corpus_changed(doc.tenant_id, doc.kb_id)  # before the document reads 404
        self.blobs.delete_prefix(f"{doc.tenant_id}/{doc.id}/")
        self.store.delete_document(doc.tenant_id, doc.id)
        # An indexing of it already under way (process) may have written its chunks back after the
        # removal above: it takes them away itself once it sees the record gone, but the event must
        # not wait on that. (One writing after this check still removes them, only after the event.)
        if self.index.count(doc.tenant_id, Term("document_id", (doc.id,))):
            log.info("document %s: chunks written back while it was deleted; removing them", doc.id)
            self.index.delete_document(doc.tenant_id, doc.id)
        self.events.publish("document.deleted", doc.tenant_id, {"document_id": doc.id})

    def delete_by_filter(self, tenant_id: str, filters: dict[str, Any], *, everything: bool = False) -> int:
        """Delete the tenant's documents matching ``filters``; empty filters need ``everything``."""
        if not isinstance(filters, dict):
            raise BadRequest("filters must be a JSON object", error="Invalid filter")
        if not filters and not everything:
            # An empty filter object is easy to send by mistake; wiping a tenant must be said outright.
            raise BadRequest(
                'empty filters match every document: send "all": true to delete them all', error="Filters required"
            )
        flt = scope_to_tenant(filters, tenant_id)
        doomed: list[Document] = []
        cursor: str | None = None
        while True:
            page, cursor = self.store.list_documents(tenant_id, limit=500, cursor=cursor)
            doomed.extend(doc for doc in page if matches(flt, document_payload(doc)))
            if cursor is None:
                break
        for doc in doomed:
            self.store.update_document(tenant_id, doc.id, status=DocumentStatus.DELETING)
        for doc in doomed:
            self._finish_delete(doc)
        return len(doomed)

    def delete_documents_of_kb(self, tenant_id: str, kb_id: str, limit: int) -> int:
        """Delete up to ``limit`` of a knowledge base's documents (each as ``delete`` does); how many
        went. The purge of a deleted KB calls it until it returns 0."""
        page, _ = self.store.list_documents(tenant_id, kb_id=kb_id, limit=limit)
        doomed = []
        for doc in page:
            try:
                doomed.append(self.store.update_document(tenant_id, doc.id, status=DocumentStatus.DELETING))
            except NotFound:
                continue  # deleted meanwhile by another caller
        for doc in doomed:
            self._finish_delete(doc)
        return len(doomed)

    def finish_interrupted_deletes(self) -> int:
        """After a crash: documents left `deleting` are deleted for good."""
        pending = self.store.documents_with_status(DocumentStatus.DELETING)
        for doc in pending:
            self._finish_delete(doc)
        return len(pending)
