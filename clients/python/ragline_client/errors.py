"""Every error the client raises, under one base class ``RaglineError``.

An answer with an error status raises an ``APIStatusError`` subclass chosen by the status; it carries
the status, Ragline's error body (``{"error", "message", "code", "details"?, "retry_after"?}``) and
the request id when a response header names one. A request that got no answer raises
``APIConnectionError`` (``APITimeoutError`` when it timed out).
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import Any, Dict, Optional, Type

import httpx

# The first of these response headers present is the request id (Ragline sets x-request-id on every answer;
# API Gateway sets x-amzn-RequestId on deployed REST APIs, apigw-requestid on HTTP APIs).
REQUEST_ID_HEADERS = ("x-request-id", "x-amzn-requestid", "apigw-requestid")


class RaglineError(Exception):
    """Base class of every error raised by ragline_client."""


class APIError(RaglineError):
    """A request to the API failed."""

    def __init__(self, message: str, *, request: Optional[httpx.Request] = None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request


class APIConnectionError(APIError):
    """No answer: the server could not be reached, or the connection broke before the answer was complete."""

    def __init__(self, message: str = "connection error", *, request: Optional[httpx.Request] = None) -> None:
        super().__init__(message, request=request)


class APITimeoutError(APIConnectionError):
    """No answer within the timeout."""

    def __init__(self, message: str = "request timed out", *, request: Optional[httpx.Request] = None) -> None:
        super().__init__(message, request=request)


class APIResponseValidationError(APIError):
    """The server answered 2xx with a body that does not have the documented shape."""

    def __init__(self, message: str, *, response: httpx.Response) -> None:
        super().__init__(message, request=response.request)
        self.response = response
        self.status_code = response.status_code


class APIStatusError(APIError):
    """The server answered with an error status (4xx or 5xx)."""

    status_code: int

    def __init__(self, message: str, *, response: httpx.Response, body: Optional[Dict[str, Any]]) -> None:
        super().__init__(message, request=response.request)
        self.response = response
        self.status_code = response.status_code
        self.body = body  # the parsed JSON error body, or None when the answer was not JSON
        body = body or {}
        self.error: Optional[str] = body.get("error") if isinstance(body.get("error"), str) else None
        self.code: Optional[int] = body.get("code") if isinstance(body.get("code"), int) else None
        self.details: Any = body.get("details")
        self.request_id: Optional[str] = next(
            (response.headers[name] for name in REQUEST_ID_HEADERS if name in response.headers), None
        )

    def __str__(self) -> str:
        shown = (
            f"{self.status_code} {self.error}: {self.message}" if self.error else f"{self.status_code}: {self.message}"
        )
        return f"{shown} (request id {self.request_id})" if self.request_id else shown


class BadRequestError(APIStatusError):
    status_code = 400


class AuthenticationError(APIStatusError):
    status_code = 401


class PermissionDeniedError(APIStatusError):
    status_code = 403


class NotFoundError(APIStatusError):
    status_code = 404


class ConflictError(APIStatusError):
    status_code = 409


class RequestTooLargeError(APIStatusError):
    status_code = 413


class UnsupportedMediaTypeError(APIStatusError):
    status_code = 415


class UnprocessableEntityError(APIStatusError):
    status_code = 422


class RateLimitError(APIStatusError):
    """429: the key's rate limit, or the tenant's queue on the server, is full. ``retry_after``: seconds to wait."""

    status_code = 429

    def __init__(self, message: str, *, response: httpx.Response, body: Optional[Dict[str, Any]]) -> None:
        super().__init__(message, response=response, body=body)
        self.retry_after: Optional[float] = retry_after_seconds(response, body)


class InternalServerError(APIStatusError):
    """5xx: the server failed, or a dependency of it (503) is down."""


class WaitTimeoutError(RaglineError, TimeoutError):
    """``documents.wait`` ran out of time; ``document`` is the last state seen."""

    def __init__(self, message: str, document: Any) -> None:
        super().__init__(message)
        self.document = document


class WebhookVerificationError(RaglineError):
    """A webhook delivery whose signature, timestamp or headers do not verify: do not trust its body."""


_BY_STATUS: Dict[int, Type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: RequestTooLargeError,
    415: UnsupportedMediaTypeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def error_body(response: httpx.Response) -> Optional[Dict[str, Any]]:
    """Ragline's JSON error body, or None for an answer that is not a JSON object (a proxy's HTML page)."""
    try:
        body = response.json()
    except ValueError:  # not JSON: the status and text still make the error
        return None
    return body if isinstance(body, dict) else None


def status_error(response: httpx.Response) -> APIStatusError:
    """The typed error for an error answer whose body has been read."""
    body = error_body(response)
    message = body.get("message") if body else None
    if not isinstance(message, str):
        message = response.text[:500] or response.reason_phrase or "error"
    cls = _BY_STATUS.get(response.status_code)
    if cls is None:
        cls = InternalServerError if response.status_code >= 500 else APIStatusError
    return cls(message, response=response, body=body)


def retry_after_seconds(response: httpx.Response, body: Optional[Dict[str, Any]]) -> Optional[float]:
    """Seconds the server asked to wait: the ``Retry-After`` header (seconds), else the body's ``retry_after``."""
    header = response.headers.get("retry-after")
    if header is not None:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass  # not seconds: an HTTP-date
        try:
            when = parsedate_to_datetime(header)
        except (TypeError, ValueError):
            when = None  # neither form: fall back to the body's figure
        if when is not None:
            return max(0.0, when.timestamp() - time.time())
    value = (body or {}).get("retry_after")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return max(0.0, float(value))
    return None
