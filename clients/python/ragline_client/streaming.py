"""``chat.stream()``: the answer as typed events, read from the server's Server-Sent Events.

The server sends one JSON object per event, ``data: {"event": "sources" | "message" | "done" | "error",
"data": {...}}``, and ends with ``data: [DONE]``. Events of a type this client does not know are skipped
(a newer server may add some). A failure after the stream began arrives as an ``ErrorEvent`` (the
HTTP status was already 200); a stream cut before it completed raises ``APIConnectionError``.

Use the stream as a context manager, or iterate it to the end: either closes the HTTP response. Leaving
a ``with`` block early closes it at once, which stops the answer on the server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, Iterator, List, Optional, Type, Union

import httpx
from pydantic import Field, ValidationError

from ragline_client.errors import APIConnectionError, APIResponseValidationError, APITimeoutError
from ragline_client.models import RaglineModel, Source, Timings, Usage


class SourcesEvent(RaglineModel):
    """First: the passages the answer may cite, ``[n]`` being ``sources[n - 1]``."""

    type: str = "sources"
    sources: List[Source]


class MessageEvent(RaglineModel):
    """A piece of the answer's text."""

    type: str = "message"
    content: str


class DoneEvent(RaglineModel):
    """Last: the answer is complete and recorded."""

    type: str = "done"
    query_id: str
    usage: Usage = Field(default_factory=Usage)
    model: Optional[str] = None
    latency_ms: Optional[float] = None
    confidence: Optional[float] = None
    grounded: Optional[bool] = None
    cached: bool = False
    query_time_ms: Optional[float] = None
    timings: Timings = Field(default_factory=Timings)
    sources_used: List[str] = Field(default_factory=list)


class ErrorEvent(RaglineModel):
    """The answer failed after the stream began; nothing follows."""

    type: str = "error"
    message: str


ChatStreamEvent = Union[SourcesEvent, MessageEvent, DoneEvent, ErrorEvent]
EVENT_TYPES: Dict[str, Type[RaglineModel]] = {
    "sources": SourcesEvent,
    "message": MessageEvent,
    "done": DoneEvent,
    "error": ErrorEvent,
}
DONE_MARKER = "[DONE]"


@dataclass
class ServerSentEvent:
    data: str
    event: Optional[str] = None


class SSEDecoder:
    """Lines of a ``text/event-stream`` body in, whole events out (the parts of the SSE format Ragline uses:
    ``data`` lines, joined; ``event``; comments and other fields ignored)."""

    def __init__(self) -> None:
        self._data: List[str] = []
        self._event: Optional[str] = None

    def feed(self, line: str) -> Optional[ServerSentEvent]:
        if not line:  # a blank line ends the event
            return self.flush()
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None

    def flush(self) -> Optional[ServerSentEvent]:
        if not self._data:
            self._event = None
            return None
        event = ServerSentEvent("\n".join(self._data), self._event)
        self._data, self._event = [], None
        return event


class StreamState:
    """What the sync and async streams share: decoding, typed events, and what was received so far."""

    def __init__(self, response: Optional[httpx.Response] = None) -> None:
        self._decoder = SSEDecoder()
        self.finished = False  # [DONE] received
        self.sources: List[Source] = []
        self.text_parts: List[str] = []
        self.done: Optional[DoneEvent] = None
        self.error: Optional[ErrorEvent] = None
        self.response = response

    def feed(self, line: str) -> Optional[ChatStreamEvent]:
        sse = self._decoder.feed(line)
        return None if sse is None else self._event(sse)

    def end(self, request: Optional[httpx.Request]) -> Optional[ChatStreamEvent]:
        """The body ended: the last event if it had no blank line after it; APIConnectionError if cut short."""
        sse = self._decoder.flush()
        event = None if sse is None else self._event(sse)
        if not self.finished and self.done is None and self.error is None:
            raise APIConnectionError("the chat stream ended before the answer was complete", request=request)
        self.finished = True
        return event

    def _event(self, sse: ServerSentEvent) -> Optional[ChatStreamEvent]:
        if sse.data.strip() == DONE_MARKER:
            self.finished = True
            return None
        try:
            payload = json.loads(sse.data)
        except ValueError:
            return None  # not one of Ragline's JSON events (a proxy's keep-alive): skipped like an unknown type
        if not isinstance(payload, dict):
            return None
        name = payload.get("event") or sse.event
        cls = EVENT_TYPES.get(name) if isinstance(name, str) else None
        if cls is None:
            return None  # a type this client does not know yet
        try:
            event: Any = cls.model_validate(payload.get("data") or {})
        except ValidationError as exc:
            if self.response is None:
                raise
            raise APIResponseValidationError(
                f"a {name} event of the chat stream: {exc}", response=self.response
            ) from None
        if isinstance(event, SourcesEvent):
            self.sources = event.sources
        elif isinstance(event, MessageEvent):
            self.text_parts.append(event.content)
        elif isinstance(event, DoneEvent):
            self.done = event
        elif isinstance(event, ErrorEvent):
            self.error = event
        return event


