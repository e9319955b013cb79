"""The buffered chat route: the whole cited answer in one JSON body."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request

from ragline.api.auth import require
from ragline.models import ChatRequest, ChatResponse, Principal, Scope

if TYPE_CHECKING:
    from ragline.container import Container

router = APIRouter(prefix="/v1/kb", tags=["search and chat"])


@router.post("/chat", response_model=ChatResponse, summary="Ask a question; get a cited answer")
def chat(body: ChatRequest, request: Request, principal: Principal = Depends(require(Scope.CHAT))) -> ChatResponse:
    container: Container = request.app.state.container
    return container.chat.answer(principal.tenant_id, body)
