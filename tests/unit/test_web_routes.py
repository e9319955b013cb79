"""The page at GET / and the offline /docs and /redoc: what is served, how, and by whom (in process).

The browser test (tests/browser/test_web_page.py) drives the page itself in Chromium.
"""

from __future__ import annotations

import re
from importlib.resources import files

import pytest
from fastapi.testclient import TestClient

from ragline.api.app import create_app
from ragline.config import Settings
from ragline.container import Container

WEB = files("ragline") / "assets" / "web"
PAGE_FILES = sorted(f.name for f in WEB.iterdir() if f.is_file())
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = create_app(Container(Settings(data_dir=tmp_path_factory.mktemp("web"))))
    with TestClient(app) as test_client:
        yield test_client


def test_the_page_is_served_at_the_root(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text == (WEB / "index.html").read_text()
    assert response.headers["cache-control"] == "no-cache"
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_head_of_the_page_answers_like_get(client):
    response = client.head("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["etag"] == client.get("/").headers["etag"]


def test_an_unchanged_file_is_answered_304(client):
    etag = client.get("/web/main.js").headers["etag"]
    response = client.get("/web/main.js", headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.content == b""
    assert client.get("/web/main.js", headers={"If-None-Match": '"stale"'}).status_code == 200


@pytest.mark.parametrize("name", PAGE_FILES)
def test_each_page_file_has_its_content_type(client, name):
    response = client.get(f"/web/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == MEDIA_TYPES[name[name.rfind(".") :]]
    assert response.content == (WEB / name).read_bytes()


def test_every_file_the_page_references_exists(client):
    """index.html's links and scripts and every module's imports resolve to files the server has."""
    referenced = set(re.findall(r'(?:src|href)="web/([^"]+)"', client.get("/").text))
    for name in PAGE_FILES:
        if name.endswith(".js"):
            referenced |= set(re.findall(r'from "\./([^"]+)"', (WEB / name).read_text()))
    assert {"main.js", "style.css", "api.js"} <= referenced
    for name in referenced:
        assert client.get(f"/web/{name}").status_code == 200, name


def test_the_page_never_parses_server_text_as_html():
    sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function")
    for name in PAGE_FILES:
        if name.endswith(".js"):
            assert not sinks.search((WEB / name).read_text()), name


@pytest.mark.parametrize("path", ["/web/missing.js", "/web/.hidden", "/docs/assets/missing.js"])
def test_an_unknown_asset_is_a_404_with_the_error_body(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.json() == {
        "error": "Asset not found",
        "message": f"no asset named {path.rsplit('/', 1)[1]!r}",
        "code": 404,
    }


@pytest.mark.parametrize("path", ["/web/..%2Fapi%2Fapp.py", "/web/../ragline/api/app.py", "/web/sub/main.js"])
def test_no_path_leaves_the_page_folder(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert set(response.json()) == {"error", "message", "code"}


@pytest.mark.parametrize(
    ("path", "assets"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}),
        ("/redoc", {"redoc.standalone.js", "favicon.png"}),
    ],
)
def test_the_api_docs_load_only_local_assets(client, path, assets):
    response = client.get(path)
    assert response.status_code == 200
    html = response.text
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert {url.split("?")[0].rsplit("/", 1)[1] for url in urls} == assets
    assert all(url.startswith("/docs/assets/") for url in urls), urls
    assert "/openapi.json" in html
    # The browser itself refuses anything from elsewhere (ReDoc's side menu links a logo from its CDN).
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert "https:" not in response.headers["content-security-policy"]
    assert "fonts.googleapis" not in html and "cdn." not in html
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"  # the URL names its version


def test_swagger_ui_sends_the_schema_to_no_validator(client):
    assert '"validatorUrl": null' in client.get("/docs").text


def test_a_docs_asset_without_its_version_is_revalidated(client):
    response = client.get("/docs/assets/swagger-ui.css")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/css; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert client.get("/docs/assets/swagger-ui.css?v=old").headers["cache-control"] == "no-cache"


def test_pages_are_not_in_the_openapi(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith(("/web", "/docs", "/redoc"))]


def test_lambda_functions_serve_no_pages(tmp_path):
    """A function's router set leaves the pages out (their assets are not in the Lambda layers)."""
    app = create_app(Container(Settings(data_dir=tmp_path)), routers=("search", "health"))
    with TestClient(app) as test_client:
        for path in ("/", "/docs", "/redoc", "/web/main.js"):
            response = test_client.get(path)
            assert response.status_code == 404, path
            assert response.json()["code"] == 404
