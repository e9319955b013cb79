"""Knowledge bases: named collections of a tenant's documents, with optional chunking defaults.

Documents carry their knowledge base's id (``kb_id``, also in every chunk's payload, so search
and chat filter on it). Every tenant has one with id ``default``, made on first use, which
cannot be deleted.

Deleting a knowledge base takes two steps. ``delete`` marks it ``deleting`` (one write) and
schedules the purge; from that write on, search leaves out its chunks (``hidden_from_search``:
a ``kb_id`` exclusion added to the tenant's filter, which the embedded engine and OpenSearch both
apply inside the query). ``purge`` then deletes its documents one by one (chunks, originals,
records, ``document.deleted`` each), checks that no chunk of it is left in the index, removes the
record and publishes ``kb.deleted``. A purge interrupted by a crash is run again from the start
(every step is idempotent): locally when the server starts, deployed by the ingest queue's
redelivery of its message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ragline.errors import Conflict, DependencyUnavailable, NotFound
from ragline.models import new_id, utcnow
from ragline.ports import EventBus, KnowledgeBaseStore, VectorIndex
from ragline.retrieval.filters import FilterNode, Not, Term

log = logging.getLogger(__name__)

DEFAULT_KB_ID = "default"
DEFAULT_KB_NAME = "Default"
PURGE_PAGE = 100
# Chunks an indexing already under way may write back after its document's record went (it removes
# them itself once it sees the record gone): the purge waits that long for the index to be empty.
PURGE_SETTLE_ATTEMPTS = 20
PURGE_SETTLE_SECONDS = 0.25


def name_key(name: str) -> str:
    """What makes two names the same (unique per tenant): case and surrounding spaces do not count."""
    return name.strip().casefold()


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def hidden_from_search(store: KnowledgeBaseStore, tenant_id: str) -> FilterNode | None:
    """The clause search adds for the tenant's KBs being deleted (None when there are none)."""
    deleting = store.deleting_kb_ids(tenant_id)
    return Not(Term("kb_id", tuple(sorted(deleting)))) if deleting else None


class KnowledgeBaseStatus(StrEnum):
    ACTIVE = "active"
    DELETING = "deleting"


class KnowledgeBase(BaseModel):
    """The stored record (counts are computed from the documents when shown)."""

    id: str
    tenant_id: str
    name: str
    description: str = ""
    chunk_size: int | None = None
    chunk_overlap: int | None = None
    status: KnowledgeBaseStatus = KnowledgeBaseStatus.ACTIVE
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)


class KnowledgeBaseOut(BaseModel):
    id: str
    name: str
    description: str
    chunk_size: int | None = Field(description="Default chunk size (tokens) for uploads that give none")
    chunk_overlap: int | None = Field(description="Default chunk overlap (tokens) for uploads that give none")
    status: KnowledgeBaseStatus
    document_count: int
    chunk_count: int
    created_at: str
    updated_at: str


class KnowledgeBaseList(BaseModel):
    knowledge_bases: list[KnowledgeBaseOut]
    next_cursor: str | None = None


class KnowledgeBaseDeleting(BaseModel):
    status: str = "accepted"
    data: KnowledgeBaseOut


class CreateKnowledgeBaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    description: str = Field(default="", max_length=2000)
    chunk_size: int | None = Field(default=None, description="Tokens, 32 to the model's limit")
    chunk_overlap: int | None = Field(default=None, ge=0, description="Tokens, smaller than the chunk size")


class UpdateKnowledgeBaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    description: str | None = Field(default=None, max_length=2000)
    chunk_size: int | None = None
    chunk_overlap: int | None = Field(default=None, ge=0)


class PurgeScheduler(Protocol):
    """Gets ``KnowledgeBaseService.purge(tenant, kb)`` run soon, outside the request that deleted the KB:
    locally on a thread of the server, deployed by a message on the ingest queue."""

    def schedule(self, tenant_id: str, kb_id: str) -> None: ...


class ThreadPurgeScheduler:
    """Local backend: each purge on a thread of its own, in this process. A purge cut short by a stop or
    crash is resumed when the server starts again (``resume_purges``, from the background services)."""

    def __init__(self, purge: Callable[[str, str], object]) -> None:
        self._purge = purge

    def schedule(self, tenant_id: str, kb_id: str) -> None:
        threading.Thread(target=self._run, args=(tenant_id, kb_id), name=f"kb-purge-{kb_id}", daemon=True).start()

    def _run(self, tenant_id: str, kb_id: str) -> None:
        try:
            self._purge(tenant_id, kb_id)
        except DependencyUnavailable as exc:
            # Stays `deleting` (hidden from search); the next start of the server finishes it.
            log.error("purge of knowledge base %s of %s not finished: %s", kb_id, tenant_id, exc.message)


