"""What the sync and async clients share, with no I/O: the settings, the description of one API call
(``Call``), how its HTTP request is built, whether and when a failed attempt is retried, and multi-step
operations written once as generators (``Flow``) that the two transports drive.

A resource method builds a ``Call`` (or a ``Flow``); ``ragline_client._client``'s transports send it
(with ``httpx.Client`` or ``httpx.AsyncClient``), retry it, and parse the answer with ``Call.parse``.
"""

from __future__ import annotations

import enum
import os
import platform
import random
import uuid
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Dict,
    FrozenSet,
    Generator,
    Generic,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
)
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from ragline_client._version import __version__
from ragline_client.errors import APIResponseValidationError, RaglineError, error_body, retry_after_seconds

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DEFAULT_BASE_URL = "http://127.0.0.1:8000"  # `ragline serve`'s default address
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# A streamed answer may pause between tokens while the model thinks: a long read timeout.
DEFAULT_STREAM_TIMEOUT = httpx.Timeout(connect=10.0, read=300.0, write=60.0, pool=60.0)
DEFAULT_MAX_RETRIES = 2
# Above this many bytes a file goes through POST /v1/kb/uploads and a PUT to the URL it returns: deployed,
# a request through API Gateway to Lambda carries at most 6 MB (less once base64-encoded).
PRESIGNED_UPLOAD_THRESHOLD = 4 * 1024 * 1024
INITIAL_RETRY_DELAY = 0.5  # seconds, doubled at each retry
MAX_RETRY_DELAY = 8.0
# A Retry-After longer than this is not waited out: the error is raised for the caller to decide.
MAX_RETRY_AFTER = 60.0

