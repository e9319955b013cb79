"""Idempotent writes (``Idempotency-Key``): which requests take the header, what a valid key is, what
counts as "the same request" (the fingerprint), and what is kept of an answer to replay it.

Pure: no I/O. The ASGI middleware (ragline.api.idempotency) runs it around the app, and an
``IdempotencyStore`` (ragline.ports) keeps the records, on SQLite or DynamoDB.

A record belongs to a scope: the caller's API key (its tenant and key id), the method and the path. So the same
Idempotency-Key sent with another key, or to another route, is another record.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ragline.errors import BadRequest

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# Printable ASCII, space included (HTTP strips it at either end, so a key never starts or ends with one).
KEY_PATTERN = r"^[\x20-\x7e]{1,255}$"
_KEY = re.compile(KEY_PATTERN)

# Every POST that creates something: the one list the middleware and the OpenAPI read. A route not
# here ignores the header (searches, deletes and streams are not replayed).
IDEMPOTENT_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("POST", "/v1/kb/documents"),  # JSON text, multipart single and batch
        ("POST", "/v1/kb/uploads"),  # presigned upload tickets
        ("POST", "/v1/kb/chat"),  # the whole answer (not /v1/kb/chat/stream)
        ("POST", "/v1/webhooks"),
        ("POST", "/v1/keys"),
        ("POST", "/v1/knowledge-bases"),
    }
)

# Answers bigger than this are not kept (the request then runs again on a retry): a DynamoDB item
# holds at most 400 KB, and every answer of the routes above is far smaller in practice.
MAX_STORED_BODY_BYTES = 256 * 1024
# The placeholder every multipart boundary becomes in the fingerprint.
NORMAL_BOUNDARY = b"ragline-idempotency-boundary"


def takes_idempotency_key(method: str, path: str) -> bool:
    return (method.upper(), path) in IDEMPOTENT_ROUTES


def parse_key(values: list[bytes]) -> str:
    """The key of a request's Idempotency-Key header values; BadRequest unless exactly one valid key."""
    if len(values) != 1:
        raise BadRequest(f"send one {HEADER} header, not several", error="Invalid Idempotency-Key")
    try:
        key = values[0].decode("ascii")
    except UnicodeDecodeError:
        key = None
    if key is None or not _KEY.fullmatch(key):
        raise BadRequest(
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters", error="Invalid Idempotency-Key"
        )
    return key


def record_scope(owner: str, method: str, path: str) -> str:
    """Whose record: the API key that sent it (``<tenant>/<key id>``, as authenticated), the method and
    the path. From the authenticated key, not the raw header: deployed, the authorizer vouches for it."""
    return f"{owner}:{method.upper()}:{path}"


def multipart_boundary(content_type: str) -> bytes | None:
    """The boundary parameter of a multipart content type, or None."""
    media_type, _, params = content_type.partition(";")
    if not media_type.strip().lower().startswith("multipart/"):
        return None
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value.encode("latin-1") or None
    return None


class BoundaryReplacer:
    """Replaces every occurrence of ``boundary`` in a byte stream fed in arbitrary pieces.

    A piece may end inside an occurrence, so the last ``len(boundary) - 1`` bytes wait for the next.
    """

    def __init__(self, boundary: bytes, replacement: bytes) -> None:
        self.boundary = boundary
        self.replacement = replacement
        self._carry = b""

    def feed(self, piece: bytes) -> bytes:
        data = self._carry + piece
        out: list[bytes] = []
        start = 0
        while (found := data.find(self.boundary, start)) >= 0:
            out += (data[start:found], self.replacement)
            start = found + len(self.boundary)
        # An occurrence not found yet can only start in the last len(boundary) - 1 bytes.
        keep = max(start, len(data) - len(self.boundary) + 1)
        out.append(data[start:keep])
        self._carry = data[keep:]
        return b"".join(out)

    def flush(self) -> bytes:
        rest, self._carry = self._carry, b""
        return rest


class Fingerprint:
    """What makes two requests to one route "the same": the query, the content type and the body,
    hashed as the body streams in. A multipart boundary (random per send in every client library)
    becomes a constant, so the same files and fields sent twice fingerprint alike."""

    def __init__(self, content_type: str, query_string: bytes = b"") -> None:
        boundary = multipart_boundary(content_type)
        self._replacer = BoundaryReplacer(boundary, NORMAL_BOUNDARY) if boundary else None
        normal_type = content_type.encode("latin-1")
        if boundary:
            normal_type = normal_type.replace(boundary, NORMAL_BOUNDARY)
        self._hash = hashlib.sha256()
        for part in (query_string, normal_type):
            self._hash.update(len(part).to_bytes(8, "big") + part)  # length-prefixed: no ambiguity between parts
        self.complete = False  # the whole body has been fed
        self.digest: str | None = None

    def update(self, piece: bytes) -> None:
        self._hash.update(self._replacer.feed(piece) if self._replacer else piece)

    def finish(self) -> str:
        if self._replacer:
            self._hash.update(self._replacer.flush())
        self.complete = True
        self.digest = self._hash.hexdigest()
        return self.digest


@dataclass(frozen=True)
class StoredResponse:
    """What a replay answers: the first answer's status, content type and body."""

    status: int
    content_type: str | None
    body: bytes


@dataclass(frozen=True)
class IdempotencyRecord:
    """One key's record. In progress until ``response`` is set (with the request's fingerprint)."""

    token: str  # the claim's: only its holder may complete or release it
    claimed_at: float  # epoch seconds
    expires_at: float
    fingerprint: str | None = None
    response: StoredResponse | None = None

    @property
    def completed(self) -> bool:
        return self.response is not None


def worth_storing(status: int) -> bool:
    """A 5xx (the client may retry), an authentication or scope refusal (nothing ran) and a rate limit
    (try later) are not kept; every other answer is the request's answer, replayed as it was."""
    return status < 500 and status not in (401, 403, 429)
