"""The one place that sees every answer of an authenticated request: it counts the key's usage and
writes the audit entry of administration actions and deletes (``ragline.activity.audited``).

Both happen as the last body message of the response goes out, before it is forwarded, so a client
that has its answer finds it counted and audited. The key is the one the auth dependency accepted
(``note_principal``): a request refused with 401 belongs to no key and is not counted. A 403 (scope)
or a 429 (rate limit) is counted, as is every answer a route gives.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragline.activity import AuditEvent, audited
from ragline.errors import RaglineError
from ragline.models import Principal

if TYPE_CHECKING:
    from ragline.container import Container

log = logging.getLogger("ragline.activity")

_PRINCIPAL = "ragline_principal"
_CHAT_TOKENS = "ragline_chat_tokens"
# Audited answers are small JSON bodies (ids, counts); a bigger one is not read for its target.
_MAX_AUDITED_BODY = 64 * 1024


def note_principal(connection: HTTPConnection, principal: Principal) -> None:
    """The auth dependency's: this request is the key's, whatever it is answered."""
    setattr(connection.state, _PRINCIPAL, principal)


def note_chat_tokens(connection: HTTPConnection, input_tokens: int, output_tokens: int) -> None:
    """The chat routes': the tokens this answer used."""
    setattr(connection.state, _CHAT_TOKENS, (input_tokens, output_tokens))


def _route_path(scope: Scope) -> str | None:
    route = scope.get("route")
    return getattr(route, "path", None)


def _target(scope: Scope, body: bytes) -> str | None:
    """What an audited action was about: the ids in its path, then the id it created (a new key, a
    rotated key's successor); without either, the summary it answered (delete by filters: the count
    and the filters)."""
    named = "/".join(str(value) for value in (scope.get("path_params") or {}).values())
    try:
        answer = json.loads(body) if body else None
    except ValueError:
        answer = None
    created = answer.get("id") if isinstance(answer, dict) else None
    if isinstance(created, str) and created not in named:
        return f"{named} -> {created}" if named else created
    if named:
        return named
    if isinstance(answer, dict) and isinstance(answer.get("data"), dict):
        return json.dumps(answer["data"], separators=(",", ":"), sort_keys=True)[:2000]
    return None


class ActivityMiddleware:
    def __init__(self, app: ASGIApp, container: Container) -> None:
        self.app = app
        self.container = container

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        done = False
        held: list[Message] = []  # an audited answer's messages, until its entry is written
        body = bytearray()

        def audit_this() -> bool:
            principal = scope.get("state", {}).get(_PRINCIPAL)
            route_path = _route_path(scope)
            return principal is not None and route_path is not None and audited(scope["method"], route_path)

        async def watch(message: Message) -> None:
            nonlocal status, done
            if message["type"] == "http.response.start":
                status = message["status"]
                if audit_this():
                    held.append(message)
                    return
            elif message["type"] == "http.response.body":
                if held:
                    held.append(message)
                    if len(body) < _MAX_AUDITED_BODY:
                        body.extend(message.get("body", b""))
                    if message.get("more_body", False):
                        return
                    done = True
                    await self._settle(scope, status, bytes(body))
                    for kept in held:
                        await send(kept)
                    return
                if not message.get("more_body", False):
                    done = True
                    await self._settle(scope, status, b"")
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if not done:  # an exception, or a client that left mid-stream
                done = True
                await self._settle(scope, status, bytes(body))

    async def _settle(self, scope: Scope, status: int, body: bytes) -> None:
        state = scope.get("state", {})
        principal: Principal | None = state.get(_PRINCIPAL)
        if principal is None:
            return
        route_path = _route_path(scope) or "(unmatched)"
        method = scope["method"]
        client = scope.get("client")
        ip = client[0] if client else None
        input_tokens, output_tokens = state.get(_CHAT_TOKENS, (0, 0))
        self.container.usage.record(
            principal.key_id,
            principal.tenant_id,
            f"{method} {route_path}",
            status,
            ip,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
        )
        if not audited(method, route_path):
            return
        route = scope.get("route")
        event = AuditEvent(
            tenant_id=principal.tenant_id,
            key_id=principal.key_id,
            action=getattr(route, "name", None) or f"{method} {route_path}",
            method=method,
            path=scope["path"],
            target=_target(scope, body),
            ip=ip,
            outcome=status,
        )
        try:
            await run_in_threadpool(self.container.audit.record, event)
        except RaglineError as exc:
            # The action has happened and its answer says so; the entry is in this line for an operator.
            log.error("audit entry not written (%s): %s", exc.message, event.model_dump_json())
