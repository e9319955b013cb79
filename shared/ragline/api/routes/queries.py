"""History, ratings, analytics and document statistics: what was asked and how well it was answered.

History and ratings take the ``chat`` scope (those who ask), analytics and document statistics
the scope of what they describe (``chat`` for questions, ``ingest`` for documents, as for reading
a document). All of it is the tenant's, whichever of its keys asked.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ragline.api.dependencies import ChatPrincipal, IngestPrincipal, IngestServiceDep, InsightDep
from ragline.api.errors import AUTHENTICATED, WITH_BODY, error_responses
from ragline.insight.models import (
    DocumentStats,
    HistoryPage,
    PopularAnswer,
    QueryDeleted,
    QueryDetail,
    RatingRequest,
    RatingResponse,
    UsageAnswer,
)

MAX_PERIOD_DAYS = 365
MAX_OFFSET = 1_000_000  # past any history a retention keeps; bigger numbers would overflow SQLite's integers

router = APIRouter(tags=["history and analytics"], responses=error_responses(*AUTHENTICATED))


@router.get(
    "/v1/queries/history",
    summary="The tenant's answered questions, newest first (answers only with include_answer=true)",
    response_model=HistoryPage,
    response_model_exclude_unset=True,  # `answer` is absent, not null, without include_answer
)
def history(
    principal: ChatPrincipal,
    insight: InsightDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    include_answer: bool = False,
) -> Any:
    return insight.history(principal.tenant_id, limit=limit, offset=offset, include_answer=include_answer)


@router.get(
    "/v1/queries/{query_id}",
    summary="One answered question",
    response_model=QueryDetail,
    response_model_exclude_unset=True,  # `answer` is absent, not null, when answers are not stored
    responses=error_responses(404),
)
def get_query(query_id: str, principal: ChatPrincipal, insight: InsightDep) -> dict[str, Any]:
    return insight.query(principal.tenant_id, query_id).detail()


@router.delete(
    "/v1/queries/{query_id}",
    status_code=200,
    summary="Remove a question from the history",
    response_model=QueryDeleted,
    responses=error_responses(404),
)
def delete_query(query_id: str, principal: ChatPrincipal, insight: InsightDep) -> dict[str, Any]:
    insight.delete(principal.tenant_id, query_id)
    return {"status": "success", "data": {"query_id": query_id}}


@router.patch(
    "/v1/queries/{query_id}/rating",
    summary="Rate an answer from 1 to 5",
    response_model=RatingResponse,
    responses=error_responses(*WITH_BODY, 404),
)
def rate_query(query_id: str, body: RatingRequest, principal: ChatPrincipal, insight: InsightDep) -> Any:
    return insight.rate(principal.tenant_id, query_id, body.rating, body.comment)


@router.get(
    "/v1/analytics/popular", summary="The most asked questions and most cited documents", response_model=PopularAnswer
)
def popular(
    principal: ChatPrincipal,
    insight: InsightDep,
    period_days: Annotated[int, Query(ge=1, le=MAX_PERIOD_DAYS)] = 30,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> Any:
    return insight.popular(principal.tenant_id, period_days=period_days, limit=limit)


@router.get(
    "/v1/analytics/usage",
    summary="Questions per day, latency, ratings and the share of unanswered questions",
    response_model=UsageAnswer,
)
def usage(
    principal: ChatPrincipal,
    insight: InsightDep,
    period_days: Annotated[int, Query(ge=1, le=MAX_PERIOD_DAYS)] = 30,
) -> Any:
    return insight.usage(principal.tenant_id, period_days=period_days)


def _stats(document_id: str, principal: IngestPrincipal, ingest: IngestServiceDep, insight: InsightDep) -> Any:
    return insight.document_stats(ingest.document(principal.tenant_id, document_id))


router.add_api_route(
    "/v1/documents/{document_id}/stats",
    _stats,
    methods=["GET"],
    summary="A document's statistics: size, chunks, sections, processing time, how often answers cite it",
    response_model=DocumentStats,
    responses=error_responses(404),
)
router.add_api_route(
    "/v1/kb/documents/{document_id}/stats",
    _stats,
    methods=["GET"],
    summary="A document's statistics (the same as /v1/documents/{document_id}/stats)",
    response_model=DocumentStats,
    responses=error_responses(404),
    operation_id="document_stats_kb",
)
