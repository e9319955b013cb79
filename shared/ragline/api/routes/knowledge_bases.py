"""Knowledge bases: create, list, get, change, delete (202: the purge finishes later), and their documents.

Scopes: ingest to create, change, delete and list a KB's documents (as for documents); search or
ingest to read a KB or the list.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ragline.api.dependencies import IngestPrincipal, IngestServiceDep, KnowledgeBaseServiceDep, ReaderPrincipal
from ragline.api.errors import AUTHENTICATED, WITH_BODY, error_responses
from ragline.knowledge_bases import (
    CreateKnowledgeBaseRequest,
    KnowledgeBaseDeleting,
    KnowledgeBaseList,
    KnowledgeBaseOut,
    UpdateKnowledgeBaseRequest,
)
from ragline.models import DocumentList, DocumentStatus

# Ids are short (kb_… or "default"); a longer one cannot exist, and would not fit a DynamoDB key.
KbId = Annotated[str, Path(max_length=100)]

router = APIRouter(prefix="/v1/knowledge-bases", tags=["knowledge bases"], responses=error_responses(*AUTHENTICATED))


@router.post(
    "",
    status_code=201,
    summary="Create a knowledge base (name unique per tenant)",
    response_model=KnowledgeBaseOut,
    responses=error_responses(*WITH_BODY, 409),
)
def create_knowledge_base(
    body: CreateKnowledgeBaseRequest, principal: IngestPrincipal, kbs: KnowledgeBaseServiceDep
) -> Any:
    return kbs.show(kbs.create(principal.tenant_id, body), counts={})


@router.get("", summary="List knowledge bases (the default one included)", response_model=KnowledgeBaseList)
def list_knowledge_bases(
    principal: ReaderPrincipal,
    kbs: KnowledgeBaseServiceDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> Any:
    page, next_cursor = kbs.list(principal.tenant_id, limit=limit, cursor=cursor)
    return {"knowledge_bases": page, "next_cursor": next_cursor}


@router.get("/{kb_id}", summary="Get a knowledge base", response_model=KnowledgeBaseOut, responses=error_responses(404))
def get_knowledge_base(kb_id: KbId, principal: ReaderPrincipal, kbs: KnowledgeBaseServiceDep) -> Any:
    return kbs.show(kbs.get(principal.tenant_id, kb_id))


@router.patch(
    "/{kb_id}",
    summary="Change a knowledge base (name, description, chunk defaults)",
    response_model=KnowledgeBaseOut,
    responses=error_responses(*WITH_BODY, 404, 409),
)
def update_knowledge_base(
    kb_id: KbId, body: UpdateKnowledgeBaseRequest, principal: IngestPrincipal, kbs: KnowledgeBaseServiceDep
) -> Any:
    return kbs.show(kbs.update(principal.tenant_id, kb_id, body.model_dump(exclude_unset=True)))


@router.delete(
    "/{kb_id}",
    status_code=202,
    summary="Delete a knowledge base with its documents, chunks and originals",
    description="Answers 202 with the KB in status `deleting`: from then on no search sees its chunks. "
    "When the purge is done the KB is gone (GET answers 404) and `kb.deleted` is published. "
    "The default knowledge base cannot be deleted (409).",
    response_model=KnowledgeBaseDeleting,
    responses=error_responses(404, 409),
)
async def delete_knowledge_base(kb_id: KbId, principal: IngestPrincipal, kbs: KnowledgeBaseServiceDep) -> JSONResponse:
    kb = await run_in_threadpool(kbs.delete, principal.tenant_id, kb_id)
    shown = await run_in_threadpool(kbs.show, kb)
    return JSONResponse({"status": "accepted", "data": shown.model_dump(mode="json")}, status_code=202)


@router.get(
    "/{kb_id}/documents",
    summary="List a knowledge base's documents",
    response_model=DocumentList,
    response_model_exclude_unset=True,  # no `error` key on a document without one, as in GET /v1/kb/documents
    responses=error_responses(404),
)
def list_kb_documents(
    kb_id: KbId,
    principal: IngestPrincipal,
    kbs: KnowledgeBaseServiceDep,
    ingest: IngestServiceDep,
    status: DocumentStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    kb = kbs.get(principal.tenant_id, kb_id)  # 404 for an unknown (or another tenant's) KB
    documents, next_cursor = ingest.list_documents(
        principal.tenant_id, status=status, kb_id=kb.id, limit=limit, cursor=cursor
    )
    return {"documents": [d.public() for d in documents], "next_cursor": next_cursor}
