"""Who is calling, and may they: the key (or the API Gateway authorizer that checked it) decides
the tenant; the route decides the scope (``require`` in ragline.api.dependencies).

Two modes (``RAGLINE_AUTH_MODE``):
- ``key`` (local, emulated): the x-api-key header is looked up in the metadata store here.
- ``authorizer`` (deployed): API Gateway's Lambda authorizer has already checked the key and
  passes ``tenant_id``, ``scopes`` (comma-joined) and ``key_id`` in its context. Under Mangum the
  context is in the Lambda event (``scope["aws.event"]["requestContext"]["authorizer"]``); under
  the Lambda Web Adapter it arrives as the JSON header ``x-amzn-request-context``. No context
  means the request did not come through the authorizer: 401, never a fall-through.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.security import APIKeyHeader

from ragline.api.activity import note_principal
from ragline.errors import BadRequest, Unauthorized
from ragline.keys import authenticate
from ragline.models import Principal, Scope

if TYPE_CHECKING:
    from ragline.container import Container

api_key_header = APIKeyHeader(name="x-api-key", auto_error=False, description="Your Ragline API key")

# Set by the Lambda Web Adapter from the API Gateway event (the app listens on localhost only).
LWA_CONTEXT_HEADER = "x-amzn-request-context"


def _authorizer_context(request: Request) -> Mapping[str, Any] | None:
    event = request.scope.get("aws.event")
    if isinstance(event, Mapping):
        context = (event.get("requestContext") or {}).get("authorizer")
        return context if isinstance(context, Mapping) else None
    raw = request.headers.get(LWA_CONTEXT_HEADER)
    if not raw:
        return None
    try:
        request_context = json.loads(raw)
    except json.JSONDecodeError:
        return None
    context = request_context.get("authorizer") if isinstance(request_context, Mapping) else None
    return context if isinstance(context, Mapping) else None


def principal_from_authorizer(context: Mapping[str, Any] | None) -> Principal:
    """The Principal the authorizer vouched for (its context values are all strings)."""
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


def current_principal(container: Container, request: Request, key: str | None) -> Principal:
    if len(request.headers.getlist("x-api-key")) > 1:  # which one counts would be anyone's guess
        raise BadRequest("send one x-api-key header, not several", error="Duplicate API key header")
    if container.settings.auth_mode == "authorizer":
        principal = principal_from_authorizer(_authorizer_context(request))
    else:
        principal = authenticate(container.store, key)
    note_principal(request, principal)  # the request is the key's from here on, whatever its answer
    return principal
