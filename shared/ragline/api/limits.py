"""Request-body limits, enforced while the body arrives: a client cannot make the server hold more than
the limit in memory, nor hold a worker with a body it never finishes sending.

A declared ``Content-Length`` over the limit is refused before anything is read; a chunked body (no
declared length) is counted as it arrives and refused at the first byte over. A client that stops
sending midway is cut off after ``body_read_timeout_seconds``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragline.api.errors import error_response
from ragline.config import Settings
from ragline.errors import PayloadTooLarge, RaglineError, RequestTimeout

# The local receiver of presigned uploads takes the file's raw bytes as its body.
RAW_UPLOAD_PATH_PREFIX = "/v1/kb/uploads/"


@dataclass(frozen=True)
class BodyLimits:
    json_bytes: int
    multipart_bytes: int
    raw_upload_bytes: int
    read_timeout_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> BodyLimits:
        return cls(
            json_bytes=settings.max_json_body_bytes,
            multipart_bytes=settings.max_multipart_body_bytes,
            raw_upload_bytes=settings.max_upload_bytes,
            read_timeout_seconds=settings.body_read_timeout_seconds,
        )

    def for_request(self, method: str, path: str, content_type: str) -> tuple[int, str]:
        """The limit on one request's body, and what to call it in the error."""
        if content_type.startswith("multipart/form-data"):
            return self.multipart_bytes, "a multipart body"
        if method == "PUT" and path.startswith(RAW_UPLOAD_PATH_PREFIX):
            return self.raw_upload_bytes, "an uploaded file"
        return self.json_bytes, "a JSON body (send bigger texts as files)"


def _rejection(error: RaglineError) -> HTTPException:
    # FastAPI turns any other exception raised while it reads a body into a 400; an HTTPException passes
    # through, and the error handlers render the domain error it is raised from.
    return HTTPException(error.status, error.message)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, what = self.limits.for_request(scope["method"], scope["path"], _header(scope, b"content-type").lower())
        too_large = PayloadTooLarge(f"{what} may be at most {limit} bytes")
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > limit:
            await error_response(too_large.status, too_large.error, too_large.message)(scope, receive, send)
            return

        received = 0
        body_done = False
        timeout = self.limits.read_timeout_seconds

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # after the body, receive() only waits for a disconnect: no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), timeout)
            except TimeoutError:
                late = RequestTimeout(f"the request body did not arrive within {timeout:g} s")
                raise _rejection(late) from late
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _rejection(too_large) from too_large  # nothing was answered yet
                body_done = not message.get("more_body", False)
            return message

        await self.app(scope, limited_receive, send)
