"""Claude through the Messages API (POST /v1/messages, "stream": true), on httpx alone.

Importing the anthropic SDK costs 1-2 s of Lambda cold start; httpx is imported by the rest of ragline anyway.
This is the small part of the SDK the chat needs: the streamed Messages protocol, its errors, and the SDK's
retry policy (connection errors, 408, 409, 429 and 5xx, with backoff and jitter, honouring retry-after) --
applied only before the first delta, as an answer that has begun to stream cannot be taken back.

Errors, as the SDK adapter reported them (the API maps them to 503 "Answer model unavailable"):
  an HTTP error status       -> "Claude answered 529: Overloaded" (the message of the API's error body)
  an `error` event mid-stream -> "Claude failed mid-answer: Overloaded"
  no connection / timeouts    -> "Claude is unreachable: ..."
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx

from ragline.chat.prompt import SYSTEM_PROMPT, user_message
from ragline.errors import DependencyUnavailable
from ragline.models import Usage
from ragline.ports import AnswerDelta, AnswerDone, AnswerRequest

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
UNAVAILABLE = "Answer model unavailable"
CONNECT_TIMEOUT = 5.0  # seconds; the whole `timeout` when that is shorter
KEEPALIVE_SECONDS = 30.0  # keep the connection between warm invocations a little longer than httpx's 5 s
INITIAL_RETRY_DELAY = 0.5  # the SDK's backoff: 0.5 s doubling to at most 8 s, minus up to 25 % jitter
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 60.0  # a server's retry-after is honoured up to this many seconds
RETRYABLE_STATUSES = frozenset({408, 409, 429})  # and every status >= 500 (529 overloaded among them)
# `error` events that would have been a retryable status outside a stream; retried before the first delta.
RETRYABLE_ERROR_TYPES = frozenset({"overloaded_error", "api_error", "rate_limit_error", "timeout_error"})

_sleep = time.sleep  # the tests replace it


class ClaudeAnswerModel:
    def __init__(
        self,
        api_key: str,
        *,
        model: str,
        max_tokens: int,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
    ) -> None:
        self.name = model
        self.max_tokens = max_tokens
        self.max_retries = max(0, max_retries)
        base = base_url or os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE_URL  # as the SDK falls back
        self._url = base.rstrip("/") + "/v1/messages"
        self._headers = {
            "x-api-key": api_key,
            "anthropic-version": API_VERSION,
            "content-type": "application/json",
            "accept": "text/event-stream",
            "user-agent": "ragline",
        }
        self._timeout = timeout
        # One client per adapter: a warm Lambda reuses its TLS connection for the next invocation.
        self._client = self._new_client()

    def _new_client(self) -> httpx.Client:
        return httpx.Client(
            timeout=httpx.Timeout(self._timeout, connect=min(self._timeout, CONNECT_TIMEOUT)),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=KEEPALIVE_SECONDS),
        )

    def close(self) -> None:
        self._client.close()

    def drop_connections(self) -> None:
        """After a SnapStart restore: the kept TLS connection was opened on the snapshot's machine."""
        self._client.close()
        self._client = self._new_client()

    def stream(self, request: AnswerRequest) -> Iterator[AnswerDelta | AnswerDone]:
        messages = [{"role": turn.role, "content": turn.content} for turn in request.history]
        messages.append({"role": "user", "content": user_message(request.question, request.passages)})
        # `temperature` is not forwarded: current Claude models no longer take sampling settings.
        model = request.model or self.name
        payload = json.dumps(
            {
                "model": model,
                "max_tokens": request.max_tokens or self.max_tokens,
                "system": SYSTEM_PROMPT,
                "messages": messages,
                "stream": True,
            }
        ).encode()
        for attempt in range(self.max_retries + 1):
            state = _Attempt()
            yield from self._attempt(payload, model, state, last=attempt == self.max_retries)
            if state.done is not None:
                yield state.done
                return
            _sleep(_retry_delay(attempt, state.headers))
        raise AssertionError("the last attempt answers or raises")  # pragma: no cover

    def _attempt(self, payload: bytes, requested: str, state: _Attempt, *, last: bool) -> Iterator[AnswerDelta]:
        """One request. Sets state.done on success; returns with it unset when the caller should retry."""
        started = False  # a delta has been yielded: from then on nothing is retried
        try:
            with self._client.stream("POST", self._url, content=payload, headers=self._headers) as response:
                state.headers = response.headers
                if response.status_code >= 300:
                    response.read()
                    reason = _reason(response)
                    if not last and _retryable_status(response):
                        return
                    raise DependencyUnavailable(f"Claude answered {response.status_code}: {reason}", error=UNAVAILABLE)
                content_type = response.headers.get("content-type", "")
                if not content_type.startswith("text/event-stream"):
                    raise DependencyUnavailable(
                        f"Claude answered {response.status_code} with {content_type or 'no content-type'}, "
                        "not an event stream",
                        error=UNAVAILABLE,
                    )
                model: str | None = None
                input_tokens = output_tokens = 0
                blocks: dict[int, str] = {}  # content block index -> its type ("text", "thinking", "tool_use"...)
                stopped = False
                for name, data in iter_sse(response.iter_bytes()):
                    if stopped:
                        continue  # drain to the end so the connection goes back to the pool
                    if name in ("ping", "content_block_stop"):
                        continue
                    event = _json(data)
                    kind = name if name != "message" else str(event.get("type", ""))
                    if kind == "content_block_delta":
                        delta = event.get("delta") or {}
                        if delta.get("type") == "text_delta" and blocks.get(event.get("index", 0), "text") == "text":
                            if text := delta.get("text"):
                                started = True
                                yield AnswerDelta(text)
                    elif kind == "message_start":
                        message = event.get("message") or {}
                        model = message.get("model")
                        input_tokens = _tokens(message.get("usage"), "input_tokens", input_tokens)
                        output_tokens = _tokens(message.get("usage"), "output_tokens", output_tokens)
                    elif kind == "content_block_start":
                        block = event.get("content_block") or {}
                        blocks[event.get("index", len(blocks))] = str(block.get("type", ""))
                    elif kind == "message_delta":
                        # Counts here are cumulative totals: they replace message_start's (input only when present).
                        input_tokens = _tokens(event.get("usage"), "input_tokens", input_tokens)
                        output_tokens = _tokens(event.get("usage"), "output_tokens", output_tokens)
                    elif kind == "message_stop":
                        stopped = True
                    elif kind == "error":
                        error = event.get("error") if isinstance(event.get("error"), dict) else {}
                        if not started and not last and error.get("type") in RETRYABLE_ERROR_TYPES:
                            return
                        message_text = error.get("message") or error.get("type") or data or "error event"
                        raise DependencyUnavailable(f"Claude failed mid-answer: {message_text}", error=UNAVAILABLE)
                    # any other event type: new in the API since this was written, and ignored
                if not stopped:
                    raise httpx.RemoteProtocolError("the event stream ended before message_stop")
                state.done = AnswerDone(
                    usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens), model=model or requested
                )
        except httpx.TransportError as exc:
            if started:
                raise DependencyUnavailable(f"Claude failed mid-answer: {_describe(exc)}", error=UNAVAILABLE) from exc
            if not last:
                state.headers = None
                return
            raise DependencyUnavailable(f"Claude is unreachable: {_describe(exc)}", error=UNAVAILABLE) from exc
        except httpx.HTTPError as exc:  # not retryable (an invalid URL, a body that cannot be decoded)
            what = "failed mid-answer" if started else "is unreachable"
            raise DependencyUnavailable(f"Claude {what}: {_describe(exc)}", error=UNAVAILABLE) from exc


