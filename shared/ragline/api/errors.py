"""One error body everywhere: {"error", "message", "code"} (+ details on 422, retry_after on 429)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragline.errors import RaglineError, invalid_input

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """Every error's body (``details`` on a 422 from validation or a refused batch, ``retry_after`` on a 429)."""

    error: str
    message: str
    code: int
    # A list of field errors on a 422; an object on a batch upload's refusal ({"documents": [...]}).
    details: list[dict[str, Any]] | dict[str, Any] | None = None
    retry_after: int | None = None  # seconds, as in the Retry-After header


_MEANINGS = {
    400: "Bad input (malformed JSON, an invalid filter or metadata, a repeated x-api-key header)",
    401: "No API key, or an unknown, expired or revoked one",
    403: "The key lacks the scope, or names another tenant",
    404: "No such item for this tenant",
    408: "The request body stopped arriving",
    409: "Conflict with the item's current state",
    413: "Too large (the body, a file or metadata)",
    415: "A file type Ragline cannot ingest",
    422: "A value outside what the schema allows",
    429: "This tenant has too many searches, chats or uploads running: retry after Retry-After seconds",
    503: "A dependency (database, object store, queue, model) is down",
}
# What any route behind an API key may answer: bad headers, the key and its scope, validation, an outage.
AUTHENTICATED = (400, 401, 403, 422, 503)
# What a route that reads a request body may answer besides.
WITH_BODY = (408, 413)
# What a route under per-tenant admission control (ragline.api.admission) may answer besides.
LIMITED = (429,)


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, all with the one error body."""
    return {code: _response(code) for code in codes}


def _response(code: int) -> dict[str, Any]:
    response: dict[str, Any] = {"model": ErrorBody, "description": _MEANINGS[code]}
    if code == 429:
        response["headers"] = {
            "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
        }
    return response


def error_response(status: int, error: str, message: str, details: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"error": error, "message": message, "code": status}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RaglineError)
    async def _ragline(_: Request, exc: RaglineError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        error = invalid_input(list(exc.errors()))
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, RaglineError):  # a domain error raised where only HTTPException passes
            return JSONResponse(exc.__cause__.body(), status_code=exc.__cause__.status)
        names = {404: "Not found", 405: "Method not allowed"}
        return error_response(exc.status_code, names.get(exc.status_code, "HTTP error"), str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "Internal error", "something went wrong on our side; it has been logged")
