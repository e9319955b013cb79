"""Presigned uploads in local mode: a signed, expiring URL on this server stands in for S3's."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any

from ragline.errors import Forbidden


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


def sign_upload(secret: bytes, claims: dict[str, Any], expires_in: int) -> str:
    body = _b64(json.dumps({**claims, "exp": int(time.time()) + expires_in}, separators=(",", ":")).encode())
    signature = _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())
    return f"{body}.{signature}"


def verify_upload(secret: bytes, token: str, document_id: str) -> dict[str, Any]:
    try:
        body, signature = token.split(".", 1)
        expected = _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, signature):
            raise ValueError("bad signature")
        claims = json.loads(_unb64(body))
    except (ValueError, json.JSONDecodeError) as exc:
        raise Forbidden("the upload URL is not valid", error="Invalid upload URL") from exc
    if claims.get("document_id") != document_id:
        raise Forbidden("the upload URL is for another document", error="Invalid upload URL")
    if int(claims.get("exp", 0)) < time.time():
        raise Forbidden("the upload URL has expired; ask for a new one", error="Upload URL expired")
    return claims
