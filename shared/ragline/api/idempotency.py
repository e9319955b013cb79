"""``Idempotency-Key`` on the POSTs that create something (ragline.idempotency.IDEMPOTENT_ROUTES), as
ASGI middleware: the routes know nothing of it.

A request with the header, once its API key is let in:
- no live record: the key is claimed atomically (losing the race is "in progress"), the app runs with
  the body hashed as it streams through (never buffered: a 200 MB upload is hashed chunk by chunk),
  and the answer (status, content type, body) is kept with that fingerprint before its last byte is
  sent, so a client that has the answer never finds its key still "in progress". A 5xx, an exception,
  a 401/403/429 or a body the app did not read to the end releases the claim: a retry runs anew.
- a record in progress: 409 at once, the body unread.
- a completed record: the body is read and hashed; the same fingerprint replays the kept answer with
  ``Idempotent-Replayed: true``, another one is a 409.

Powertools' idempotency utility was not used: it makes a *function* idempotent (a decorator hashing
the event or an argument, DynamoDB persistence only), while this keeps an HTTP answer per API key and
route, hashes bodies that stream through the ASGI app (multipart included, with their random
boundaries made constant), and needs the same behaviour on SQLite locally.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragline.errors import Conflict, DependencyUnavailable, RaglineError
from ragline.idempotency import (
    HEADER,
    IDEMPOTENT_ROUTES,
    KEY_PATTERN,
    MAX_STORED_BODY_BYTES,
    REPLAYED_HEADER,
    Fingerprint,
    IdempotencyRecord,
    StoredResponse,
    parse_key,
    record_scope,
    takes_idempotency_key,
    worth_storing,
)
from ragline.models import Principal
from ragline.ports import IdempotencyStore

log = logging.getLogger("ragline.api.idempotency")

_HEADER_NAME = HEADER.lower().encode("latin-1")


@dataclass(frozen=True)
class IdempotencyPolicy:
    ttl_seconds: float
    stale_after_seconds: float


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _answer_error(error: RaglineError, scope: Scope, receive: Receive, send: Send) -> None:
    # The error's own body: a 429 carries its retry_after.
    await JSONResponse(error.body(), status_code=error.status)(scope, receive, send)


def _domain_error(exc: HTTPException) -> RaglineError:
    """The body limits refuse a body from inside receive() with an HTTPException raised from the
    domain error (ragline.api.limits); here, outside FastAPI's handlers, it is answered directly."""
    if isinstance(exc.__cause__, RaglineError):
        return exc.__cause__
    return RaglineError(str(exc.detail), error="HTTP error")


class IdempotencyMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        store: Callable[[], IdempotencyStore],
        authenticate: Callable[[Request], Principal],
        policy: IdempotencyPolicy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.store = store  # built on first use: a function never sent the header never opens it
        self.authenticate = authenticate
        self.policy = policy
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not takes_idempotency_key(scope["method"], _route_path(scope)):
            await self.app(scope, receive, send)
            return
        values = [value for name, value in scope["headers"] if name.lower() == _HEADER_NAME]
        if not values:
            await self.app(scope, receive, send)
            return
        try:
            key = parse_key(values)
            owner, token = await run_in_threadpool(self._authenticate, scope), secrets.token_urlsafe(16)
            where = record_scope(owner, scope["method"], _route_path(scope))
            held = await run_in_threadpool(self._claim, where, key, token)
        except RaglineError as error:  # a bad key, a key not let in, the store down: nothing was claimed
            await _answer_error(error, scope, receive, send)
            return
        content_type = _header(scope["headers"], b"content-type") or ""
        fingerprint = Fingerprint(content_type, scope.get("query_string", b""))
        if held is None:
            await self._run(scope, receive, send, where, key, token, fingerprint)
        elif not held.completed:
            conflict = Conflict(
                f"a request with this {HEADER} is still being processed; retry once it has answered",
                error="Idempotency-Key in use",
            )
            await _answer_error(conflict, scope, receive, send)
        else:
            await self._replay(scope, receive, send, held, fingerprint)

    def _authenticate(self, scope: Scope) -> str:
        """Whose keys these are (a revoked or unknown key gets its 401 here, before any record is read)."""
        principal = self.authenticate(Request(scope))
        return f"{principal.tenant_id}/{principal.key_id}"

    def _claim(self, where: str, key: str, token: str) -> IdempotencyRecord | None:
        return self.store().claim(
            where,
            key,
            token,
            now=self.clock(),
            ttl_seconds=self.policy.ttl_seconds,
            stale_after_seconds=self.policy.stale_after_seconds,
        )

    async def _release(self, where: str, key: str, token: str) -> None:
        try:
            with anyio.CancelScope(shield=True):  # also when the request is being cancelled
                await run_in_threadpool(self.store().release, where, key, token)
        except DependencyUnavailable as exc:
            log.error("could not release %s %r (claimed until it goes stale): %s", where, key, exc)

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, where: str, key: str, token: str, fingerprint: Fingerprint
    ) -> None:
        status: int | None = None
        response_type: str | None = None
        pieces: list[bytes] = []
        size = 0
        settled = False

        async def hashing_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and not fingerprint.complete:
                fingerprint.update(message.get("body", b""))
                if not message.get("more_body", False):
                    fingerprint.finish()
            return message

        async def settle() -> None:
            nonlocal settled
            settled = True
            assert status is not None
            if not (worth_storing(status) and fingerprint.complete and size <= MAX_STORED_BODY_BYTES):
                if size > MAX_STORED_BODY_BYTES:
                    log.warning("answer of %s is %d bytes: not kept for %s replays", where, size, HEADER)
                await self._release(where, key, token)
                return
            response = StoredResponse(status, response_type, b"".join(pieces))
            try:
                kept = await run_in_threadpool(self.store().complete, where, key, token, fingerprint.digest, response)
            except DependencyUnavailable as exc:
                # The work is done and its answer goes out; only a retry's replay is lost.
                log.error("answer to %s %r not kept: %s", where, key, exc)
                return
            if not kept:
                log.warning("claim of %s %r was taken over while it ran (past the stale time)", where, key)

        async def capturing_send(message: Message) -> None:
            nonlocal status, response_type, size
            if message["type"] == "http.response.start":
                status = message["status"]
                response_type = _header(list(message.get("headers", [])), b"content-type")
            elif message["type"] == "http.response.body" and not settled:
                body = message.get("body", b"")
                size += len(body)
                if size <= MAX_STORED_BODY_BYTES:
                    pieces.append(body)
                if not message.get("more_body", False):
                    await settle()  # before the last byte goes: the client then finds the record completed
            await send(message)

        try:
            await self.app(scope, hashing_receive, capturing_send)
        finally:
            if not settled:  # an exception, a cancellation, or no complete answer
                await self._release(where, key, token)

    async def _replay(
        self, scope: Scope, receive: Receive, send: Send, held: IdempotencyRecord, fingerprint: Fingerprint
    ) -> None:
        try:
            while not fingerprint.complete:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # the client left: nobody to answer
                if message["type"] == "http.request":
                    fingerprint.update(message.get("body", b""))
                    if not message.get("more_body", False):
                        fingerprint.finish()
        except HTTPException as exc:  # the body is over its limit or stopped arriving
            await _answer_error(_domain_error(exc), scope, receive, send)
            return
        if fingerprint.digest != held.fingerprint:
            conflict = Conflict(
                f"this {HEADER} was used with another request body; use a new key for a new request",
                error="Idempotency-Key reused",
            )
            await _answer_error(conflict, scope, receive, send)
            return
        assert held.response is not None
        headers = {REPLAYED_HEADER.lower(): "true"}
        if held.response.content_type:
            headers["content-type"] = held.response.content_type
        await Response(held.response.body, status_code=held.response.status, headers=headers)(scope, receive, send)


def document_idempotency(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI of the idempotent operations gains the optional header and the 409 (in place)."""
    parameter = {
        "name": HEADER,
        "in": "header",
        "required": False,
        "description": (
            "Makes the request safe to retry: the same key and body within 24 h replays the first answer "
            f"(with `{REPLAYED_HEADER}: true`) and creates nothing; another body, or a request still running "
            "with the key, is a 409."
        ),
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": KEY_PATTERN},
    }
    for method, path in IDEMPOTENT_ROUTES:
        operation = schema.get("paths", {}).get(path, {}).get(method.lower())
        if operation is None:
            continue
        parameters = operation.setdefault("parameters", [])
        if not any(p.get("name") == HEADER and p.get("in") == "header" for p in parameters):
            parameters.append(parameter)
        responses = operation.setdefault("responses", {})
        responses.setdefault(
            "409",
            {
                "description": "Conflict with the item's current state",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
            },
        )
    return schema
