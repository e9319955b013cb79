"""The buffered chat route: the whole cited answer in one JSON body."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ragline.api.activity import note_chat_tokens
from ragline.api.dependencies import ChatPrincipal, ChatServiceDep
from ragline.api.errors import AUTHENTICATED, LIMITED, WITH_BODY, error_responses
from ragline.models import ChatRequest, ChatResponse

router = APIRouter(
    prefix="/v1/kb", tags=["search and chat"], responses=error_responses(*AUTHENTICATED, *WITH_BODY, *LIMITED)
)


@router.post("/chat", response_model=ChatResponse, summary="Ask a question; get a cited answer")
def chat(request: Request, body: ChatRequest, principal: ChatPrincipal, chat_service: ChatServiceDep) -> ChatResponse:
    answer = chat_service.answer(principal.tenant_id, body, key_id=principal.key_id)
    note_chat_tokens(request, answer.usage.input_tokens, answer.usage.output_tokens)  # the key's usage
    return answer
