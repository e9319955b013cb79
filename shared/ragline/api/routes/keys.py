"""Keys: a tenant's API keys (admin scope): create, list, get, rotate, revoke, and what each did."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from ragline.activity import MAX_PERIOD_DAYS, KeyUsage
from ragline.api.dependencies import AdminPrincipal, KeyServiceDep, UsageDep
from ragline.api.errors import AUTHENTICATED, WITH_BODY, error_responses
from ragline.keys import CreateKeyRequest, KeyCreated, KeyList, KeyOut, RotateKeyRequest

router = APIRouter(prefix="/v1/keys", tags=["keys"], responses=error_responses(*AUTHENTICATED))


@router.post(
    "",
    status_code=201,
    summary="Create a key (its secret is shown only in this answer)",
    response_model=KeyCreated,
    responses=error_responses(*WITH_BODY),
)
def create_key(body: CreateKeyRequest, principal: AdminPrincipal, keys: KeyServiceDep) -> Any:
    secret, key = keys.create(principal.tenant_id, body, caller=principal)
    return {**keys.public(key), "key": secret}


@router.get("", summary="List the tenant's keys", response_model=KeyList)
def list_keys(
    principal: AdminPrincipal,
    keys: KeyServiceDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> Any:
    page, next_cursor = keys.list(principal.tenant_id, limit=limit, cursor=cursor)
    return {"keys": keys.public_many(page), "next_cursor": next_cursor}


@router.get("/{key_id}", summary="Get a key", response_model=KeyOut, responses=error_responses(404))
def get_key(key_id: str, principal: AdminPrincipal, keys: KeyServiceDep) -> Any:
    return keys.public(keys.get(principal.tenant_id, key_id))


@router.post(
    "/{key_id}/rotate",
    summary="Rotate a key: a new secret now, the old one works until the grace period ends",
    response_model=KeyCreated,
    responses=error_responses(*WITH_BODY, 404, 409),
)
def rotate_key(
    key_id: str, principal: AdminPrincipal, keys: KeyServiceDep, body: RotateKeyRequest | None = None
) -> Any:
    grace = (body or RotateKeyRequest()).grace_period_hours
    secret, key = keys.rotate(principal.tenant_id, key_id, grace, caller=principal)
    return {**keys.public(key), "key": secret}


@router.delete(
    "/{key_id}", status_code=204, summary="Revoke a key (refused from its next request)", responses=error_responses(404)
)
def revoke_key(key_id: str, principal: AdminPrincipal, keys: KeyServiceDep) -> Response:
    keys.revoke(principal.tenant_id, key_id)
    return Response(status_code=204)


@router.get(
    "/{key_id}/usage",
    summary="What a key did: requests, errors, routes, client IPs, chat tokens",
    response_model=KeyUsage,
    responses=error_responses(404),
)
def key_usage(
    key_id: str,
    principal: AdminPrincipal,
    keys: KeyServiceDep,
    usage: UsageDep,
    period_days: Annotated[int, Query(ge=1, le=MAX_PERIOD_DAYS)] = 30,
) -> Any:
    key = keys.get(principal.tenant_id, key_id)
    return usage.usage(key.id, period_days)
