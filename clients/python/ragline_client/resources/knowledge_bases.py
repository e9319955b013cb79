"""Knowledge bases: named collections of a tenant's documents (``default`` always exists)."""

from __future__ import annotations

from typing import AsyncIterator, Iterator, List, Optional, Union

from ragline_client._core import NOT_GIVEN, Call, NotGiven, body, envelope, model, segment
from ragline_client._transport import AsyncTransport, SyncTransport
from ragline_client.models import Document, DocumentPage, KnowledgeBase, KnowledgeBasePage


def create_call(
    name: str, description: Optional[str], chunk_size: Optional[int], chunk_overlap: Optional[int]
) -> Call[KnowledgeBase]:
    json = body(name=name, description=description, chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    return Call("POST", "/v1/knowledge-bases", model(KnowledgeBase), json=json)


def list_page_call(limit: int, cursor: Optional[str]) -> Call[KnowledgeBasePage]:
    return Call("GET", "/v1/knowledge-bases", model(KnowledgeBasePage), params={"limit": limit, "cursor": cursor})


def get_call(kb_id: str) -> Call[KnowledgeBase]:
    return Call("GET", f"/v1/knowledge-bases/{segment(kb_id)}", model(KnowledgeBase))


def update_call(
    kb_id: str,
    name: Union[str, NotGiven],
    description: Union[str, NotGiven],
    chunk_size: Union[int, None, NotGiven],
    chunk_overlap: Union[int, None, NotGiven],
) -> Call[KnowledgeBase]:
    # Only the fields given are sent; None is sent as null, which clears a chunk default.
    fields = {"name": name, "description": description, "chunk_size": chunk_size, "chunk_overlap": chunk_overlap}
    json = {k: v for k, v in fields.items() if not isinstance(v, NotGiven)}
    return Call("PATCH", f"/v1/knowledge-bases/{segment(kb_id)}", model(KnowledgeBase), json=json)


def delete_call(kb_id: str) -> Call[KnowledgeBase]:
    return Call("DELETE", f"/v1/knowledge-bases/{segment(kb_id)}", envelope(KnowledgeBase))


def documents_page_call(kb_id: str, status: Optional[str], limit: int, cursor: Optional[str]) -> Call[DocumentPage]:
    params = {"status": status, "limit": limit, "cursor": cursor}
    return Call("GET", f"/v1/knowledge-bases/{segment(kb_id)}/documents", model(DocumentPage), params=params)


def _knowledge_bases(page: KnowledgeBasePage) -> List[KnowledgeBase]:
    return page.knowledge_bases


def _documents(page: DocumentPage) -> List[Document]:
    return page.documents


# The server's largest page of knowledge bases and of a KB's documents.
MAX_PAGE_SIZE = 100


class KnowledgeBases:
    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def create(
        self,
        name: str,
        *,
        description: Optional[str] = None,
        chunk_size: Optional[int] = None,
        chunk_overlap: Optional[int] = None,
    ) -> KnowledgeBase:
        """A new KB; ``ConflictError`` if the tenant already has one of that name."""
        return self._t.request(create_call(name, description, chunk_size, chunk_overlap))

    def list(self, *, page_size: int = MAX_PAGE_SIZE) -> Iterator[KnowledgeBase]:
        """Every KB of the tenant, ``default`` included, in creation order."""
        return self._t.paginate(lambda cursor: list_page_call(page_size, cursor), _knowledge_bases)

    def get(self, kb_id: str) -> KnowledgeBase:
        return self._t.request(get_call(kb_id))

    def update(
        self,
        kb_id: str,
        *,
        name: Union[str, NotGiven] = NOT_GIVEN,
        description: Union[str, NotGiven] = NOT_GIVEN,
        chunk_size: Union[int, None, NotGiven] = NOT_GIVEN,
        chunk_overlap: Union[int, None, NotGiven] = NOT_GIVEN,
    ) -> KnowledgeBase:
        """Change the fields given (``chunk_size=None`` clears the KB's default)."""
        return self._t.request(update_call(kb_id, name, description, chunk_size, chunk_overlap))

    def delete(self, kb_id: str) -> KnowledgeBase:
        """Start deleting a KB with its documents: answers at once with the KB in status ``deleting``;
        ``get`` raises ``NotFoundError`` once the purge is done."""
        return self._t.request(delete_call(kb_id))

    def documents(
        self, kb_id: str, *, status: Optional[str] = None, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[Document]:
        """Every document of the KB, page after page."""
        return self._t.paginate(lambda cursor: documents_page_call(kb_id, status, page_size, cursor), _documents)


class AsyncKnowledgeBases:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def create(
        self,
        name: str,
        *,
        description: Optional[str] = None,
        chunk_size: Optional[int] = None,
        chunk_overlap: Optional[int] = None,
    ) -> KnowledgeBase:
        return await self._t.request(create_call(name, description, chunk_size, chunk_overlap))

    def list(self, *, page_size: int = MAX_PAGE_SIZE) -> AsyncIterator[KnowledgeBase]:
        return self._t.paginate(lambda cursor: list_page_call(page_size, cursor), _knowledge_bases)

    async def get(self, kb_id: str) -> KnowledgeBase:
        return await self._t.request(get_call(kb_id))

    async def update(
        self,
        kb_id: str,
        *,
        name: Union[str, NotGiven] = NOT_GIVEN,
        description: Union[str, NotGiven] = NOT_GIVEN,
        chunk_size: Union[int, None, NotGiven] = NOT_GIVEN,
        chunk_overlap: Union[int, None, NotGiven] = NOT_GIVEN,
    ) -> KnowledgeBase:
        return await self._t.request(update_call(kb_id, name, description, chunk_size, chunk_overlap))

    async def delete(self, kb_id: str) -> KnowledgeBase:
        return await self._t.request(delete_call(kb_id))

    def documents(
        self, kb_id: str, *, status: Optional[str] = None, page_size: int = MAX_PAGE_SIZE
    ) -> AsyncIterator[Document]:
        return self._t.paginate(lambda cursor: documents_page_call(kb_id, status, page_size, cursor), _documents)
