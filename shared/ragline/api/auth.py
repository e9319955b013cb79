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

from fastapi.security import APIKeyHeader
from starlette.requests import HTTPConnection

from ragline.api.activity import note_principal
from ragline.errors import BadRequest
from ragline.keys import authenticate, principal_from_authorizer
from ragline.models import Principal

if TYPE_CHECKING:
    from ragline.container import Container

api_key_header = APIKeyHeader(name="x-api-key", auto_error=False, description="Your Ragline API key")

# Set by the Lambda Web Adapter from the API Gateway event (the app listens on localhost only).
LWA_CONTEXT_HEADER = "x-amzn-request-context"


def _authorizer_context(request: HTTPConnection) -> Mapping[str, Any] | None:
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


def current_principal(container: Container, request: HTTPConnection, key: str | None) -> Principal:
    if len(request.headers.getlist("x-api-key")) > 1:  # which one counts would be anyone's guess
        raise BadRequest("send one x-api-key header, not several", error="Duplicate API key header")
    if container.settings.auth_mode == "authorizer":
        principal = principal_from_authorizer(_authorizer_context(request))
    else:
        principal = authenticate(container.store, key)
    note_principal(request, principal)  # the request is the key's from here on, whatever its answer
    return principal
