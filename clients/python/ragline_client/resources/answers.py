"""Search, and chat: the whole cited answer, or the same answer streamed as typed events."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from ragline_client._core import Call, body, raw
from ragline_client._core import model as json_model
from ragline_client._transport import AsyncTransport, SyncTransport
from ragline_client.models import ChatResponse, SearchResponse
from ragline_client.streaming import AsyncChatStream, ChatStream

# Earlier turns of the conversation: {"role": "user" | "assistant", "content": "..."} each.
History = Sequence[Mapping[str, str]]


def search_call(
    query: str,
    *,
    filters: Optional[Dict[str, Any]],
    limit: Optional[int],
    mode: Optional[str],
    score_threshold: Optional[float],
) -> Call[SearchResponse]:
    # A search changes nothing: safe to retry.
    return Call(
        "POST",
        "/v1/kb/search",
        json_model(SearchResponse),
        json=body(query=query, filters=filters, limit=limit, mode=mode, score_threshold=score_threshold),
    )


def chat_body(
    query: str,
    *,
    filters: Optional[Dict[str, Any]],
    limit: Optional[int],
    mode: Optional[str],
    model_name: Optional[str],
    temperature: Optional[float],
    max_tokens: Optional[int],
    history: Optional[History],
) -> Dict[str, Any]:
    turns: Optional[List[Dict[str, str]]] = None
    if history is not None:
        turns = [{"role": turn["role"], "content": turn["content"]} for turn in history]
    return body(
        query=query,
        filters=filters,
        limit=limit,
        mode=mode,
        model=model_name,
        temperature=temperature,
        max_tokens=max_tokens,
        history=turns,
    )


def chat_call(json: Dict[str, Any]) -> Call[ChatResponse]:
    # Retried with one Idempotency-Key: the server replays the first answer rather than answering twice.
    return Call("POST", "/v1/kb/chat", json_model(ChatResponse), json=json)


def chat_stream_call(json: Dict[str, Any]) -> Call[Any]:
    # Retried only until the answer starts (an error status, or no connection): the transport hands back the
    # open response, and nothing is sent again once events flow.
    return Call("POST", "/v1/kb/chat/stream", raw, json=json, stream=True)


class Chat:
    """``client.chat(query)`` answers whole; ``client.chat.stream(query)`` streams the answer."""

    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def __call__(
        self,
        query: str,
        *,
        filters: Optional[Dict[str, Any]] = None,
        limit: Optional[int] = None,
        mode: Optional[str] = None,
        model: Optional[str] = None,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        history: Optional[History] = None,
    ) -> ChatResponse:
        json = chat_body(
            query,
            filters=filters,
            limit=limit,
            mode=mode,
            model_name=model,
            temperature=temperature,
            max_tokens=max_tokens,
            history=history,
        )
        return self._t.request(chat_call(json))

    def stream(
        self,
        query: str,
        *,
        filters: Optional[Dict[str, Any]] = None,
        limit: Optional[int] = None,
        mode: Optional[str] = None,
        model: Optional[str] = None,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        history: Optional[History] = None,
    ) -> ChatStream:
        """The answer as ``SourcesEvent``, ``MessageEvent``…, then ``DoneEvent`` (or ``ErrorEvent``).
        Use ``with client.chat.stream(q) as stream: for event in stream: …``."""
        call = chat_stream_call(
            chat_body(
                query,
                filters=filters,
                limit=limit,
                mode=mode,
                model_name=model,
                temperature=temperature,
                max_tokens=max_tokens,
                history=history,
            )
        )
        return ChatStream(lambda: self._t.send(call))


class AsyncChat:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def __call__(
        self,
        query: str,
        *,
        filters: Optional[Dict[str, Any]] = None,
        limit: Optional[int] = None,
        mode: Optional[str] = None,
        model: Optional[str] = None,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        history: Optional[History] = None,
    ) -> ChatResponse:
        json = chat_body(
            query,
            filters=filters,
            limit=limit,
            mode=mode,
            model_name=model,
            temperature=temperature,
            max_tokens=max_tokens,
            history=history,
        )
        return await self._t.request(chat_call(json))

    def stream(
        self,
        query: str,
        *,
        filters: Optional[Dict[str, Any]] = None,
        limit: Optional[int] = None,
        mode: Optional[str] = None,
        model: Optional[str] = None,
        temperature: Optional[float] = None,
        max_tokens: Optional[int] = None,
        history: Optional[History] = None,
    ) -> AsyncChatStream:
        """``async with client.chat.stream(q) as stream: async for event in stream: …``."""
        call = chat_stream_call(
            chat_body(
                query,
                filters=filters,
                limit=limit,
                mode=mode,
                model_name=model,
                temperature=temperature,
                max_tokens=max_tokens,
                history=history,
            )
        )
        return AsyncChatStream(lambda: self._t.send(call))
