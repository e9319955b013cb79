"""Requests per minute per API key, on the HTTP side: ``limited_principal`` counts the request once
the key is known (``require`` and the Idempotency-Key middleware call it; whichever comes first
counts, the other sees the decision), and ``RateLimitHeadersMiddleware`` puts the decision's
``RateLimit-*`` headers on whatever answer the request gets (403, 404, 422 and replays included;
``Retry-After`` on the 429). A request refused before its key is known (401, or a 413 of a body
sent without a Content-Length) has no key and so no headers; ``/health`` and the upload receiver
(authorized by its token) take no key and are not limited.

The rule itself (count in the key's window, refuse over the limit) is ``ragline.rate_limits.count_request`` and
``refuse_over_limit``; the WebSocket chat, which no HTTP middleware sees, calls them for each query it is sent.

The request is counted before the route's scope is checked: a key flooding a route it may not call
spends its own budget like any other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragline.api.auth import current_principal
from ragline.models import Principal
from ragline.rate_limits import Decision, count_request, headers, refuse_over_limit

if TYPE_CHECKING:
    from fastapi import Request

    from ragline.container import Container

_DECISION = "ragline_rate_limit"


def limited_principal(
    container: Container, request: Request, key: str | None, *, clock: Callable[[], float] = time.time
) -> Principal:
    """The caller (``current_principal``), once this request is counted against the key's limit:
    TooManyRequests (429) when the key's window is full."""
    principal = current_principal(container, request, key)
    decision: Decision | None = getattr(request.state, _DECISION, None)
    if decision is None:  # not counted yet (the Idempotency-Key middleware may have counted it)
        decision = count_request(container.rate_limiter, principal, container.settings.rate_limit_per_minute, clock())
        setattr(request.state, _DECISION, decision)
    refuse_over_limit(decision)
    return principal


class RateLimitHeadersMiddleware:
    """Adds the request's rate-limit headers to its answer, if it was counted (see the module)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                decision: Decision | None = scope.get("state", {}).get(_DECISION)
                if decision is not None:
                    response_headers = MutableHeaders(scope=message)
                    for name, value in headers(decision).items():
                        response_headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)


_HEADER_DOCS = {
    "RateLimit-Limit": "Requests this key may make per window (60 s)",
    "RateLimit-Remaining": "Requests the key's current window still serves",
    "RateLimit-Reset": "Seconds until the key's current window ends",
    "RateLimit-Policy": 'The limit and its window, e.g. "120;w=60"',
}
_TOO_MANY = "This API key has made its requests for this minute: retry after Retry-After seconds"


def document_rate_limits(openapi: dict[str, Any]) -> dict[str, Any]:
    """Every operation behind an API key: the RateLimit headers on its answers (but the 401), and
    the 429 with Retry-After."""
    for operations in openapi.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or not operation.get("security"):
                continue
            responses = operation.setdefault("responses", {})
            too_many = responses.get("429")
            if too_many is None:  # another limit (per tenant) may document its own 429 on the route already
                schema = {"$ref": "#/components/schemas/ErrorBody"}
                too_many = responses["429"] = {
                    "description": _TOO_MANY,
                    "content": {"application/json": {"schema": schema}},
                }
            elif _TOO_MANY not in too_many.get("description", ""):
                too_many["description"] = f"{too_many.get('description', '')}; or: {_TOO_MANY}"
            too_many.setdefault("headers", {})["Retry-After"] = {
                "description": "Seconds to wait before retrying",
                "schema": {"type": "integer"},
            }
            for status, response in responses.items():
                if status == "401":
                    continue
                response_headers = response.setdefault("headers", {})
                for name, description in _HEADER_DOCS.items():
                    schema = {"type": "string"} if name == "RateLimit-Policy" else {"type": "integer"}
                    response_headers.setdefault(name, {"description": description, "schema": schema})
    return openapi
