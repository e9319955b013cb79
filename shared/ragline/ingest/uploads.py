"""Uploads over the API beyond one file per request: a batch of files (each accepted or refused on
its own, or none at all), and presigned uploads (a URL now, the bytes later: to this server on the
local backend, straight to S3 on AWS, where the ingest function takes them in)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ragline.errors import Forbidden, NotFound, RaglineError
from ragline.ingest.metadata import MetadataLimits, check_metadata
from ragline.ingest.parsers import detect_content_type
from ragline.ingest.service import Accepted, IngestService, safe_filename
from ragline.models import UploadRequest, new_id, utcnow
from ragline.ports import BlobStore, PresigningBlobStore

UPLOAD_URL_TTL = 3600

# What a presigned upload was granted for (document_id, tenant_id, filename, content_type,
# metadata, kb_id): fixed when the URL is issued, applied when the bytes arrive.
Claims = dict[str, Any]
# The URL of this server's own receiving route for (document_id, token): only the HTTP layer knows it.
ReceiverUrl = Callable[[str, str], str]


@dataclass(frozen=True)
class IncomingFile:
    filename: str | None
    content_type: str | None
    data: bytes | RaglineError  # its bytes, or why they could not be read (too large)


@dataclass(frozen=True)
class UploadTicket:
    document_id: str
    upload_url: str
    expires_in: int
    max_bytes: int


class UploadUrls(Protocol):
    """Where a presigned upload's bytes go, and how its claims come back when they arrive here."""

    def issue(self, claims: Claims, receiver_url: ReceiverUrl) -> str: ...
    def redeem(self, document_id: str, token: str) -> Claims: ...


class UploadService:
    def __init__(self, ingest: IngestService, urls: UploadUrls) -> None:
        self.ingest = ingest
        self.urls = urls

    def accept_batch(
        self, tenant_id: str, files: list[IncomingFile], *, abort_on_error: bool, **options: Any
    ) -> list[Accepted | RaglineError]:
        """Each file's outcome, in order. With ``abort_on_error``, one bad file refuses them all."""
        # Type-check every file first, so an aborted batch stores nothing.
        checked = [_checked(file) for file in files]
        failures = [(file, error) for file, error in zip(files, checked) if isinstance(error, RaglineError)]
        if abort_on_error and failures:
            first = failures[0][1]
            raise type(first)(
                f"batch aborted: {len(failures)} of {len(files)} files cannot be ingested; nothing was stored",
                error=first.error,
                details=[{"filename": f.filename, "error": e.message, "code": e.status} for f, e in failures],
            )
        outcomes: list[Accepted | RaglineError] = []
        for file, data in zip(files, checked):
            if isinstance(data, RaglineError):
                outcomes.append(data)
                continue
            try:
                outcomes.append(
                    self.ingest.accept(
                        tenant_id, data, filename=file.filename, content_type=file.content_type, **options
                    )
                )
            except RaglineError as exc:
                outcomes.append(exc)
        return outcomes

    def presign(self, tenant_id: str, request: UploadRequest, receiver_url: ReceiverUrl) -> UploadTicket:
        detect_content_type(request.filename, request.content_type, b"")  # refuse a type we cannot ingest now
        kb_id = request.kb_id
        if self.ingest.knowledge_bases is not None:
            # 404 now, before any URL is issued; checked again when the bytes arrive (deleted meanwhile).
            kb_id = self.ingest.knowledge_bases.for_upload(tenant_id, kb_id or "default").id
        claims: Claims = {
            "document_id": new_id("doc"),
            "tenant_id": tenant_id,
            "filename": request.filename,
            "content_type": request.content_type,
            # Checked now, not when the bytes arrive: the caller learns of bad metadata before uploading.
            "metadata": check_metadata(request.metadata, MetadataLimits.from_settings(self.ingest.settings)),
            "kb_id": kb_id,
        }
        return UploadTicket(
            document_id=claims["document_id"],
            upload_url=self.urls.issue(claims, receiver_url),
            expires_in=UPLOAD_URL_TTL,
            max_bytes=self.ingest.settings.max_upload_bytes,
        )

    def redeem(self, document_id: str, token: str) -> Claims:
        """The claims of an upload URL this server issued, checked before its bytes are read."""
        return self.urls.redeem(document_id, token)

    def accept_upload(self, claims: Claims, data: bytes, content_type: str | None) -> Accepted:
        return self.ingest.accept(
            claims["tenant_id"],
            data,
            filename=claims["filename"],
            content_type=claims.get("content_type") or content_type,
            metadata=claims.get("metadata") or {},
            kb_id=claims.get("kb_id"),
            document_id=claims["document_id"],
        )


def _checked(file: IncomingFile) -> bytes | RaglineError:
    """The file's bytes if its type can be ingested, else why not."""
    if isinstance(file.data, RaglineError):
        return file.data
    try:
        detect_content_type(file.filename, file.content_type, file.data[:8192])
    except RaglineError as exc:
        return exc
    return file.data


class SignedUploadUrls:
    """Local backend: the URL is this server's receiving route; the claims travel in its signed token."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def issue(self, claims: Claims, receiver_url: ReceiverUrl) -> str:
        return receiver_url(claims["document_id"], sign_upload(self.secret, claims, UPLOAD_URL_TTL))

    def redeem(self, document_id: str, token: str) -> Claims:
        return verify_upload(self.secret, token, document_id)


class S3UploadUrls:
    """AWS backend: the client PUTs straight to S3; the claims wait beside it for the ingest function,
    which the uploads/ notification wakes (and which accepts under the claimed document id)."""

    def __init__(self, drop: PresigningBlobStore, claims: BlobStore) -> None:
        self.drop = drop
        self.claims = claims

    def issue(self, claims: Claims, receiver_url: ReceiverUrl) -> str:
        tenant, document_id = claims["tenant_id"], claims["document_id"]
        self.claims.put(f"{tenant}/{document_id}.json", json.dumps({**claims, "created_at": utcnow()}).encode())
        return self.drop.presign_put(
            f"{tenant}/{document_id}/{safe_filename(claims['filename'])}",
            claims["content_type"] or "application/octet-stream",
            UPLOAD_URL_TTL,
        )

    def redeem(self, document_id: str, token: str) -> Claims:
        raise NotFound("uploads go to the URL POST /v1/kb/uploads returned", error="Not found")


# ---- the local backend's upload tokens -------------------------------------------------------------
def load_secret(path: Path) -> bytes:
    """A per-installation signing secret, made on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
    return path.read_bytes()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_upload(secret: bytes, claims: Claims, expires_in: int) -> str:
    body = _b64(json.dumps({**claims, "exp": int(time.time()) + expires_in}, separators=(",", ":")).encode())
    signature = _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())
    return f"{body}.{signature}"


def verify_upload(secret: bytes, token: str, document_id: str) -> Claims:
    try:
        body, signature = token.split(".", 1)
        expected = _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())
        # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, once a 500).
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogatepass")):
            raise ValueError("bad signature")
        claims = json.loads(_unb64(body))
    except (ValueError, json.JSONDecodeError) as exc:
        raise Forbidden("the upload URL is not valid", error="Invalid upload URL") from exc
    if claims.get("document_id") != document_id:
        raise Forbidden("the upload URL is for another document", error="Invalid upload URL")
    if int(claims.get("exp", 0)) < time.time():
        raise Forbidden("the upload URL has expired; ask for a new one", error="Upload URL expired")
    return claims
