"""A fake of Anthropic's Messages API (POST /v1/messages) on 127.0.0.1, for the tests and `ragline bench coldstart`.

It speaks the wire protocol the anthropic SDK parses: with "stream": true a chunked text/event-stream of
message_start, content_block_start, ping, content_block_delta (text_delta) per word, content_block_stop,
message_delta (stop_reason, output usage) and message_stop; without it one JSON message. Errors use the
API's body {"type": "error", "error": {"type", "message"}, "request_id"}, either as an HTTP 4xx/5xx
before any byte of the answer or as an `event: error` frame in the middle of a stream.

Knobs for clients that parse the stream themselves (ragline.adapters.anthropic_claude): `retry_after` /
`retry_after_ms` headers on the failures, `extra_events` (e.g. an event type the API may add one day),
`ping_every` delta, `pretty` JSON spread over several `data:` lines with `:` comment lines and a chosen
line ending, and `drop_after_deltas` to cut the connection mid-stream without a last chunk.
For clients that leave: `delta_interval` streams slowly, and `streams` records, per streamed answer, how many
events were sent and when the client closed the connection (noticed at once, not at the next write).

Like the API, it takes the key from x-api-key, else from `Authorization: Bearer` (how anthropic SDK 2.x
sends it), and from anthropic-version 2026-10-21 on it rejects the sampling parameters (temperature,
top_p, top_k) at any value with a 400.

    with FakeAnthropic() as fake:
        fake.script(answer="Paris [1].", fail_after_deltas=1)
        ... point the SDK at fake.url with fake.api_key ...
        fake.requests[-1].body["system"]
"""

from __future__ import annotations

import json
import re
import secrets
import select
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_ANSWER = "Ragline keeps its vectors in an embedded index [1] and answers with citations [2]."
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
ERROR_MESSAGES = {"overloaded_error": "Overloaded", "api_error": "Internal server error"}
SAMPLING_PARAMS = ("temperature", "top_p", "top_k")


@dataclass
class Script:
    """What the fake answers until the next `script()` call."""

    answer: str = DEFAULT_ANSWER
    model: str | None = None  # None: the requested model resolved to a dated snapshot, as the API does
    input_tokens: int = 321
    output_tokens: int = 42
    fail_status: int | None = None  # answer this HTTP status before streaming anything
    fail_times: int | None = None  # ...only for the first n requests (None: every request); also for the two below
    fail_after_deltas: int | None = None  # stream n text deltas, then an `event: error` frame
    drop_after_deltas: int | None = None  # stream n text deltas, then close the connection mid-body
    error_type: str | None = None  # default: the API's type for fail_status (overloaded_error mid-stream)
    error_message: str | None = None
    retry_after: str | None = None  # a `retry-after` header on the HTTP failures
    retry_after_ms: str | None = None  # a `retry-after-ms` header on the HTTP failures
    extra_events: tuple[tuple[str, dict[str, Any]], ...] = ()  # (name, data) sent after content_block_start
    ping_every: int | None = None  # a `ping` event before every n-th delta (besides the one after block start)
    pretty: bool = False  # indented JSON: each event's data over several `data:` lines, after a `:` comment
    line_ending: str = "\n"  # of the SSE lines: "\n", "\r\n" or "\r"
    delta_interval: float = 0.0  # seconds between two text deltas: a slow model

    def error_body(self, status: int | None) -> dict[str, Any]:
        kind = self.error_type or ERROR_TYPES.get(status or 529, "api_error")
        message = self.error_message or ERROR_MESSAGES.get(kind, kind.replace("_", " "))
        return error_body(kind, message)


@dataclass
class Recorded:
    """One request the fake received: lower-cased headers and the parsed JSON body."""

    headers: dict[str, str]
    body: dict[str, Any]
    sent_key: str | None  # the API key, from x-api-key or Authorization: Bearer

    @property
    def user_text(self) -> str:
        return self.body["messages"][-1]["content"]


@dataclass
class StreamRecord:
    """One streamed answer: what was sent, and whether and when (time.monotonic()) the client hung up."""

    request: Recorded
    events_sent: int = 0
    deltas_sent: int = 0
    finished: bool = False  # message_stop (or the scripted error) was sent
    client_closed_at: float | None = None


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": _id("req")}


def _id(prefix: str) -> str:
    return f"{prefix}_fake{secrets.token_hex(8)}"


