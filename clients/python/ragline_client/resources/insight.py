"""History and ratings of answered questions, analytics, and health."""

from __future__ import annotations

from typing import Optional

from ragline_client._core import Call, body, envelope, model, segment
from ragline_client._transport import AsyncTransport, SyncTransport
from ragline_client.models import (
    DetailedHealth,
    Health,
    HistoryPage,
    PopularReport,
    QueryDeleted,
    QueryDetail,
    RatingResult,
    UsageReport,
)


def history_call(limit: Optional[int], offset: Optional[int], include_answer: Optional[bool]) -> Call[HistoryPage]:
    params = {"limit": limit, "offset": offset, "include_answer": _flag(include_answer)}
    return Call("GET", "/v1/queries/history", model(HistoryPage), params=params)


def _flag(value: Optional[bool]) -> Optional[str]:
    return None if value is None else ("true" if value else "false")


def get_call(query_id: str) -> Call[QueryDetail]:
    return Call("GET", f"/v1/queries/{segment(query_id)}", model(QueryDetail))


def delete_call(query_id: str) -> Call[QueryDeleted]:
    return Call("DELETE", f"/v1/queries/{segment(query_id)}", envelope(QueryDeleted))


def rate_call(query_id: str, rating: int, comment: Optional[str]) -> Call[RatingResult]:
    # Setting the same rating twice leaves it as once: safe to retry.
    json = body(rating=rating, comment=comment)
    return Call("PATCH", f"/v1/queries/{segment(query_id)}/rating", model(RatingResult), json=json)


def popular_call(period_days: Optional[int], limit: Optional[int]) -> Call[PopularReport]:
    params = {"period_days": period_days, "limit": limit}
    return Call("GET", "/v1/analytics/popular", model(PopularReport), params=params)


def usage_call(period_days: Optional[int]) -> Call[UsageReport]:
    return Call("GET", "/v1/analytics/usage", model(UsageReport), params={"period_days": period_days})


def health_call() -> Call[Health]:
    return Call("GET", "/health", model(Health), authenticated=False)


def detailed_health_call() -> Call[DetailedHealth]:
    # 503 is this route's answer when a dependency is down (its body says which), not an error to raise.
    return Call("GET", "/health/detailed", model(DetailedHealth), accept=frozenset({503}))


class Queries:
    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def history(
        self, *, limit: Optional[int] = None, offset: Optional[int] = None, include_answer: Optional[bool] = None
    ) -> HistoryPage:
        """Answered questions, newest first (``offset`` pages through them; ``total`` counts them all)."""
        return self._t.request(history_call(limit, offset, include_answer))

    def get(self, query_id: str) -> QueryDetail:
        return self._t.request(get_call(query_id))

    def delete(self, query_id: str) -> QueryDeleted:
        return self._t.request(delete_call(query_id))

    def rate(self, query_id: str, rating: int, *, comment: Optional[str] = None) -> RatingResult:
        """Rate an answer from 1 to 5 (a new rating replaces the previous one)."""
        return self._t.request(rate_call(query_id, rating, comment))


class AsyncQueries:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def history(
        self, *, limit: Optional[int] = None, offset: Optional[int] = None, include_answer: Optional[bool] = None
    ) -> HistoryPage:
        return await self._t.request(history_call(limit, offset, include_answer))

    async def get(self, query_id: str) -> QueryDetail:
        return await self._t.request(get_call(query_id))

    async def delete(self, query_id: str) -> QueryDeleted:
        return await self._t.request(delete_call(query_id))

    async def rate(self, query_id: str, rating: int, *, comment: Optional[str] = None) -> RatingResult:
        return await self._t.request(rate_call(query_id, rating, comment))


class Analytics:
    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def popular(self, *, period_days: Optional[int] = None, limit: Optional[int] = None) -> PopularReport:
        return self._t.request(popular_call(period_days, limit))

    def usage(self, *, period_days: Optional[int] = None) -> UsageReport:
        return self._t.request(usage_call(period_days))


class AsyncAnalytics:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def popular(self, *, period_days: Optional[int] = None, limit: Optional[int] = None) -> PopularReport:
        return await self._t.request(popular_call(period_days, limit))

    async def usage(self, *, period_days: Optional[int] = None) -> UsageReport:
        return await self._t.request(usage_call(period_days))


class HealthChecks:
    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def check(self) -> Health:
        """``GET /health``: is the server up (no key needed)."""
        return self._t.request(health_call())

    def detailed(self) -> DetailedHealth:
        """Every dependency's state (admin scope); ``status`` is ``unhealthy`` when one is down."""
        return self._t.request(detailed_health_call())


class AsyncHealthChecks:
    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def check(self) -> Health:
        return await self._t.request(health_call())

    async def detailed(self) -> DetailedHealth:
        return await self._t.request(detailed_health_call())
