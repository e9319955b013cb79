"""The search route (chat and its stream live in chat.py and stream.py, so each Lambda serves one capability)."""

from __future__ import annotations

from fastapi import APIRouter

from ragline.api.dependencies import SearchPrincipal, SearchServiceDep
from ragline.api.errors import AUTHENTICATED, LIMITED, WITH_BODY, error_responses
from ragline.models import SearchRequest, SearchResponse

router = APIRouter(
    prefix="/v1/kb", tags=["search and chat"], responses=error_responses(*AUTHENTICATED, *WITH_BODY, *LIMITED)
)


@router.post("/search", response_model=SearchResponse, summary="Search the knowledge base")
def search(body: SearchRequest, principal: SearchPrincipal, search_service: SearchServiceDep) -> SearchResponse:
    return search_service.search(principal.tenant_id, body)