class DocumentDeleter(Protocol):
    """What the purge needs of the ingest service."""

    def delete_documents_of_kb(self, tenant_id: str, kb_id: str, limit: int) -> int: ...


class KnowledgeBaseService:
    def __init__(
        self,
        store: KnowledgeBaseStore,
        events: EventBus,
        check_chunking: Callable[[int | None, int | None], tuple[int, int]],
        purges: PurgeScheduler,
        documents: Callable[[], DocumentDeleter],
        index: Callable[[], VectorIndex],
        *,
        max_per_tenant: int = 100,
    ) -> None:
        self.store = store
        self.events = events
        self.check_chunking = check_chunking
        self.purges = purges
        self._documents = documents
        self._index = index
        self.max_per_tenant = max_per_tenant

    # ---- reading ----------------------------------------------------------------------------------
    def _ensure_default(self, tenant_id: str) -> KnowledgeBase:
        found = self.store.get_kb(tenant_id, DEFAULT_KB_ID)
        if found is not None:
            return found
        default = KnowledgeBase(id=DEFAULT_KB_ID, tenant_id=tenant_id, name=DEFAULT_KB_NAME)
        try:
            self.store.create_kb(default)
        except Conflict:
            # Made by a concurrent first use; or a KB the tenant named "Default" holds the name.
            found = self.store.get_kb(tenant_id, DEFAULT_KB_ID)
            if found is not None:
                return found
            default = default.model_copy(update={"name": f"{DEFAULT_KB_NAME} ({DEFAULT_KB_ID})"})
            self.store.create_kb(default)
        return default

    def get(self, tenant_id: str, kb_id: str) -> KnowledgeBase:
        if kb_id == DEFAULT_KB_ID:
            return self._ensure_default(tenant_id)
        found = self.store.get_kb(tenant_id, kb_id)
        if found is None:
            raise NotFound(f"knowledge base {kb_id} does not exist", error="Knowledge base not found")
        return found

    def for_upload(self, tenant_id: str, kb_id: str) -> KnowledgeBase:
        """The KB a new upload goes to: 404 if unknown, 409 while it is being deleted."""
        kb = self.get(tenant_id, kb_id)
        if kb.status == KnowledgeBaseStatus.DELETING:
            raise Conflict(f"knowledge base {kb_id} is being deleted", error="Knowledge base deleting")
        return kb

    def find_active(self, tenant_id: str, kb_id: str) -> KnowledgeBase | None:
        """The tenant's KB with this id if it exists and is not being deleted (the drop folder's test)."""
        kb = self._ensure_default(tenant_id) if kb_id == DEFAULT_KB_ID else self.store.get_kb(tenant_id, kb_id)
        return kb if kb is not None and kb.status == KnowledgeBaseStatus.ACTIVE else None

    def show(self, kb: KnowledgeBase, counts: dict[str, tuple[int, int]] | None = None) -> KnowledgeBaseOut:
        if counts is None:
            counts = self.store.kb_document_counts(kb.tenant_id)
        documents, chunks = counts.get(kb.id, (0, 0))
        return KnowledgeBaseOut(
            **kb.model_dump(include=set(KnowledgeBaseOut.model_fields)), document_count=documents, chunk_count=chunks
        )

    def list(self, tenant_id: str, *, limit: int, cursor: str | None) -> tuple[list[KnowledgeBaseOut], str | None]:
        self._ensure_default(tenant_id)
        everything = [kb for kb in self.store.list_kbs(tenant_id) if cursor is None or kb.id > cursor]
        page = everything[:limit]
        counts = self.store.kb_document_counts(tenant_id) if page else {}
        return [self.show(kb, counts) for kb in page], (page[-1].id if len(everything) > limit else None)

    def hidden_from_search(self, tenant_id: str) -> FilterNode | None:
        return hidden_from_search(self.store, tenant_id)

    # ---- writing ----------------------------------------------------------------------------------
    def _chunk_defaults(self, size: int | None, overlap: int | None) -> None:
        if size is not None or overlap is not None:
            self.check_chunking(size, overlap)  # 422 now, not at every upload that inherits them

    def create(self, tenant_id: str, body: CreateKnowledgeBaseRequest) -> KnowledgeBase:
        self._chunk_defaults(body.chunk_size, body.chunk_overlap)
        self._ensure_default(tenant_id)
        if len(self.store.list_kbs(tenant_id)) >= self.max_per_tenant:
            raise Conflict(
                f"a tenant has at most {self.max_per_tenant} knowledge bases", error="Too many knowledge bases"
            )
        kb = KnowledgeBase(id=new_id("kb"), tenant_id=tenant_id, **body.model_dump())
        self.store.create_kb(kb)  # Conflict when the name is taken
        self.events.publish("kb.created", tenant_id, {"kb_id": kb.id, "name": kb.name})
        return kb

    def update(self, tenant_id: str, kb_id: str, changes: dict[str, Any]) -> KnowledgeBase:
        kb = self.get(tenant_id, kb_id)
        if kb.status == KnowledgeBaseStatus.DELETING:
            raise Conflict(f"knowledge base {kb_id} is being deleted", error="Knowledge base deleting")
        if "name" in changes and changes["name"] is None:
            del changes["name"]  # a name is required: null leaves it as it is
        if {"chunk_size", "chunk_overlap"} & set(changes):
            merged = {"chunk_size": kb.chunk_size, "chunk_overlap": kb.chunk_overlap, **changes}
            self._chunk_defaults(merged["chunk_size"], merged["chunk_overlap"])
        if "description" in changes and changes["description"] is None:
            changes["description"] = ""
        if not changes:
            return kb
        return self.store.update_kb(tenant_id, kb_id, changes)

    def delete(self, tenant_id: str, kb_id: str) -> KnowledgeBase:
        """Mark it deleting (hidden from search from now on) and schedule its purge."""
        kb = self.get(tenant_id, kb_id)
        if kb.id == DEFAULT_KB_ID:
            raise Conflict("the default knowledge base cannot be deleted", error="Default knowledge base")
        marked = self.store.mark_kb_deleting(tenant_id, kb_id)
        if marked is None:
            raise NotFound(f"knowledge base {kb_id} does not exist", error="Knowledge base not found")
        self.purges.schedule(tenant_id, kb_id)
        return marked

    def purge(self, tenant_id: str, kb_id: str) -> bool:
        """Delete a deleting KB's documents, chunks and originals, then the KB; ``kb.deleted`` last.
        Idempotent. False when there was nothing to purge (no such KB, or it is not being deleted)."""
        kb = self.store.get_kb(tenant_id, kb_id)
        if kb is None or kb.status != KnowledgeBaseStatus.DELETING:
            return False
        deleted = 0
        while True:
            removed = self._documents().delete_documents_of_kb(tenant_id, kb_id, PURGE_PAGE)
            deleted += removed
            if removed == 0:
                break
        self._wait_for_no_chunks(tenant_id, kb_id)
        # An upload that passed its KB check just before the delete may have stored its document since.
        deleted += self._documents().delete_documents_of_kb(tenant_id, kb_id, PURGE_PAGE)
        self._wait_for_no_chunks(tenant_id, kb_id)
        self.store.delete_kb(tenant_id, kb_id)
        self.events.publish("kb.deleted", tenant_id, {"kb_id": kb_id, "name": kb.name, "document_count": deleted})
        log.info("knowledge base %s of %s deleted with %d documents", kb_id, tenant_id, deleted)
        return True

    def _wait_for_no_chunks(self, tenant_id: str, kb_id: str) -> None:
        index = self._index()
        chunks = Term("kb_id", (kb_id,))
        for _ in range(PURGE_SETTLE_ATTEMPTS):
            if index.count(tenant_id, chunks) == 0:
                return
            time.sleep(PURGE_SETTLE_SECONDS)
        # Stays `deleting` (still hidden from search): the next purge (restart, redelivery) tries again.
        raise DependencyUnavailable(
            f"chunks of knowledge base {kb_id} are still in the index", error="Knowledge base not purged"
        )

    def resume_purges(self) -> int:
        """After a restart: purge every KB left `deleting`. Returns how many were finished."""
        finished = 0
        for kb in self.store.kbs_deleting():
            try:
                finished += self.purge(kb.tenant_id, kb.id)
            except DependencyUnavailable as exc:
                log.error("purge of knowledge base %s of %s not finished: %s", kb.id, kb.tenant_id, exc.message)
        return finished
