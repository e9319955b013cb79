"""``chat.stream()`` against streams a healthy server does not send on cue, from a real HTTP server on 127.0.0.1:
an answer that fails midway, event types this client does not know, a stream cut short, a client that leaves
early -- and against the real server, a stream left early."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from ragline_client import (
    APIConnectionError,
    AuthenticationError,
    DoneEvent,
    ErrorEvent,
    MessageEvent,
    SourcesEvent,
)

from tests.sdk.conftest import Both
from tests.sdk.scripted import ScriptedServer, error_reply, sse, sse_reply
from tests.support import Server

SOURCE = {"id": "chk_1", "score": 0.9, "document_id": "doc_1", "title": "Refunds", "filename": None, "page": 2,
          "text": "Refunds take five days."}  # fmt: skip


def test_a_stream_that_fails_midway_ends_with_an_error_event(both: Both) -> None:
    frames = sse(
        {"event": "sources", "data": {"sources": [SOURCE]}},
        {"event": "message", "data": {"content": "Refunds take"}},
        {"event": "thinking", "data": {"note": "a type this client does not know"}},
        "not json at all",
        {"event": "message", "data": {"content": " five days [1]."}},
        {"event": "error", "data": {"message": "the model stopped answering"}},
        "[DONE]",
    )
    with ScriptedServer(lambda n, request: sse_reply(frames)) as server:
        client = both.client("rl_test", server.url)
        stream = client.chat.stream("How long do refunds take?", limit=3)
        events = both.events(stream)
        sent = server.requests[0]

    assert [type(e) for e in events] == [SourcesEvent, MessageEvent, MessageEvent, ErrorEvent]
    assert events[0].sources[0].page == 2 and events[0].sources[0].text == "Refunds take five days."
    assert stream.text == "Refunds take five days [1]." and stream.done is None
    assert stream.error == events[-1] and stream.error.message == "the model stopped answering"
    assert (sent.method, sent.path, sent.headers["accept"]) == ("POST", "/v1/kb/chat/stream", "text/event-stream")
    assert sent.headers["x-api-key"] == "rl_test" and json.loads(sent.body) == {
        "query": "How long do refunds take?",
        "limit": 3,
    }


def test_a_stream_cut_before_its_end_raises(both: Both) -> None:
    frames = sse({"event": "sources", "data": {"sources": []}}, {"event": "message", "data": {"content": "Half"}})
    with ScriptedServer(lambda n, request: sse_reply(frames)) as server:
        client = both.client("rl_test", server.url)
        received: list[Any] = []

        async def read_async() -> None:
            async with client.chat.stream("q") as stream:
                async for event in stream:
                    received.append(event)

        def read_sync() -> None:
            with client.chat.stream("q") as stream:
                for event in stream:
                    received.append(event)

        with pytest.raises(APIConnectionError, match="ended before the answer was complete"):
            both(read_async()) if both.kind == "async" else read_sync()
    assert [type(e) for e in received] == [SourcesEvent, MessageEvent]


def test_a_done_event_without_the_final_marker_is_complete(both: Both) -> None:
    done = {"event": "done", "data": {"query_id": "qry_1", "usage": {"input_tokens": 1, "output_tokens": 2}}}
    frames = sse({"event": "message", "data": {"content": "All"}}, done)
    with ScriptedServer(lambda n, request: sse_reply(frames)) as server:
        events = both.events(both.client("rl_test", server.url).chat.stream("q"))
    assert [type(e) for e in events] == [MessageEvent, DoneEvent] and events[1].usage.output_tokens == 2


def test_leaving_the_stream_early_closes_the_connection(both: Both) -> None:
    endless = sse(*({"event": "message", "data": {"content": f"token {n} "}} for n in range(400)), pause=0.02)
    with ScriptedServer(lambda n, request: sse_reply(endless)) as server:
        stream = both.client("rl_test", server.url).chat.stream("q")
        events = both.events(stream, stop_after=3)
        left = time.monotonic()
        assert [e.content for e in events] == ["token 0 ", "token 1 ", "token 2 "]
        assert stream.response.is_closed
        deadline = left + 5
        while server.disconnected_at is None and time.monotonic() < deadline:
            time.sleep(0.02)
        # The server's next writes fail: it learns the client left (a real server then stops the answer).
        assert server.disconnected_at is not None and server.disconnected_at - left < 2


def test_an_error_status_before_the_stream_raises_a_typed_error(both: Both) -> None:
    with ScriptedServer(lambda n, request: error_reply(401, "Invalid API key", "the API key is not valid")) as server:
        stream = both.client("rl_bad", server.url).chat.stream("q")
        with pytest.raises(AuthenticationError) as refused:
            both.events(stream)
    assert refused.value.status_code == 401 and refused.value.message == "the API key is not valid"
    assert len(server.requests) == 1  # a 401 is not retried


def test_leaving_a_real_stream_early(both: Both, s1: Any, sdk_server: Server) -> None:
    both(s1.documents.upload_text("Invoices are due thirty days after the end of the month. " * 20))
    stream = s1.chat.stream("When are invoices due?")
    events = both.events(stream, stop_after=1)
    assert isinstance(events[0], SourcesEvent) and stream.response.is_closed and stream.done is None
    # The client is still usable: the next answer is whole.
    assert both(s1.chat("When are invoices due?")).query_id
