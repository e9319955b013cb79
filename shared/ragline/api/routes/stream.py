"""The streamed chat route: the cited answer as Server-Sent Events (served by uvicorn, locally and
under the Lambda Web Adapter; Mangum would buffer it)."""

from __future__ import annotations

import json
import logging
from collections.abc import Generator
from contextlib import closing
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from ragline.api.activity import note_chat_tokens
from ragline.api.dependencies import ChatPrincipal, ChatServiceDep
from ragline.api.errors import AUTHENTICATED, LIMITED, WITH_BODY, error_responses
from ragline.api.streaming import ThreadedStreamingResponse
from ragline.errors import RaglineError
from ragline.models import ChatRequest

log = logging.getLogger(__name__)
router = APIRouter(
    prefix="/v1/kb", tags=["search and chat"], responses=error_responses(*AUTHENTICATED, *WITH_BODY, *LIMITED)
)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


def sse_frame(payload: dict[str, Any] | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"


# One Server-Sent Event, as a client's parser sees it: its `data` line is a JSON object
# {"event": "sources" | "message" | "done" | "error", "data": {...}}, or the final "[DONE]".
SSE_EVENT_SCHEMA = {
    "type": "object",
    "properties": {"data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"}},
    "required": ["data"],
}


@router.post(
    "/chat/stream",
    summary="Ask a question; get the cited answer as Server-Sent Events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}}}},
)
async def chat_stream(
    request: Request, body: ChatRequest, principal: ChatPrincipal, chat_service: ChatServiceDep
) -> StreamingResponse:
    # Retrieval runs before the first byte, so its errors are ordinary HTTP errors.
    prepared = await run_in_threadpool(chat_service.prepare, principal.tenant_id, body, key_id=principal.key_id)

    def frames() -> Generator[str, None, None]:
        try:
            with closing(chat_service.stream_events(principal.tenant_id, prepared)) as events:
                for event in events:
                    if event.get("event") == "done":  # the key's usage counts the answer's tokens
                        used = event["data"]["usage"]
                        note_chat_tokens(request, used["input_tokens"], used["output_tokens"])
                    yield sse_frame(event)
        except RaglineError as exc:
            yield sse_frame({"event": "error", "data": {"message": exc.message}})
        except Exception:
            # Headers are gone: the error event is the only way left to tell the client.
            log.exception("chat stream failed after it began")
            yield sse_frame({"event": "error", "data": {"message": "internal error while answering"}})
        yield sse_frame("[DONE]")

    # A client who leaves stops the answer at once: the model's stream is closed, on the thread that reads it.
    return ThreadedStreamingResponse(frames(), media_type="text/event-stream", headers=SSE_HEADERS)
