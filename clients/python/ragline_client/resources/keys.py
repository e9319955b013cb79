"""API keys and the audit log (admin scope, the caller's tenant only)."""

from __future__ import annotations

from typing import AsyncIterator, Iterator, List, Optional, Sequence

from ragline_client._core import Call, Retry, body, model, no_content, segment
from ragline_client._transport import AsyncTransport, SyncTransport
from ragline_client.models import ApiKey, ApiKeyCreated, ApiKeyPage, AuditEvent, AuditPage, KeyUsage

MAX_PAGE_SIZE = 100


def create_call(
    name: str, scopes: Sequence[str], expires_in_days: Optional[int], rate_limit_per_minute: Optional[int]
) -> Call[ApiKeyCreated]:
    json = body(
        name=name, scopes=list(scopes), expires_in_days=expires_in_days, rate_limit_per_minute=rate_limit_per_minute
    )
    return Call("POST", "/v1/keys", model(ApiKeyCreated), json=json)


def list_page_call(limit: int, cursor: Optional[str]) -> Call[ApiKeyPage]:
    return Call("GET", "/v1/keys", model(ApiKeyPage), params={"limit": limit, "cursor": cursor})


def get_call(key_id: str) -> Call[ApiKey]:
    return Call("GET", f"/v1/keys/{segment(key_id)}", model(ApiKey))


def rotate_call(key_id: str, grace_period_hours: Optional[float]) -> Call[ApiKeyCreated]:
    # Not repeatable: a second attempt finds the key rotated already (409) and the new secret would be lost.
    return Call(
        "POST",
        f"/v1/keys/{segment(key_id)}/rotate",
        model(ApiKeyCreated),
        json=body(grace_period_hours=grace_period_hours),
        retry=Retry.UNPROCESSED,
    )


def revoke_call(key_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/keys/{segment(key_id)}", no_content)


def usage_call(key_id: str, period_days: Optional[int]) -> Call[KeyUsage]:
    return Call("GET", f"/v1/keys/{segment(key_id)}/usage", model(KeyUsage), params={"period_days": period_days})


def audit_page_call(limit: int, cursor: Optional[str]) -> Call[AuditPage]:
    return Call("GET", "/v1/audit", model(AuditPage), params={"limit": limit, "cursor": cursor})


def _keys(page: ApiKeyPage) -> List[ApiKey]:
    return page.keys


def _events(page: AuditPage) -> List[AuditEvent]:
    return page.events


class Keys:
    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def create(
        self,
        name: str,
        scopes: Sequence[str],
        *,
        expires_in_days: Optional[int] = None,
        rate_limit_per_minute: Optional[int] = None,
    ) -> ApiKeyCreated:
        """A new key of the caller's tenant (``scopes`` a subset of the caller's); its secret ``key`` is shown
        only in this answer."""
        return self._t.request(create_call(name, scopes, expires_in_days, rate_limit_per_minute))

    def list(self, *, page_size: int = MAX_PAGE_SIZE) -> Iterator[ApiKey]:
        return self._t.paginate(lambda cursor: list_page_call(page_size, cursor), _keys)

    def get(self, key_id: str) -> ApiKey:
        return self._t.request(get_call(key_id))

    def rotate(self, key_id: str, *, grace_period_hours: Optional[float] = None) -> ApiKeyCreated:
        """A new key (new id and secret) replacing this one, which keeps working for the grace period."""
        return self._t.request(rotate_call(key_id, grace_period_hours))

    def revoke(self, key_id: str) -> None:
        """Refuse the key from its next request."""
        self._t.request(revoke_call(key_id))

    def usage(self, key_id: str, *, period_days: Optional[int] = None) -> KeyUsage:
        return self._t.request(usage_call(key_id, period_days))


class AsyncKeys:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def create(
        self,
        name: str,
        scopes: Sequence[str],
        *,
        expires_in_days: Optional[int] = None,
        rate_limit_per_minute: Optional[int] = None,
    ) -> ApiKeyCreated:
        return await self._t.request(create_call(name, scopes, expires_in_days, rate_limit_per_minute))

    def list(self, *, page_size: int = MAX_PAGE_SIZE) -> AsyncIterator[ApiKey]:
        return self._t.paginate(lambda cursor: list_page_call(page_size, cursor), _keys)

    async def get(self, key_id: str) -> ApiKey:
        return await self._t.request(get_call(key_id))

    async def rotate(self, key_id: str, *, grace_period_hours: Optional[float] = None) -> ApiKeyCreated:
        return await self._t.request(rotate_call(key_id, grace_period_hours))

    async def revoke(self, key_id: str) -> None:
        await self._t.request(revoke_call(key_id))

    async def usage(self, key_id: str, *, period_days: Optional[int] = None) -> KeyUsage:
        return await self._t.request(usage_call(key_id, period_days))


class Audit:
    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def list(self, *, page_size: int = MAX_PAGE_SIZE) -> Iterator[AuditEvent]:
        """Key and webhook changes and every delete, newest first, page after page."""
        return self._t.paginate(lambda cursor: audit_page_call(page_size, cursor), _events)


class AsyncAudit:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    def list(self, *, page_size: int = MAX_PAGE_SIZE) -> AsyncIterator[AuditEvent]:
        return self._t.paginate(lambda cursor: audit_page_call(page_size, cursor), _events)
