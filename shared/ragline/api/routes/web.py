"""The page to try Ragline in a browser: GET / and its files under /web/ (served by `ragline serve`).

The page is plain ES modules calling the public API with the key the user pastes (ragline/assets/web);
nothing here knows about tenants or keys. Outside the OpenAPI: it is for people, not for clients.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, Request, Response

from ragline.api.static_assets import AssetFolder

# The page loads nothing but its own files and talks to this server only; no inline script or style.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# No build step, so no hashed file names: the browser revalidates each file (a 304 while unchanged).
PAGE = AssetFolder(files("ragline") / "assets" / "web", cache_control="no-cache", headers=PAGE_HEADERS)

router = APIRouter(tags=["web"], include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
def page(request: Request) -> Response:
    return PAGE.response("index.html", request)


@router.api_route("/web/{name}", methods=["GET", "HEAD"])
def page_file(name: str, request: Request) -> Response:
    return PAGE.response(name, request)
