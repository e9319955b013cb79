"""API keys: shown once, stored only as a SHA-256 hash, bound to one tenant and a set of scopes.

Rotation makes a new key (new id, new secret, the same name, scopes, limit and expiry) and gives the
old one an expiry at the end of the grace period; revocation takes effect on the next request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from ragline.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from ragline.models import ALL_SCOPES, TENANT_ID_PATTERN, ApiKey, Principal, Scope, new_id, utcnow
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


def _timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_key(
    tenant_id: str,
    scopes: frozenset[Scope] = ALL_SCOPES,
    *,
    expires_at: str | None = None,
    name: str | None = None,
    rate_limit_per_minute: int | None = None,
    rotated_from: str | None = None,
) -> tuple[str, ApiKey]:
    """A new secret and its record (not stored yet)."""
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id=new_id("key"),
        tenant_id=tenant_id,
        key_hash=hash_key(plaintext),
        prefix=plaintext[: len(KEY_PREFIX) + 6],
        scopes=scopes,
        name=name,
        expires_at=expires_at,
        rate_limit_per_minute=rate_limit_per_minute,
        rotated_from=rotated_from,
    )
    return plaintext, key


def create_key(
    store: MetadataStore,
    tenant_id: str,
    scopes: frozenset[Scope] = ALL_SCOPES,
    expires_in_days: int | None = None,
    *,
    name: str | None = None,
    rate_limit_per_minute: int | None = None,
) -> tuple[str, ApiKey]:
    plaintext, key = new_key(
        validate_tenant(tenant_id),
        scopes,
        expires_at=_expiry(expires_in_days),
        name=name,
        rate_limit_per_minute=rate_limit_per_minute,
    )
    store.create_key(key)
    return plaintext, key


def _expiry(expires_in_days: int | None) -> str | None:
    if expires_in_days is None:
        return None
    if expires_in_days <= 0:
        raise BadRequest("expires-in-days must be a positive number of days")
    return _timestamp(datetime.now(UTC) + timedelta(days=expires_in_days))


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def authenticate(store: MetadataStore, presented: str | None) -> Principal:
    if not presented:
        raise Unauthorized("send your API key in the x-api-key header", error="Missing API key")
    return _usable(store.find_key(hash_key(presented)))


def reauthenticate(store: MetadataStore, key_id: str) -> Principal:
    """The principal of a key accepted earlier, if the key is still usable now: a long-lived connection
    (a WebSocket) checks its key again on every query, so a revoked or expired key stops there."""
    return _usable(store.get_key(key_id))


def _usable(key: ApiKey | None) -> Principal:
    if key is None:
        raise Unauthorized("the API key is not valid", error="Invalid API key")
    if key.revoked_at is not None:
        raise Unauthorized("the API key has been revoked", error="Invalid API key")
    if key.expires_at is not None and _parse_time(key.expires_at) <= datetime.now(UTC):
        if key.replaced_by is not None:
            raise Unauthorized(
                "the API key was rotated and its grace period has ended: use its replacement", error="Invalid API key"
            )
        raise Unauthorized("the API key has expired", error="Invalid API key")
    return Principal(
        key_id=key.id, tenant_id=key.tenant_id, scopes=key.scopes, rate_limit_per_minute=key.rate_limit_per_minute
    )


def require_scope(principal: Principal, scope: Scope, *alternatives: Scope) -> Principal:
    """The principal, if its key grants ``scope`` or one of ``alternatives``; else Forbidden (403)."""
    accepted = (scope, *alternatives)
    if not any(principal.can(one) for one in accepted):
        names = " or ".join(repr(one.value) for one in accepted)
        raise Forbidden(f"this API key lacks the {names} scope", error="Insufficient scope")
    return principal


def principal_from_authorizer(context: Mapping[str, Any] | None) -> Principal:
    """The Principal API Gateway's authorizer vouched for (deployed): its context values are all strings."""
    if not context:
        raise Unauthorized("the request did not pass the API key authorizer", error="Missing API key")
    tenant_id, key_id = context.get("tenant_id"), context.get("key_id")
    if not isinstance(tenant_id, str) or not tenant_id or not isinstance(key_id, str) or not key_id:
        raise Unauthorized("the authorizer context names no tenant or key", error="Invalid API key")
    raw_scopes = context.get("scopes")
    try:
        # No default to "every scope" here: an empty or missing list grants nothing.
        scopes = frozenset(Scope(part.strip()) for part in str(raw_scopes or "").split(",") if part.strip())
    except ValueError as exc:
        raise Unauthorized("the authorizer context has an unknown scope", error="Invalid API key") from exc
    limit = context.get("rate_limit_per_minute")
    try:
        rate_limit = int(limit) if limit not in (None, "") else None
    except (TypeError, ValueError) as exc:
        raise Unauthorized("the authorizer context has a bad rate limit", error="Invalid API key") from exc
    return Principal(key_id=key_id, tenant_id=tenant_id, scopes=scopes, rate_limit_per_minute=rate_limit)


# ---- the Keys API ------------------------------------------------------------------------------------
MAX_EXPIRES_IN_DAYS = 3650
MAX_GRACE_PERIOD_HOURS = 30 * 24
KeyName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]


class CreateKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: KeyName
    scopes: list[Scope] = Field(min_length=1, max_length=len(Scope))
    expires_in_days: int | None = Field(default=None, ge=1, le=MAX_EXPIRES_IN_DAYS)
    rate_limit_per_minute: int | None = Field(default=None, ge=1, le=1_000_000)


class RotateKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Fractions allowed (0.25 is 15 minutes); 0 ends the old key at once.
    grace_period_hours: float = Field(default=24.0, ge=0, le=MAX_GRACE_PERIOD_HOURS)


class KeyOut(BaseModel):
    id: str
    name: str | None
    prefix: str
    scopes: list[Scope]
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None
    rate_limit_per_minute: int | None
    replaced_by: str | None
    rotated_from: str | None


class KeyCreated(KeyOut):
    key: str = Field(description="The secret: shown only in this answer")


class KeyList(BaseModel):
    keys: list[KeyOut]
    next_cursor: str | None


class KeyService:
    """A tenant's keys. Every method names the tenant: another tenant's key is simply not found.

    ``on_created`` (deployed: register the secret with API Gateway's usage plan) runs for every new
    secret, from creation or rotation, before it is shown.
    """

    def __init__(
        self,
        store: MetadataStore,
        last_used: Callable[[list[str]], dict[str, str]],
        on_created: Callable[[ApiKey, str], None] | None = None,
    ) -> None:
        self.store = store
        self.last_used = last_used
        self.on_created = on_created

    def public_many(self, keys: list[ApiKey]) -> list[dict[str, Any]]:
        """What the API shows of these keys, with when each was last used."""
        used = self.last_used([key.id for key in keys])
        return [key.public(used.get(key.id)) for key in keys]

    def public(self, key: ApiKey) -> dict[str, Any]:
        return self.public_many([key])[0]

    @staticmethod
    def _no_escalation(caller: Principal | None, scopes: frozenset[Scope]) -> None:
        # Literal subset: admin does not stand in for the other scopes here (API.md).
        if caller is not None and not scopes <= caller.scopes:
            missing = ", ".join(sorted(scopes - caller.scopes))
            raise Forbidden(
                f"a key cannot hand out scopes it does not hold itself (missing: {missing})", error="Insufficient scope"
            )

    def _issue(self, plaintext: str, key: ApiKey) -> None:
        if self.on_created is not None:
            self.on_created(key, plaintext)

    def create(self, tenant_id: str, request: CreateKeyRequest, caller: Principal | None = None) -> tuple[str, ApiKey]:
        scopes = frozenset(request.scopes)
        self._no_escalation(caller, scopes)
        plaintext, key = new_key(
            validate_tenant(tenant_id),
            scopes,
            expires_at=_expiry(request.expires_in_days),
            name=request.name,
            rate_limit_per_minute=request.rate_limit_per_minute,
        )
        self._issue(plaintext, key)  # before storing: a stored key is never one the gateway refuses
        self.store.create_key(key)
        return plaintext, key

    def get(self, tenant_id: str, key_id: str) -> ApiKey:
        key = self.store.get_key(key_id)
        if key is None or key.tenant_id != tenant_id:
            raise NotFound(f"key {key_id} not found", error="Key not found")
        return key

    def find(self, key_id: str) -> ApiKey:
        """By id alone (the CLI, which has the whole store anyway)."""
        key = self.store.get_key(key_id)
        if key is None:
            raise NotFound(f"key {key_id} not found", error="Key not found")
        return key

    def list(self, tenant_id: str, *, limit: int, cursor: str | None) -> tuple[list[ApiKey], str | None]:
        return self.store.list_keys(tenant_id, limit=limit, cursor=cursor)

    def rotate(
        self, tenant_id: str, key_id: str, grace_period_hours: float, caller: Principal | None = None
    ) -> tuple[str, ApiKey]:
        if not 0 <= grace_period_hours <= MAX_GRACE_PERIOD_HOURS:
            raise BadRequest(f"the grace period is 0 to {MAX_GRACE_PERIOD_HOURS} hours")
        old = self.get(tenant_id, key_id)
        # The new secret carries the old key's scopes: only a caller holding them all may receive it.
        self._no_escalation(caller, old.scopes)
        now = datetime.now(UTC)
        if old.revoked_at is not None or old.replaced_by is not None:
            state = "revoked" if old.revoked_at is not None else f"rotated already (to {old.replaced_by})"
            raise Conflict(f"key {key_id} is {state}", error="Key not rotatable")
        if old.expires_at is not None and _parse_time(old.expires_at) <= now:
            raise Conflict(f"key {key_id} has expired", error="Key not rotatable")
        grace_end = now + timedelta(hours=grace_period_hours)
        if old.expires_at is not None:
            grace_end = min(grace_end, _parse_time(old.expires_at))
        plaintext, new = new_key(
            tenant_id,
            old.scopes,
            expires_at=old.expires_at,
            name=old.name,
            rate_limit_per_minute=old.rate_limit_per_minute,
            rotated_from=old.id,
        )
        self._issue(plaintext, new)
        self.store.rotate_key(old.id, _timestamp(grace_end), new)
        return plaintext, new

    def revoke(self, tenant_id: str, key_id: str) -> ApiKey:
        self.get(tenant_id, key_id)
        revoked = self.store.revoke_key(key_id, utcnow())
        if revoked is None:
            raise NotFound(f"key {key_id} not found", error="Key not found")
        return revoked
