"""Ragline's Python client: ``Ragline`` (sync) and ``AsyncRagline`` (asyncio), typed errors, retries, streamed
answers and webhook verification. Needs only httpx and pydantic."""

from ragline_client._client import AsyncRagline, Ragline
from ragline_client._core import NOT_GIVEN, PRESIGNED_UPLOAD_THRESHOLD, NotGiven
from ragline_client._version import __version__
from ragline_client.errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RaglineError,
    RateLimitError,
    RequestTooLargeError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
    WaitTimeoutError,
    WebhookVerificationError,
)
from ragline_client.signatures import verify_webhook
from ragline_client.streaming import (
    AsyncChatStream,
    ChatStream,
    ChatStreamEvent,
    DoneEvent,
    ErrorEvent,
    MessageEvent,
    SourcesEvent,
)

__all__ = [
    "__version__",
    "Ragline",
    "AsyncRagline",
    "NOT_GIVEN",
    "NotGiven",
    "PRESIGNED_UPLOAD_THRESHOLD",
    "verify_webhook",
    "ChatStream",
    "AsyncChatStream",
    "ChatStreamEvent",
    "SourcesEvent",
    "MessageEvent",
    "DoneEvent",
    "ErrorEvent",
    "RaglineError",
    "APIError",
    "APIStatusError",
    "APIConnectionError",
    "APITimeoutError",
    "APIResponseValidationError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "RequestTooLargeError",
    "UnsupportedMediaTypeError",
    "UnprocessableEntityError",
    "RateLimitError",
    "InternalServerError",
    "WaitTimeoutError",
    "WebhookVerificationError",
]
