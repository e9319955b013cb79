"""Every answer names its request in `x-request-id`, so a client can quote it in a report and an operator
can find it in the logs: the id API Gateway gave the request when deployed (Mangum passes its event),
else a new one. A client's own `x-request-id` is not reused: it would let a caller forge ids in our logs."""

from __future__ import annotations

import logging
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
log = logging.getLogger("ragline.api")


def request_id_of(scope: Scope) -> str:
    """API Gateway's request id when there is one (REST and WebSocket events carry it), else a new one."""
    event = scope.get("aws.event")
    if isinstance(event, dict):
        context = event.get("requestContext")
        if isinstance(context, dict) and isinstance(context.get("requestId"), str) and context["requestId"]:
            return context["requestId"]
    return "req_" + uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
                if message.get("status", 200) >= 500:
                    log.warning("request %s %s answered %s", request_id, scope.get("path"), message["status"])
            await send(message)

        await self.app(scope, receive, with_id)