def _transport_error(exc: httpx.TransportError, request: Optional[httpx.Request]) -> APIConnectionError:
    cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
    return cls(f"the chat stream broke off: {type(exc).__name__}: {exc}", request=request)


class _StreamAccess:
    _state: StreamState

    @property
    def text(self) -> str:
        """The answer's text received so far."""
        return "".join(self._state.text_parts)

    @property
    def sources(self) -> List[Source]:
        return self._state.sources

    @property
    def done(self) -> Optional[DoneEvent]:
        """The ``done`` event, once received."""
        return self._state.done

    @property
    def error(self) -> Optional[ErrorEvent]:
        """The ``error`` event, if the answer failed after the stream began."""
        return self._state.error


class ChatStream(_StreamAccess):
    """An iterator of ``ChatStreamEvent``; opens the request on ``with`` or at the first event."""

    def __init__(self, open_response: Callable[[], httpx.Response]) -> None:
        self._open_response = open_response
        self._state = StreamState()
        self.response: Optional[httpx.Response] = None
        self._lines: Optional[Iterator[str]] = None
        self._closed = False

    def _open(self) -> Iterator[str]:
        if self._lines is None:
            self.response = self._open_response()  # retried and raised as typed errors by the transport
            self._state.response = self.response
            self._lines = self.response.iter_lines()
        return self._lines

    def __enter__(self) -> ChatStream:
        self._open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> ChatStreamEvent:
        if self._closed or self._state.finished:
            self.close()
            raise StopIteration
        lines = self._open()
        request = self.response.request if self.response is not None else None
        try:
            for line in lines:
                event = self._state.feed(line)
                if self._state.finished:
                    self.close()
                if event is not None:
                    return event
                if self._state.finished:
                    raise StopIteration
            event = self._state.end(request)
        except httpx.TransportError as exc:
            self.close()
            raise _transport_error(exc, request) from exc
        except BaseException:
            self.close()
            raise
        self.close()
        if event is None:
            raise StopIteration
        return event

    def close(self) -> None:
        """Close the HTTP response (the server stops the answer if it was still coming)."""
        self._closed = True
        lines, self._lines = self._lines, None
        if lines is not None and hasattr(lines, "close"):
            lines.close()
        if self.response is not None:
            self.response.close()

    def __del__(self) -> None:
        # Iteration abandoned without `with`: give the connection back rather than hold it until exit.
        response = getattr(self, "response", None)
        if response is not None and not response.is_closed:
            response.close()


class AsyncChatStream(_StreamAccess):
    """An async iterator of ``ChatStreamEvent``; opens the request on ``async with`` or at the first event."""

    def __init__(self, open_response: Callable[[], Awaitable[httpx.Response]]) -> None:
        self._open_response = open_response
        self._state = StreamState()
        self.response: Optional[httpx.Response] = None
        self._lines: Optional[AsyncIterator[str]] = None
        self._closed = False

    async def _open(self) -> AsyncIterator[str]:
        if self._lines is None:
            self.response = await self._open_response()
            self._state.response = self.response
            self._lines = self.response.aiter_lines()
        return self._lines

    async def __aenter__(self) -> AsyncChatStream:
        await self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> ChatStreamEvent:
        if self._closed or self._state.finished:
            await self.close()
            raise StopAsyncIteration
        lines = await self._open()
        request = self.response.request if self.response is not None else None
        try:
            async for line in lines:
                event = self._state.feed(line)
                if self._state.finished:
                    await self.close()
                if event is not None:
                    return event
                if self._state.finished:
                    raise StopAsyncIteration
            event = self._state.end(request)
        except httpx.TransportError as exc:
            await self.close()
            raise _transport_error(exc, request) from exc
        except BaseException:
            await self.close()
            raise
        await self.close()
        if event is None:
            raise StopAsyncIteration
        return event

    async def close(self) -> None:
        """Close the HTTP response (the server stops the answer if it was still coming)."""
        self._closed = True
        lines, self._lines = self._lines, None
        if lines is not None and hasattr(lines, "aclose"):
            await lines.aclose()  # the line generator first: it holds the response's byte stream
        if self.response is not None:
            await self.response.aclose()