class _Attempt:
    """What one attempt left behind: its AnswerDone, or (to retry) the response headers that say when."""

    done: AnswerDone | None = None
    headers: httpx.Headers | None = None


_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


def iter_sse(chunks: Iterable[bytes]) -> Iterator[tuple[str, str]]:
    """Server-sent events (name, data) from a byte stream, as the WHATWG parser reads them.

    Lines end in CRLF, LF or CR; `field: value` (one space after the colon dropped); lines starting with ':' are
    comments; `data` lines accumulate, joined with '\\n'; a blank line dispatches (nothing when there was no data);
    the event name defaults to "message"; a last event without its blank line is incomplete and dropped.
    """
    name = ""
    data: list[str] = []
    for line in _lines(chunks):
        if not line:
            if data:
                yield name or "message", "\n".join(data)
            name, data = "", []
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            # `id`, `retry` and unknown fields mean nothing for one POST: ignored


def _lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """The complete lines of a byte stream (split on bytes, so no UTF-8 sequence is cut), without a leading BOM."""
    pending = b""
    started = False
    for chunk in chunks:
        pending += chunk
        if not started:
            if len(pending) < len(_BOM) and _BOM.startswith(pending):
                continue
            pending = pending.removeprefix(_BOM)
            started = True
        # A CR at the end may be the first half of a CRLF: keep it back until the next chunk tells.
        cut = len(pending) - 1 if pending.endswith(b"\r") else len(pending)
        *lines, rest = _LINE_END.split(pending[:cut])
        pending = rest + pending[cut:]
        for line in lines:
            yield line.decode("utf-8", "replace")
    if pending.endswith(b"\r"):  # the stream ended right after a CR line end
        yield pending[:-1].decode("utf-8", "replace")


def _json(data: str) -> dict[str, Any]:
    try:
        event = json.loads(data)
    except ValueError as exc:
        raise httpx.DecodingError(f"an event that is not JSON: {data[:200]!r}") from exc
    if not isinstance(event, dict):
        raise httpx.DecodingError(f"an event that is not a JSON object: {data[:200]!r}")
    return event


def _tokens(usage: Any, key: str, current: int) -> int:
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if isinstance(value, int) else current


def _retryable_status(response: httpx.Response) -> bool:
    should = response.headers.get("x-should-retry")  # the API's own say, as the SDK obeys it
    if should in ("true", "false"):
        return should == "true"
    return response.status_code in RETRYABLE_STATUSES or response.status_code >= 500


def _retry_delay(attempt: int, headers: httpx.Headers | None) -> float:
    """retry-after-ms / retry-after when the server sent one (capped), else the SDK's backoff with jitter."""
    after = _retry_after(headers)
    if after is not None and after > 0:
        return min(after, MAX_RETRY_AFTER)
    delay = min(INITIAL_RETRY_DELAY * 2.0 ** min(attempt, 1000), MAX_RETRY_DELAY)
    return delay * (1 - 0.25 * random.random())


def _retry_after(headers: httpx.Headers | None) -> float | None:
    if headers is None:
        return None
    try:
        return float(headers["retry-after-ms"]) / 1000
    except (KeyError, ValueError):
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value)
    return None if parsed is None else float(email.utils.mktime_tz(parsed) - time.time())


def _reason(response: httpx.Response) -> str:
    """The message of the API's error body {"type": "error", "error": {"type", "message"}}, else what there is."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    text = " ".join(response.text.split())[:200]
    return text or response.reason_phrase or "no reason given"


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
