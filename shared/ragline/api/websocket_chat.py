"""``GET /v1/kb/chat/ws`` of `ragline serve`: one client's WebSocket, from the handshake to the close.

The protocol is ragline.chat.websocket. The answers come from the chat service through the same ``prepare`` and
``stream_events`` as ``POST /v1/kb/chat/stream``, so history, the answer cache and ``query.completed`` behave
exactly as there. No HTTP middleware sees a WebSocket, so the HTTP rules that apply are applied here through the
same functions: the key (``current_principal``, again before every query, so a key revoked meanwhile stops at its
next query), the scope (``require_scope``), the key's rate limit (``count_request``: a query counts as one request),
the tenant's admission slot (``TenantAdmission.slot``: held while a query is answered, as a chat stream holds it),
the JSON body limit (per message) and the key's usage (one entry per query).

One task reads the client's messages for the life of the connection; an answer runs in a task of its own, its
blocking generator on a dedicated thread (``iterate_in_thread``). So a ``cancel`` or a disconnect is read while the
model writes and cancels that task, whose thread then closes the generator and with it the model's HTTP stream.
One answer at a time: a query while another is answered is refused (409), not queued.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected

from ragline.api.auth import current_principal
from ragline.api.streaming import iterate_in_thread
from ragline.chat.websocket import (
    AUTHENTICATED_MESSAGE,
    USAGE_ROUTE,
    Ask,
    Authenticate,
    Cancel,
    already_authenticated,
    answer_failed,
    answer_in_progress,
    cancelled_message,
    close_code,
    close_reason,
    encode,
    error_message,
    first_message_must_authenticate,
    no_key_in_time,
    parse_client_message,
    server_message,
)
from ragline.errors import RaglineError, Unauthorized
from ragline.keys import require_scope
from ragline.models import ChatRequest, Principal, Scope
from ragline.rate_limits import count_request, refuse_over_limit

if TYPE_CHECKING:
    from starlette.types import Message

    from ragline.api.admission import TenantAdmission
    from ragline.chat.service import PreparedChat
    from ragline.container import Container

log = logging.getLogger(__name__)


class _ClientGone(Exception):
    """A send found the connection closed: the client left (the reading task learns it too)."""


def _frame(message: Message) -> str | bytes:
    text = message.get("text")
    return text if text is not None else message.get("bytes") or b""


class ChatSocket:
    def __init__(self, websocket: WebSocket, container: Container, admission: TenantAdmission) -> None:
        self.websocket = websocket
        self.container = container
        self.admission = admission
        self.settings = container.settings
        self._sending = asyncio.Lock()  # the reader's errors and the answer's tokens share the socket
        self._key: str | None = None
        self._tenant = ""
        self._answer: asyncio.Task[None] | None = None
        self._answer_ending = False  # its last message (done or error) is on its way: a cancel comes too late

    async def serve(self) -> None:
        await self.websocket.accept()
        try:
            if not await self._authenticate():
                return
            while (message := await self.websocket.receive())["type"] == "websocket.receive":
                await self._on_frame(_frame(message))
        except _ClientGone:
            pass
        finally:
            await self._stop_answer()

    # ---- the handshake ----------------------------------------------------------------------------------
    async def _authenticate(self) -> bool:
        by_message = "x-api-key" not in self.websocket.headers
        key = await self._key_from_first_message() if by_message else self.websocket.headers["x-api-key"]
        if key is None:
            return False
        try:
            principal = await run_in_threadpool(current_principal, self.container, self.websocket, key)
            require_scope(principal, Scope.CHAT)
        except RaglineError as exc:  # 401 bad key, 403 scope, 400 two headers, 503 key store down
            await self._refuse(exc)
            return False
        self._key = key
        self._tenant = principal.tenant_id  # a key's tenant never changes
        if by_message:  # the client may now send its queries
            await self._send(AUTHENTICATED_MESSAGE)
        return True

    async def _key_from_first_message(self) -> str | None:
        timeout = self.settings.ws_auth_timeout_seconds
        try:
            message = await asyncio.wait_for(self.websocket.receive(), timeout)
        except TimeoutError:
            await self._refuse(no_key_in_time(timeout))
            return None
        if message["type"] != "websocket.receive":
            return None  # gone before authenticating
        try:
            first = parse_client_message(_frame(message), max_bytes=self.settings.max_json_body_bytes)
        except RaglineError as exc:
            await self._refuse(first_message_must_authenticate(exc.message))
            return None
        if not isinstance(first, Authenticate):
            await self._refuse(first_message_must_authenticate())
            return None
        return first.api_key

    async def _refuse(self, error: RaglineError) -> None:
        """The error as a message, then the close with its code (4401, 4403...): a browser reads the whole
        reason from the message, the close frame's reason being cut at 123 bytes."""
        try:
            await self._send(error_message(error))
            async with self._sending:
                await self.websocket.close(close_code(error), close_reason(error.message))
        except (_ClientGone, WebSocketDisconnect, WebSocketDisconnected):
            pass  # the client left first: nobody to tell

    # ---- messages ---------------------------------------------------------------------------------------
    async def _on_frame(self, frame: str | bytes) -> None:
        try:
            message = parse_client_message(frame, max_bytes=self.settings.max_json_body_bytes)
        except RaglineError as exc:  # malformed, unknown or invalid: answered, and the connection stays
            await self._send(error_message(exc))
            return
        if isinstance(message, Cancel):
            await self._cancel()
        elif isinstance(message, Authenticate):
            await self._send(error_message(already_authenticated()))
        elif self._answer is not None and not self._answer.done() and not self._answer_ending:
            await self._send(error_message(answer_in_progress()))
        else:
            assert isinstance(message, Ask)
            if self._answer is not None:
                # Its last message is out (the client may ask again as soon as it reads it): the task is only
                # closing its stream and giving its tenant slot back, which takes no time worth refusing for.
                await asyncio.wait([self._answer])
            self._answer_ending = False
            self._answer = asyncio.create_task(self._answer_query(message.request), name="websocket-answer")

    async def _cancel(self) -> None:
        answer = self._answer
        if answer is None or answer.done() or self._answer_ending:
            return  # nothing in progress (or it has just finished): ignored
        answer.cancel()
        await asyncio.wait([answer])
        if answer.cancelled():
            await self._send(cancelled_message())

    async def _stop_answer(self) -> None:
        """The client left (or the server stops): the answer stops, and its thread closes the model's stream."""
        answer = self._answer
        if answer is not None and not answer.done():
            answer.cancel()
            await asyncio.wait([answer])

    async def _send(self, message: dict[str, Any]) -> None:
        try:
            async with self._sending:
                await self.websocket.send_text(encode(message))
        except (WebSocketDisconnect, WebSocketDisconnected) as exc:
            raise _ClientGone from exc

    # ---- one answer -------------------------------------------------------------------------------------
    async def _answer_query(self, request: ChatRequest) -> None:
        chat = self.container.chat
        asked = _Asked()
        status, input_tokens, output_tokens = 200, 0, 0
        try:
            try:
                # The slot first (the tenant is the connection's key's), then one hop to a worker thread for the
                # key, its rate limit and the retrieval: fewer hops, an earlier first token.
                async with self.admission.slot(self._tenant):
                    prepared = await run_in_threadpool(self._check_and_prepare, request, asked)
                    events = iterate_in_thread(chat.stream_events(self._tenant, prepared), name="websocket-answer")
                    async with aclosing(events):
                        async for event in events:
                            if event["event"] == "done":
                                usage = event["data"]["usage"]
                                input_tokens, output_tokens = usage["input_tokens"], usage["output_tokens"]
                                self._answer_ending = True
                            await self._send(server_message(event))
            except Unauthorized as exc:  # the key was revoked or expired since the connection began
                status, self._answer_ending = exc.status, True
                await self._refuse(exc)
            except RaglineError as exc:
                status, self._answer_ending = exc.status, True
                await self._send(error_message(exc))
            except _ClientGone:
                raise
            except Exception:
                # The sources may be out already: the error message is the way left to tell the client.
                log.exception("WebSocket chat answer failed")
                status, self._answer_ending = 500, True
                await self._send(error_message(answer_failed()))
        except _ClientGone:
            pass  # the reading task sees the disconnect and ends the connection
        finally:
            # As an HTTP request's: counted once the key is known, whatever the answer (a 429 too), and a client
            # who left or cancelled still made the request.
            if (principal := asked.principal) is not None:
                self.container.usage.record(
                    principal.key_id,
                    principal.tenant_id,
                    USAGE_ROUTE,
                    status,
                    self.websocket.client.host if self.websocket.client else None,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                )

    def _check_and_prepare(self, request: ChatRequest, asked: _Asked) -> PreparedChat:
        """Blocking: the key again (revoked since?), counted against its rate limit, then the retrieval."""
        principal = asked.principal = current_principal(self.container, self.websocket, self._key)
        now = time.time()
        refuse_over_limit(
            count_request(self.container.rate_limiter, principal, self.settings.rate_limit_per_minute, now)
        )
        require_scope(principal, Scope.CHAT)
        return self.container.chat.prepare(principal.tenant_id, request, key_id=principal.key_id)


@dataclass
class _Asked:
    """Whose query it is, once its key has been checked (its usage entry needs it, whatever happens next)."""

    principal: Principal | None = None
