"""A real HTTP server on 127.0.0.1 that answers from a script, for what a healthy Ragline never does on cue:
fail then succeed, answer 429 with Retry-After, hang, break a stream midway.

``ScriptedServer(answer)`` records every request (method, path, headers, body, arrival time) and answers the
n-th with ``answer(n, request)``. A ``Reply`` is sent whole, or as ``chunks`` written one by one (an SSE
stream), each after its pause; a write that fails marks when the client went away.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)
    chunks: Sequence[tuple[float, bytes]] = ()  # (pause in seconds, bytes): streamed, then the connection closes
    hang_seconds: float = 0.0  # wait this long before answering at all


def json_reply(status: int, payload: Any, *headers: tuple[str, str]) -> Reply:
    return Reply(status, json.dumps(payload).encode(), (("content-type", "application/json"), *headers))


def error_reply(status: int, error: str, message: str, *headers: tuple[str, str], **extra: Any) -> Reply:
    return json_reply(status, {"error": error, "message": message, "code": status, **extra}, *headers)


def sse(*payloads: dict[str, Any] | str, pause: float = 0.0) -> tuple[tuple[float, bytes], ...]:
    """SSE frames as the Ragline server writes them: ``data: <json>`` (or a raw string) and a blank line."""
    frames = []
    for payload in payloads:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        frames.append((pause, f"data: {data}\n\n".encode()))
    return tuple(frames)


def sse_reply(chunks: Sequence[tuple[float, bytes]]) -> Reply:
    return Reply(200, headers=(("content-type", "text/event-stream"), ("cache-control", "no-cache")), chunks=chunks)


Answer = Callable[[int, Request], Reply]


@dataclass
class ScriptedServer:
    answer: Answer
    requests: list[Request] = field(default_factory=list)
    disconnected_at: float | None = None  # time.monotonic() when a streamed write found the client gone

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()
                )
                with scripted._lock:
                    n = len(scripted.requests)
                    scripted.requests.append(request)
                reply = scripted.answer(n, request)
                if reply.hang_seconds and scripted._stop.wait(reply.hang_seconds):
                    return
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers:
                        self.send_header(name, value)
                    if reply.chunks:
                        self.send_header("connection", "close")  # the body ends when the connection does
                        self.end_headers()
                        for pause, chunk in reply.chunks:
                            if pause and scripted._stop.wait(pause):
                                return
                            self.wfile.write(chunk)
                            self.wfile.flush()
                        self.close_connection = True
                        return
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    with scripted._lock:
                        if scripted.disconnected_at is None:
                            scripted.disconnected_at = time.monotonic()
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def in_turn(*replies: Reply) -> Answer:
    """The n-th request gets ``replies[n]``; the last one repeats."""
    return lambda n, _request: replies[min(n, len(replies) - 1)]