def _problem(body: dict[str, Any], version: str) -> str | None:
    """The few checks of the real API that a caller could get wrong."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        return "max_tokens: Field required and must be a positive integer"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if not message.get("content"):
            return f"messages.{i}: all messages must have non-empty content"
    if version >= "2026-10-21" and (name := next((p for p in SAMPLING_PARAMS if p in body), None)):
        return f"{name}: Extra inputs are not permitted"
    return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # seconds a silent client may hold a handler thread
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        bearer = headers.get("authorization", "")
        key = headers.get("x-api-key") or (bearer[7:] if bearer.lower().startswith("bearer ") else None)
        fake = self.server.fake
        recorded = Recorded(headers, body, key)
        with fake.lock:
            fake.requests.append(recorded)
            script = fake.current
            fails = (script.fail_status, script.fail_after_deltas, script.drop_after_deltas) != (None, None, None)
            failing = fails and (script.fail_times is None or fake.failures < script.fail_times)
            fake.failures += failing
        try:
            if self.path.split("?")[0] != "/v1/messages":
                return self._json(404, error_body("not_found_error", f"Not found: {self.path}"))
            if key != fake.api_key:
                return self._json(401, error_body("authentication_error", "invalid x-api-key"))
            if "anthropic-version" not in headers:
                return self._json(400, error_body("invalid_request_error", "anthropic-version: header is required"))
            if problem := _problem(body, headers["anthropic-version"]):
                return self._json(400, error_body("invalid_request_error", problem))
            if failing and script.fail_status is not None:
                extra = {"retry-after": script.retry_after, "retry-after-ms": script.retry_after_ms}
                return self._json(script.fail_status, script.error_body(script.fail_status), extra)
            if body.get("stream"):
                return self._stream(script, recorded, failing=failing)
            message = self._message(script, body, text=script.answer)
            message.update(stop_reason="end_turn")
            message["usage"]["output_tokens"] = script.output_tokens
            return self._json(200, message)
        except (BrokenPipeError, ConnectionResetError):  # the client went away; nothing to tell it
            self._client_left()

    def _message(self, script: Script, body: dict[str, Any], *, text: str | None) -> dict[str, Any]:
        return {
            "id": _id("msg"),
            "type": "message",
            "role": "assistant",
            "model": script.model or f"{body['model']}-20250929",
            "content": [] if text is None else [{"type": "text", "text": text}],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": script.input_tokens,
                "output_tokens": 1,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "service_tier": "standard",
            },
        }

    def _json(self, status: int, payload: dict[str, Any], extra: dict[str, str | None] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in (extra or {}).items():
            if value is not None:
                self.send_header(name, value)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("connection", "close")  # one request per connection: stop() never waits on keep-alive
        self.send_header("request-id", payload.get("request_id") or _id("req"))
        self.end_headers()
        self.wfile.write(data)

    def _client_left(self) -> None:
        self.close_connection = True
        record: StreamRecord | None = getattr(self, "_record", None)
        if record is not None and record.client_closed_at is None:
            record.client_closed_at = time.monotonic()

    def _wait_unless_client_leaves(self, seconds: float) -> bool:
        """Sleep, or return True as soon as the client closes its end (the socket reads as EOF)."""
        readable, _, _ = select.select([self.connection], [], [], seconds)
        if not readable:
            return False
        try:
            if self.connection.recv(1, socket.MSG_PEEK) == b"":
                self._client_left()
                return True
        except ConnectionResetError:
            self._client_left()
            return True
        time.sleep(seconds)  # a client that sent more bytes is still there
        return False

    def _stream(self, script: Script, recorded: Recorded, *, failing: bool) -> None:
        body = recorded.body
        self._record = StreamRecord(recorded)
        with self.server.fake.lock:
            self.server.fake.streams.append(self._record)
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("connection", "close")
        self.send_header("request-id", _id("req"))
        self.end_headers()
        self._script = script
        self._event("message_start", {"type": "message_start", "message": self._message(script, body, text=None)})
        self._event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        )
        self._event("ping", {"type": "ping"})
        for name, data in script.extra_events:
            self._event(name, data)
        fail_after = script.fail_after_deltas if failing else None
        drop_after = script.drop_after_deltas if failing else None
        for n, piece in enumerate(re.findall(r"\s*\S+|\s+$", script.answer)):
            if n in (fail_after, drop_after):
                break
            if n and script.delta_interval and self._wait_unless_client_leaves(script.delta_interval):
                return
            if script.ping_every and n and n % script.ping_every == 0:
                self._event("ping", {"type": "ping"})
            self._event(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
            )
            self._record.deltas_sent += 1
        if drop_after is not None:
            self.close_connection = True  # no last chunk: the client sees the body end too early
            return
        if fail_after is not None:
            self._event("error", script.error_body(529))
        else:
            self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
            self._event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": script.output_tokens},
                },
            )
            self._event("message_stop", {"type": "message_stop"})
        self._record.finished = True
        self.wfile.write(b"0\r\n\r\n")  # the last chunk; the connection closes after it

    def _event(self, name: str, data: dict[str, Any]) -> None:
        script: Script = getattr(self, "_script", None) or Script()
        if script.pretty:
            lines = [": a comment line, which a client must skip", f"event: {name}"]
            lines += [f"data: {line}" for line in json.dumps(data, indent=1).splitlines()]
        else:
            lines = [f"event: {name}", f"data: {json.dumps(data)}"]
        end = script.line_ending
        frame = (end.join(lines) + end + end).encode()
        self.wfile.write(b"%X\r\n%s\r\n" % (len(frame), frame))
        self.wfile.flush()
        if (record := getattr(self, "_record", None)) is not None:
            record.events_sent += 1


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so server_close() joins every handler thread: nothing outlives stop()
    request_queue_size = 128  # tests open dozens of streams at once; the default backlog of 5 drops SYNs
    fake: FakeAnthropic


class FakeAnthropic:
    """The fake server; `start()`/`stop()` or use it as a context manager."""

    def __init__(self, api_key: str = "sk-ant-fake-0123456789") -> None:
        self.api_key = api_key
        self.lock = threading.Lock()
        self.requests: list[Recorded] = []
        self.streams: list[StreamRecord] = []
        self.current = Script()
        self.failures = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the fake is not running"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def script(self, **behaviour: Any) -> Script:
        """Replace the behaviour (see Script) and forget the requests and streams received so far."""
        with self.lock:
            self.current = Script(**behaviour)
            self.failures = 0
            self.requests.clear()
            self.streams.clear()
        return self.current

    reset = script

    @property
    def last(self) -> Recorded:
        assert self.requests, "the fake has received no request"
        return self.requests[-1]

    def start(self) -> FakeAnthropic:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-anthropic", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
