"""API keys: shown once, stored only as a SHA-256 hash, bound to one tenant and a set of scopes."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta

from ragline.errors import BadRequest, Unauthorized
from ragline.models import ALL_SCOPES, TENANT_ID_PATTERN, ApiKey, Principal, Scope, new_id
from ragline.ports import MetadataStore

KEY_PREFIX = "rl_"


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def parse_scopes(text: str | None) -> frozenset[Scope]:
    if not text:
        return ALL_SCOPES
    try:
        return frozenset(Scope(part.strip()) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise BadRequest(f"unknown scope in {text!r}: use {', '.join(s.value for s in Scope)}") from exc


def validate_tenant(tenant_id: str) -> str:
    if not re.fullmatch(TENANT_ID_PATTERN, tenant_id):
        raise BadRequest(
            f"invalid tenant id {tenant_id!r}: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return tenant_id


def create_key(
    store: MetadataStore, tenant_id: str, scopes: frozenset[Scope] = ALL_SCOPES, expires_in_days: int | None = None
) -> tuple[str, ApiKey]:
    validate_tenant(tenant_id)
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    expires_at = None
    if expires_in_days is not None:
        if expires_in_days <= 0:
            raise BadRequest("expires-in-days must be a positive number of days")
        expires_at = (datetime.now(UTC) + timedelta(days=expires_in_days)).isoformat().replace("+00:00", "Z")
    key = ApiKey(
        id=new_id("key"),
        tenant_id=tenant_id,
        key_hash=hash_key(plaintext),
        prefix=plaintext[: len(KEY_PREFIX) + 6],
        scopes=scopes,
        expires_at=expires_at,
    )
    store.create_key(key)
    return plaintext, key


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def authenticate(store: MetadataStore, presented: str | None) -> Principal:
    if not presented:
        raise Unauthorized("send your API key in the x-api-key header", error="Missing API key")
    key = store.find_key(hash_key(presented))
    if key is None:
        raise Unauthorized("the API key is not valid", error="Invalid API key")
    if key.revoked_at is not None:
        raise Unauthorized("the API key has been revoked", error="Invalid API key")
    if key.expires_at is not None and _parse_time(key.expires_at) <= datetime.now(UTC):
        raise Unauthorized("the API key has expired", error="Invalid API key")
    return Principal(key_id=key.id, tenant_id=key.tenant_id, scopes=key.scopes)
