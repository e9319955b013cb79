"""The WebSocket chat deployed: API Gateway holds each client's socket and calls functions/chat_ws once per event
($connect, after the key authorizer; every message, on $default; $disconnect); answers go back through API Gateway's
@connections API (the ConnectionPush port). The protocol is ragline.chat.websocket, the answers come from the same
``ChatService.prepare`` and ``stream_events`` as the SSE route and `ragline serve`'s WebSocket, and the same rules
apply through the same functions (key, scope, rate limit, validation, usage). What differs, and why:

- What a connection is, is in the table (ConnectionStore): each message may run in another execution environment.
- Authentication. The authorizer refuses a bad ``x-api-key`` header at the upgrade (HTTP 401), and ``connect``
  refuses a key without the chat scope (HTTP 403). Without a header (browsers) the authorizer lets the
  connection open *pending*, and its first message must be the auth message, no later than
  ``auth_timeout_seconds`` after API Gateway's connectedAt; otherwise the client gets the error message and
  is disconnected. API Gateway cannot send a close code of the backend's choosing, so a refusal is the error
  message (code 401 or 403) followed by API Gateway's own close. A pending connection that sends nothing can do
  nothing; API Gateway closes it when it has been idle for 10 minutes.
- Concurrency. Several messages of one connection may be handled at once, in any order, so a client that
  authenticates by message waits for ``authenticated`` before it asks; a query while an answer runs is refused
  (409) by the claim's conditional write; a cancel marks the running answer in the table, and the invocation
  answering checks that mark at most every ``cancel_check_seconds``, between two tokens, and stops. A cancel
  handled before its answer has started (they raced) finds no answer and is ignored, like any cancel with none.
- A client that leaves: $disconnect deletes the connection; the answering invocation stops at its next check,
  or at its next send (410 Gone), whichever comes first, and closing the answer's generator closes the model's
  stream. An answer still running when the invocation is about to time out ends with an error first.
- No per-tenant admission: a Lambda execution environment serves one invocation at a time (as for search and chat).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from ragline.activity import UsageRecorder
from ragline.chat.service import ChatService
from ragline.chat.websocket import (
    AUTHENTICATED_MESSAGE,
    USAGE_ROUTE,
    Authenticate,
    Cancel,
    already_authenticated,
    answer_failed,
    answer_in_progress,
    cancelled_message,
    encode,
    error_message,
    first_message_must_authenticate,
    is_pending,
    no_key_in_time,
    parse_client_message,
    server_message,
)
from ragline.errors import ConnectionGone, DependencyUnavailable, RaglineError, Unauthorized
from ragline.keys import authenticate, principal_from_authorizer, reauthenticate, require_scope
from ragline.models import ChatRequest, Principal, Scope, new_id
from ragline.ports import AnswerState, ChatConnection, ConnectionPush, ConnectionStore, MetadataStore, RateLimiter
from ragline.rate_limits import count_request, refuse_over_limit

log = logging.getLogger(__name__)

# API Gateway ends a WebSocket connection after two hours; its record goes (TTL) an hour after that at the latest.
MAX_CONNECTION_SECONDS = 2 * 3600
RECORD_GRACE_SECONDS = 3600
# An answer still running this close to the invocation's timeout ends with an error the client can read.
DEADLINE_MARGIN_SECONDS = 2.0


@dataclass(frozen=True)
class ConnectionChatSettings:
    auth_timeout_seconds: float
    max_message_bytes: int
    default_rate_limit: int  # per key and minute, unless the key has its own
    cancel_check_seconds: float = 0.25


class ConnectionChat:
    def __init__(
        self,
        chat: ChatService,
        connections: ConnectionStore,
        keys: MetadataStore,
        rate_limiter: RateLimiter,
        usage: UsageRecorder,
        settings: ConnectionChatSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.chat = chat
        self.connections = connections
        self.keys = keys
        self.rate_limiter = rate_limiter
        self.usage = usage
        self.settings = settings
        self.clock = clock

    # ---- $connect and $disconnect -----------------------------------------------------------------------
    def connect(self, connection_id: str, connected_at: float, authorizer: Mapping[str, Any] | None) -> None:
        """Record a connection the authorizer let through; Unauthorized (401) or Forbidden (403, a key without
        the chat scope) refuses the upgrade instead."""
        principal = None
        if not is_pending(authorizer):
            principal = require_scope(principal_from_authorizer(authorizer), Scope.CHAT)
        self.connections.open_connection(
            ChatConnection(connection_id, connected_at, principal),
            expires_at=connected_at + MAX_CONNECTION_SECONDS + RECORD_GRACE_SECONDS,
        )

    def disconnect(self, connection_id: str) -> None:
        self.connections.close_connection(connection_id)  # an answer running for it stops at its next check

    # ---- $default: one message ----------------------------------------------------------------------------
    def receive(
        self, connection_id: str, frame: str | bytes, push: ConnectionPush, *, deadline: float, ip: str | None
    ) -> None:
        """One message from the client. ``deadline``: when this invocation's time is up (epoch seconds)."""
        try:
            self._receive(connection_id, frame, push, deadline, ip)
        except ConnectionGone:
            log.info("client of connection %s left", connection_id)  # nobody is left to answer

    def _receive(
        self, connection_id: str, frame: str | bytes, push: ConnectionPush, deadline: float, ip: str | None
    ) -> None:
        connection = self.connections.get_connection(connection_id)
        if connection is None:
            unknown = Unauthorized("this connection is unknown or has ended: connect again", error="Unknown connection")
            self._refuse(push, connection_id, unknown)
            return
        try:
            message = parse_client_message(frame, max_bytes=self.settings.max_message_bytes)
        except RaglineError as exc:
            if connection.principal is None:
                self._refuse(push, connection_id, first_message_must_authenticate(exc.message))
            else:  # answered, and the connection stays
                push.send(connection_id, encode(error_message(exc)))
            return
        if connection.principal is None:
            self._authenticate(connection, message, push)
        elif isinstance(message, Authenticate):
            push.send(connection_id, encode(error_message(already_authenticated())))
        elif isinstance(message, Cancel):
            self.connections.cancel_answer(connection_id)  # the answering invocation says it stopped; none: ignored
        else:
            self._answer(connection, connection.principal, message.request, push, deadline, ip)

    def _authenticate(self, connection: ChatConnection, message: object, push: ConnectionPush) -> None:
        connection_id = connection.connection_id
        timeout = self.settings.auth_timeout_seconds
        if not isinstance(message, Authenticate):
            self._refuse(push, connection_id, first_message_must_authenticate())
            return
        if self.clock() - connection.connected_at > timeout:
            self._refuse(push, connection_id, no_key_in_time(timeout))
            return
        try:
            principal = require_scope(authenticate(self.keys, message.api_key), Scope.CHAT)
        except RaglineError as exc:  # 401 bad key, 403 scope, 503 key store down
            self._refuse(push, connection_id, exc)
            return
        if not self.connections.authenticate_connection(connection_id, principal):
            push.send(connection_id, encode(error_message(already_authenticated())))  # two auth messages raced
            return
        push.send(connection_id, encode(AUTHENTICATED_MESSAGE))

    def _refuse(self, push: ConnectionPush, connection_id: str, error: RaglineError) -> None:
        """The error, then the close (API Gateway's own close code: the error's code says why)."""
        push.send(connection_id, encode(error_message(error)))
        push.disconnect(connection_id)
        self.connections.close_connection(connection_id)

    # ---- one answer ---------------------------------------------------------------------------------------
    def _answer(
        self,
        connection: ChatConnection,
        accepted: Principal,
        request: ChatRequest,
        push: ConnectionPush,
        deadline: float,
        ip: str | None,
    ) -> None:
        connection_id = connection.connection_id
        principal: Principal | None = None
        status, usage = 200, (0, 0)
        try:
            # The key again (revoked or expired since the connection began?), counted against its rate limit.
            principal = reauthenticate(self.keys, accepted.key_id)
            refuse_over_limit(
                count_request(self.rate_limiter, principal, self.settings.default_rate_limit, self.clock())
            )
            require_scope(principal, Scope.CHAT)
            answer_id = new_id("ans")
            if not self.connections.start_answer(connection_id, answer_id, now=self.clock(), until=deadline):
                raise answer_in_progress()
            try:
                usage = self._stream(connection_id, answer_id, principal, request, push, deadline)
            finally:
                self.connections.finish_answer(connection_id, answer_id)
        except Unauthorized as exc:
            status = exc.status
            self._refuse(push, connection_id, exc)
        except RaglineError as exc:
            status = exc.status
            push.send(connection_id, encode(error_message(exc)))
        except ConnectionGone:
            raise
        except Exception:
            # The sources may be out already: the error message is the way left to tell the client.
            log.exception("WebSocket chat answer failed on connection %s", connection_id)
            status = 500
            push.send(connection_id, encode(error_message(answer_failed())))
        finally:
            if principal is not None:  # as a chat stream's: a client who left or cancelled still made a request
                self.usage.record(
                    principal.key_id,
                    principal.tenant_id,
                    USAGE_ROUTE,
                    status,
                    ip,
                    input_tokens=usage[0],
                    output_tokens=usage[1],
                )

    def _stream(
        self,
        connection_id: str,
        answer_id: str,
        principal: Principal,
        request: ChatRequest,
        push: ConnectionPush,
        deadline: float,
    ) -> tuple[int, int]:
        """Post the answer's messages as they come; the tokens it used (0, 0 when it stopped early)."""
        tenant_id = principal.tenant_id
        prepared = self.chat.prepare(tenant_id, request, key_id=principal.key_id)
        checked = self.clock()
        # Leaving this block for any reason (done, cancel, client gone, an error) closes the model's stream.
        with closing(self.chat.stream_events(tenant_id, prepared)) as events:
            for event in events:
                push.send(connection_id, encode(server_message(event)))
                if event["event"] == "done":
                    used = event["data"]["usage"]
                    return used["input_tokens"], used["output_tokens"]
                now = self.clock()
                if now - checked >= self.settings.cancel_check_seconds:
                    checked = now
                    state = self.connections.answer_state(connection_id, answer_id)
                    if state is AnswerState.CANCELLED:
                        push.send(connection_id, encode(cancelled_message()))
                        return 0, 0
                    if state is AnswerState.GONE:
                        raise ConnectionGone(connection_id)
                if now > deadline - DEADLINE_MARGIN_SECONDS:
                    raise DependencyUnavailable(
                        "the answer did not finish in the time this function may run: ask again, or for a shorter "
                        "answer (max_tokens)",
                        error="Answer timed out",
                    )
        return 0, 0
