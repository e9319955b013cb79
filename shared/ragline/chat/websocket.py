"""The WebSocket chat protocol, whatever carries it (``GET /v1/kb/chat/ws`` of `ragline serve`, or API Gateway's
WebSocket API and functions/chat_ws deployed): what a client may send, what it gets back, how a refusal closes.

Client → server, one JSON object per text frame:

- ``{"type": "auth", "api_key": "…"}`` — only as the first message, and only without an ``x-api-key`` header;
- ``{"type": "query", …the body of POST /v1/kb/chat…}`` — validated as that body is (same model, same errors);
- ``{"type": "cancel"}`` — stops the answer in progress; with none in progress it is ignored.

Server → client: ``authenticated`` (after an auth message), then per query ``sources``, ``token``…, and ``done``
(the SSE stream's done event, whole) or ``error`` (the API's error body: ``error``, ``message``, ``code``, and
``details`` or ``retry_after`` where the HTTP answer has them). A cancelled answer ends with an error of
code 499 and ``"cancelled": true``. Nothing here knows about sockets: both transports call these functions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragline.errors import BadRequest, Conflict, PayloadTooLarge, RaglineError, Unauthorized, invalid_input
from ragline.models import ChatRequest

# Close codes of a refused connection: 4000 + the HTTP status the same refusal has on the HTTP routes
# (4401 no, unknown, expired or revoked key; 4403 a key without the chat scope; 4400 a malformed handshake).
CLOSE_CODE_BASE = 4000
UNAUTHORIZED_CLOSE = CLOSE_CODE_BASE + 401
FORBIDDEN_CLOSE = CLOSE_CODE_BASE + 403
# A close frame's reason is at most 123 bytes (RFC 6455, 5.5: a control frame's payload is 125 bytes).
MAX_CLOSE_REASON_BYTES = 123
# How a query over the WebSocket appears in a key's usage (GET /v1/keys/{id}/usage, by_route).
USAGE_ROUTE = "WS /v1/kb/chat/ws"
# nginx's "client closed request": the client asked for the answer to stop.
CANCELLED_CODE = 499
# Deployed, the key authorizer's context for a connection opened without a key (a browser's): its first
# message must carry one (functions/authorizer sets it, ragline.chat.connections reads it). Values are strings.
PENDING_CONTEXT = {"auth": "pending"}


def is_pending(authorizer: Mapping[str, Any] | None) -> bool:
    if not authorizer:
        return False
    return all(authorizer.get(name) == value for name, value in PENDING_CONTEXT.items())


class _AuthBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["auth"]
    api_key: str = Field(min_length=1, max_length=512)


class _CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["cancel"]


@dataclass(frozen=True)
class Authenticate:
    api_key: str


@dataclass(frozen=True)
class Ask:
    request: ChatRequest


@dataclass(frozen=True)
class Cancel:
    pass


ClientMessage = Authenticate | Ask | Cancel
MESSAGE_TYPES = ("auth", "query", "cancel")


def parse_client_message(frame: str | bytes, *, max_bytes: int) -> ClientMessage:
    """One frame from the client, or the RaglineError to answer it with (400 malformed or unknown, 413 too big,
    422 a query body the chat route would refuse too)."""
    if isinstance(frame, bytes):
        raise BadRequest("send each message as a JSON text frame, not a binary one", error="Binary frame")
    if len(frame.encode("utf-8")) > max_bytes:
        raise PayloadTooLarge(f"a message may be at most {max_bytes} bytes")
    try:
        message = json.loads(frame)
    except json.JSONDecodeError:
        raise BadRequest("the message is not valid JSON", error="Malformed JSON") from None
    if not isinstance(message, dict):
        raise BadRequest("a message is a JSON object with a `type`", error="Malformed message")
    kind = message.get("type")
    try:
        if kind == "query":
            fields = {name: value for name, value in message.items() if name != "type"}
            return Ask(ChatRequest.model_validate(fields))
        if kind == "auth":
            return Authenticate(_AuthBody.model_validate(message).api_key)
        if kind == "cancel":
            _CancelBody.model_validate(message)
            return Cancel()
    except ValidationError as exc:
        raise invalid_input(exc.errors()) from None
    raise BadRequest(
        f"unknown message type {kind!r}: send one of {', '.join(MESSAGE_TYPES)}", error="Unknown message type"
    )


def server_message(event: dict[str, Any]) -> dict[str, Any]:
    """One event of ``ChatService.stream_events`` (the SSE route's events) as the WebSocket message it becomes."""
    data = event["data"]
    kind = event["event"]
    if kind == "sources":
        return {"type": "sources", "sources": data["sources"]}
    if kind == "message":
        return {"type": "token", "token": data["content"]}
    if kind == "done":
        return {"type": "done", **data}
    raise ValueError(f"no WebSocket message for the chat event {kind!r}")


def error_message(error: RaglineError) -> dict[str, Any]:
    """An error answer: the HTTP error body (``retry_after`` on a 429, ``details`` on a 422) with its type."""
    return {"type": "error", **error.body()}


def answer_failed() -> RaglineError:
    """What the client learns of an unexpected failure in the middle of an answer (the cause goes to the log)."""
    return RaglineError("internal error while answering", error="Internal error")


def no_key_in_time(timeout_seconds: float) -> Unauthorized:
    return Unauthorized(
        f"no API key: send the x-api-key header, or an auth message first within {timeout_seconds:g} s",
        error="Missing API key",
    )


def first_message_must_authenticate(problem: str | None = None) -> Unauthorized:
    """The refusal of a connection without a key whose first message is not a valid auth message."""
    why = "the first message must be {'type': 'auth', 'api_key': ...} when no x-api-key header was sent"
    return Unauthorized(f"{why}: {problem}" if problem else why, error="Missing API key")


def already_authenticated() -> BadRequest:
    return BadRequest("this connection is authenticated already", error="Bad request")


def answer_in_progress() -> Conflict:
    return Conflict(
        "an answer is in progress: wait for its done or error message, or cancel it", error="Answer in progress"
    )


def cancelled_message() -> dict[str, Any]:
    return {
        "type": "error",
        "error": "Cancelled",
        "message": "the answer was cancelled before it finished",
        "code": CANCELLED_CODE,
        "cancelled": True,
    }


AUTHENTICATED_MESSAGE: dict[str, Any] = {"type": "authenticated"}


def close_code(error: RaglineError) -> int:
    """The close code of a connection refused with this error: 4000 + its HTTP status."""
    return CLOSE_CODE_BASE + error.status


def close_reason(message: str) -> str:
    """``message`` cut to what a close frame can carry, on a character boundary."""
    encoded = message.encode("utf-8")
    if len(encoded) <= MAX_CLOSE_REASON_BYTES:
        return message
    return encoded[: MAX_CLOSE_REASON_BYTES - 3].decode("utf-8", errors="ignore") + "..."


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))
