"""/docs (Swagger UI) and /redoc for the served OpenAPI, with their scripts and styles served by Ragline
from the fastapi-offline package: they work with no network, and no request leaves the host."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

from ragline.api.static_assets import AssetFolder

ASSETS_PATH = "/docs/assets"
# The package's files change only with its version, and their URLs carry a content hash (?v=).
ASSETS = AssetFolder(
    files("fastapi_offline") / "static",
    versioned_cache_control="public, max-age=31536000, immutable",
    headers={"X-Content-Type-Options": "nosniff"},
)

# Enforced by the browser: nothing but this server, whatever the bundles would fetch (ReDoc's side menu shows
# a logo from cdn.redoc.ly). FastAPI's page starts Swagger UI with an inline script; both inject inline styles,
# and ReDoc runs its search in a worker made from a blob.
DOCS_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(tags=["docs"], include_in_schema=False)


def _asset(request: Request, name: str) -> str:
    return ASSETS.url(request.scope.get("root_path", "") + ASSETS_PATH, name)


def _openapi_url(request: Request) -> str:
    return request.scope.get("root_path", "") + request.app.openapi_url


@router.api_route("/docs", methods=["GET", "HEAD"])
def swagger_ui(request: Request) -> Response:
    page = get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} API",
        swagger_js_url=_asset(request, "swagger-ui-bundle.js"),
        swagger_css_url=_asset(request, "swagger-ui.css"),
        swagger_favicon_url=_asset(request, "favicon.png"),
        # Swagger UI's default validatorUrl sends the schema to validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )
    page.headers.update(DOCS_HEADERS)
    return page


@router.api_route("/redoc", methods=["GET", "HEAD"])
def redoc(request: Request) -> Response:
    page = get_redoc_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} API",
        redoc_js_url=_asset(request, "redoc.standalone.js"),
        redoc_favicon_url=_asset(request, "favicon.png"),
        with_google_fonts=False,
    )
    page.headers.update(DOCS_HEADERS)
    return page


@router.api_route(ASSETS_PATH + "/{name}", methods=["GET", "HEAD"])
def docs_asset(name: str, request: Request) -> Response:
    return ASSETS.response(name, request)
