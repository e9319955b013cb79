"""Verifying a webhook delivery in a receiver (Standard Webhooks 1.0), with the standard library's hmac.

Ragline signs ``"{webhook-id}.{webhook-timestamp}.{body}"`` with HMAC-SHA256, keyed with the base64-decoded
part of the endpoint's ``whsec_…`` secret, and sends ``webhook-signature: v1,<base64>`` -- several,
space-separated, while a rotation's grace period runs (one per valid secret). A delivery verifies when
one of them matches the secret the receiver holds and its timestamp is within the tolerance of now
(a replay of an old delivery does not).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from typing import Mapping, Optional, Union

from pydantic import ValidationError

from ragline_client.errors import WebhookVerificationError
from ragline_client.models import WebhookEvent

SECRET_PREFIX = "whsec_"
TOLERANCE_SECONDS = 5 * 60


def signing_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret (the prefix is optional)."""
    encoded = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is 'whsec_' followed by base64") from None


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one delivery."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_webhook(
    body: Union[bytes, str],
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance_seconds: float = TOLERANCE_SECONDS,
) -> WebhookEvent:
    """The delivery's event, once its signature and timestamp check out; ``WebhookVerificationError`` if not.

    ``body`` must be the raw bytes received (before any JSON parsing: re-serialised JSON signs differently);
    ``headers`` any mapping of the request's headers (names in any case).
    """
    raw = body.encode() if isinstance(body, str) else bytes(body)
    lowered = {name.lower(): value for name, value in headers.items()}
    webhook_id = _header(lowered, "webhook-id")
    timestamp_text = _header(lowered, "webhook-timestamp")
    signatures = _header(lowered, "webhook-signature")
    try:
        timestamp = int(timestamp_text)
    except ValueError:
        raise WebhookVerificationError(f"webhook-timestamp is not Unix seconds: {timestamp_text!r}") from None
    now = time.time()
    if timestamp < now - tolerance_seconds:
        raise WebhookVerificationError("the delivery's timestamp is too old: a replay, or a clock far off")
    if timestamp > now + tolerance_seconds:
        raise WebhookVerificationError("the delivery's timestamp is in the future: a clock far off")
    expected = sign(secret, webhook_id, timestamp, raw).partition(",")[2].encode()
    matched = False
    for versioned in signatures.split(" "):
        version, _, signature = versioned.partition(",")
        # Compare every v1 signature in constant time, and do not stop at the first match: the time taken
        # says nothing about which one matched.
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            matched = True
    if not matched:
        raise WebhookVerificationError("no signature matches the secret: the body or headers were changed")
    try:
        return WebhookEvent.model_validate_json(raw)
    except ValidationError as exc:
        raise WebhookVerificationError(f"the signed body is not a Ragline event: {exc}") from None


def _header(headers: Mapping[str, str], name: str) -> str:
    value: Optional[str] = headers.get(name)
    if not value:
        raise WebhookVerificationError(f"the {name} header is missing")
    return value