IDEMPOTENCY_HEADER = "Idempotency-Key"
# The one 409 that clears by itself: the same Idempotency-Key is still running on the server.
IDEMPOTENCY_IN_USE = "Idempotency-Key in use"
# Failures before or while waiting for an answer that may be transient; an invalid URL or protocol is not.
RETRYABLE_TRANSPORT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError)
# ...and those of them where the request certainly never reached the server.
UNSENT_TRANSPORT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class NotGiven:
    """An argument left out (``None`` is a value: for ``knowledge_bases.update`` it clears a setting)."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN = NotGiven()


@dataclass(frozen=True)
class ClientConfig:
    api_key: str
    base_url: str
    timeout: httpx.Timeout
    stream_timeout: httpx.Timeout
    max_retries: int
    presigned_upload_threshold: int
    headers: Mapping[str, str]

    @classmethod
    def resolve(
        cls,
        *,
        api_key: Optional[str],
        base_url: Optional[str],
        timeout: Union[float, httpx.Timeout, None],
        stream_timeout: Union[float, httpx.Timeout, None],
        max_retries: int,
        presigned_upload_threshold: int,
        default_headers: Optional[Mapping[str, str]],
    ) -> ClientConfig:
        api_key = api_key if api_key is not None else os.environ.get("RAGLINE_API_KEY")
        if not api_key:
            raise RaglineError("no API key: pass api_key= or set RAGLINE_API_KEY")
        base_url = base_url or os.environ.get("RAGLINE_URL") or DEFAULT_BASE_URL
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        headers = {
            "user-agent": f"ragline-python/{__version__} (Python {platform.python_version()})",
            "accept": "application/json",
            **(default_headers or {}),
        }
        return cls(
            api_key=api_key,
            base_url=base_url.rstrip("/"),
            timeout=_timeout(timeout, DEFAULT_TIMEOUT),
            stream_timeout=_timeout(stream_timeout, DEFAULT_STREAM_TIMEOUT),
            max_retries=max_retries,
            presigned_upload_threshold=presigned_upload_threshold,
            headers=headers,
        )


def _timeout(value: Union[float, httpx.Timeout, None], default: httpx.Timeout) -> httpx.Timeout:
    if value is None:
        return default
    return value if isinstance(value, httpx.Timeout) else httpx.Timeout(value)


class Retry(enum.Enum):
    """Which failed attempts of a call may be sent again."""

    # Safe to repeat: reads, PUT/PATCH/DELETE, and POSTs that carry an Idempotency-Key or change nothing.
    SAFE = "safe"
    # Not safe to repeat (a secret rotation, a test event): only when the server certainly did not act
    # on it -- no connection was made, or it answered 408 or 429 before running the route.
    UNPROCESSED = "unprocessed"


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API request and how to read its answer. ``path`` is relative to the base URL, or absolute."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Optional[Mapping[str, Any]] = None
    json: Any = None
    content: Optional[bytes] = None
    data: Optional[Mapping[str, str]] = None  # multipart form fields
    files: Optional[Sequence[Tuple[str, Tuple[str, bytes, Optional[str]]]]] = None
    headers: Mapping[str, str] = field(default_factory=dict)
    retry: Retry = Retry.SAFE
    authenticated: bool = True  # False: a presigned URL, whose token is the authorization
    stream: bool = False
    accept: FrozenSet[int] = frozenset()  # error statuses that are this call's answer (503 of /health/detailed)

    def headers_for(self, config: ClientConfig) -> Dict[str, str]:
        """The headers of every attempt of this call: one Idempotency-Key for the logical call, so the
        server replays rather than repeats a retried POST (routes that do not keep answers ignore it)."""
        headers = dict(config.headers)
        if self.authenticated:
            headers["x-api-key"] = config.api_key
        if self.method == "POST" and self.retry is Retry.SAFE:
            headers[IDEMPOTENCY_HEADER] = f"ragline-python-{uuid.uuid4()}"
        if self.stream:
            headers["accept"] = "text/event-stream"
        headers.update(self.headers)
        return headers


@dataclass(frozen=True)
class Sleep:
    """A pause inside a ``Flow`` (time.sleep or asyncio.sleep, as the transport runs)."""

    seconds: float


# A multi-step operation: yields Calls (and receives their parsed results) or Sleeps; returns its result.
Flow = Generator[Union[Call[Any], Sleep], Any, T]


def build_request(
    http: Union[httpx.Client, httpx.AsyncClient], config: ClientConfig, call: Call[Any], headers: Mapping[str, str]
) -> httpx.Request:
    params = {k: v for k, v in (call.params or {}).items() if v is not None}
    return http.build_request(
        call.method,
        call.path if call.path.startswith(("http://", "https://")) else config.base_url + call.path,
        params=params or None,
        json=call.json,
        content=call.content,
        data=call.data,
        files=call.files,
        headers=headers,
        timeout=config.stream_timeout if call.stream else config.timeout,
    )


# ---- retries -----------------------------------------------------------------------------------------
def backoff(retry_number: int) -> float:
    """Exponential backoff with jitter: 0.5 s, 1 s, 2 s … (at most 8 s), each shortened by up to a quarter."""
    delay = min(MAX_RETRY_DELAY, INITIAL_RETRY_DELAY * 2**retry_number)
    return delay * (1.0 - 0.25 * random.random())


def delay_after_error(
    call: Call[Any], error: httpx.TransportError, retry_number: int, max_retries: int
) -> Optional[float]:
    """Seconds to wait before sending ``call`` again after ``error``, or None to give up."""
    if retry_number >= max_retries or not isinstance(error, RETRYABLE_TRANSPORT_ERRORS):
        return None
    if call.retry is Retry.UNPROCESSED and not isinstance(error, UNSENT_TRANSPORT_ERRORS):
        return None  # it may have run on the server
    return backoff(retry_number)


def delay_after_status(
    call: Call[Any], response: httpx.Response, retry_number: int, max_retries: int
) -> Optional[float]:
    """Seconds to wait before sending ``call`` again after this error answer (body read), or None to give up."""
    if retry_number >= max_retries:
        return None
    status = response.status_code
    body = error_body(response)
    if status in (408, 429):
        pass  # refused before the route ran: safe for every call
    elif call.retry is not Retry.SAFE:
        return None
    elif status == 409:
        if (body or {}).get("error") != IDEMPOTENCY_IN_USE:
            return None  # a real conflict (a name in use, a key already rotated): trying again changes nothing
    elif status < 500:
        return None
    asked = retry_after_seconds(response, body)
    if asked is None:
        return backoff(retry_number)
    return asked if asked <= MAX_RETRY_AFTER else None


# ---- reading answers -----------------------------------------------------------------------------------
def segment(value: str) -> str:
    """An id as one path segment: an id holding '/' or '?' cannot reach another route."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"an id must be a non-empty string, not {value!r}")
    return quote(value, safe="")


def model(cls: Type[M]) -> Callable[[httpx.Response], M]:
    """Parse the answer's JSON body as ``cls``."""

    def parse(response: httpx.Response) -> M:
        try:
            return cls.model_validate_json(response.content)
        except ValidationError as exc:
            raise _invalid(response, cls, exc) from None

    return parse


def envelope(cls: Type[M]) -> Callable[[httpx.Response], M]:
    """Parse the ``data`` of an answer ``{"status": …, "data": {…}}`` as ``cls``."""

    def parse(response: httpx.Response) -> M:
        try:
            body = response.json()
            return cls.model_validate(body["data"])
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            raise _invalid(response, cls, exc) from None

    return parse


def no_content(response: httpx.Response) -> None:
    return None


def raw(response: httpx.Response) -> httpx.Response:
    return response


def _invalid(response: httpx.Response, cls: type, exc: Exception) -> APIResponseValidationError:
    where = f"{response.request.method} {response.request.url.path}"
    return APIResponseValidationError(
        f"{where} answered {response.status_code} with a body that is not a {cls.__name__}: {exc}", response=response
    )


def body(**fields: Any) -> Dict[str, Any]:
    """A JSON body of the fields given (NOT_GIVEN and None left out: the server's defaults apply)."""
    return {k: v for k, v in fields.items() if v is not None and not isinstance(v, NotGiven)}
