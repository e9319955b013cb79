"""The audit log (admin scope): read only, newest first. No route changes or removes an entry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ragline.activity import AuditPage
from ragline.api.dependencies import AdminPrincipal, AuditDep
from ragline.api.errors import AUTHENTICATED, error_responses

router = APIRouter(prefix="/v1/audit", tags=["keys"], responses=error_responses(*AUTHENTICATED))


@router.get("", summary="Key and webhook administration, and every delete, newest first", response_model=AuditPage)
def list_audit(
    principal: AdminPrincipal,
    audit: AuditDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: str | None = None,
) -> Any:
    events, next_cursor = audit.page(principal.tenant_id, limit=limit, cursor=cursor)
    return {"events": [event.public() for event in events], "next_cursor": next_cursor}
