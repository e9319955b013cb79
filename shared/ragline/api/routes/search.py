"""The search route (chat and its stream live in chat.py and stream.py, so each Lambda serves one capability)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request

from ragline.api.auth import require
from ragline.models import Principal, Scope, SearchRequest, SearchResponse

if TYPE_CHECKING:
    from ragline.container import Container

router = APIRouter(prefix="/v1/kb", tags=["search and chat"])


def _container(request: Request) -> Container:
    return request.app.state.container


@router.post("/search", response_model=SearchResponse, summary="Search the knowledge base")
def search(
    body: SearchRequest, request: Request, principal: Principal = Depends(require(Scope.SEARCH))
) -> SearchResponse:
    return _container(request).search.search(principal.tenant_id, body)
