"""x-api-key authentication: the key decides the tenant; the route decides the scope."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from ragline.errors import Forbidden
from ragline.keys import authenticate
from ragline.models import Principal, Scope

api_key_header = APIKeyHeader(name="x-api-key", auto_error=False, description="Your Ragline API key")


def require(scope: Scope) -> Callable[..., Principal]:
    def dependency(request: Request, key: str | None = Depends(api_key_header)) -> Principal:
        principal = authenticate(request.app.state.container.store, key)
        if not principal.can(scope):
            raise Forbidden(f"this API key lacks the {scope.value!r} scope", error="Insufficient scope")
        return principal

    return dependency
