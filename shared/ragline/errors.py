"""Domain errors and their one mapping to an HTTP status and the API's error body."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class RaglineError(Exception):
    status = 500
    error = "Internal error"

    def __init__(self, message: str, *, error: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if error is not None:
            self.error = error
        self.details = details

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.error, "message": self.message, "code": self.status}
        if self.details is not None:
            body["details"] = self.details
        return body


class BadRequest(RaglineError):
    status = 400
    error = "Bad request"


class Unauthorized(RaglineError):
    status = 401
    error = "Unauthorized"


class Forbidden(RaglineError):
    status = 403
    error = "Forbidden"


class NotFound(RaglineError):
    status = 404
    error = "Not found"


class RequestTimeout(RaglineError):
    status = 408
    error = "Request timeout"


class Conflict(RaglineError):
    status = 409
    error = "Conflict"


class DuplicateContent(Conflict):
    """A store refused a second live document with the same bytes (tenant + content_sha256)."""


class PayloadTooLarge(RaglineError):
    status = 413
    error = "Payload too large"


class UnsupportedMediaType(RaglineError):
    status = 415
    error = "Unsupported media type"


class Unprocessable(RaglineError):
    status = 422
    error = "Validation error"


class TooManyRequests(RaglineError):
    """Over a limit: the body says when to retry (``retry_after``, seconds, as in ``Retry-After``)."""

    status = 429
    error = "Too many requests"

    def __init__(self, message: str, *, retry_after: int, error: str | None = None) -> None:
        super().__init__(message, error=error)
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {**super().body(), "retry_after": self.retry_after}


class DependencyUnavailable(RaglineError):
    status = 503
    error = "Service unavailable"


class JobUndeliverable(DependencyUnavailable):
    """A job was stored but could not be handed to the workers: nothing would ever run it."""


def invalid_input(errors: Sequence[Mapping[str, Any]]) -> RaglineError:
    """A failed validation of a JSON body (pydantic's ``errors()``), as the API answers it: 400 when the JSON
    does not parse, else a 422 that names the first field in its message and lists every field in ``details``."""
    if any(e.get("type") == "json_invalid" for e in errors):
        return BadRequest("the request body is not valid JSON", error="Malformed JSON")
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    message = f"{where}: {first.get('msg', 'invalid value')}" if where else str(first.get("msg", "invalid request"))
    details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors]
    return Unprocessable(message, error="Validation error", details=details)


class ConnectionGone(Exception):
    """The client of a WebSocket connection has left: nothing sent to the connection reaches anyone."""


class DocumentParseError(Exception):
    """A file that cannot be turned into text; its message is shown to the user as the document's error."""


class ConfigurationError(RaglineError):
    """A deployment mistake (a missing setting or resource): the operator's to fix, not the caller's."""

    status = 500
    error = "Configuration error"
