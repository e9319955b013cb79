"""/docs (Swagger UI) and /redoc render in headless Chromium with every request off 127.0.0.1 aborted:
their scripts, styles and fonts all come from `ragline serve` itself.

The pages' Content-Security-Policy also keeps the browser on this server; what it refused is checked too
(ReDoc's side menu links a logo from cdn.redoc.ly, which the policy refuses and ReDoc then leaves out).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.support import Server

pytestmark = pytest.mark.timeout(180)


REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@dataclass
class Watched:
    """What a page's loading went through: failed requests and the Content-Security-Policy's refusals."""

    failed: list[tuple[str, str]] = field(default_factory=list)  # (url, Chromium's reason)
    refused: list[str] = field(default_factory=list)


def watch(page) -> Watched:
    watched = Watched()
    page.on("requestfailed", lambda request: watched.failed.append((request.url, request.failure or "")))
    page.on(
        "console",
        lambda message: watched.refused.append(message.text) if "Content Security Policy" in message.text else None,
    )
    return watched


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("api-docs")).start()
    yield server
    server.stop()


def test_swagger_ui_renders_every_operation_offline(offline, server: Server, screenshot) -> None:
    browser = offline(viewport={"width": 1280, "height": 900})
    page = browser.context.new_page()
    watched = watch(page)
    page.goto(f"{server.url}/docs")

    operations = page.locator(".opblock")
    operations.first.wait_for(timeout=30_000)
    schema = page.request.get(f"{server.url}/openapi.json").json()
    expected = sum(1 for methods in schema["paths"].values() for method in methods)
    assert operations.count() == expected
    search = page.locator(".opblock-post", has=page.locator("[data-path='/v1/kb/search']"))
    assert search.locator(".opblock-summary-description").inner_text() == "Search the knowledge base"
    assert page.locator(".swagger-ui .info .title").inner_text().startswith("Ragline")
    screenshot(page, "docs-swagger-ui", full_page=False)

    assert browser.blocked == [], "Swagger UI tried to reach another host"
    assert watched.failed == []
    assert watched.refused == []
    assert browser.page_errors == []


def test_redoc_renders_offline(offline, server: Server, screenshot) -> None:
    browser = offline(viewport={"width": 1280, "height": 900})
    page = browser.context.new_page()
    watched = watch(page)
    page.goto(f"{server.url}/redoc")

    page.locator("h1", has_text="Ragline").wait_for(timeout=30_000)
    page.get_by_role("heading", name="Search the knowledge base").first.wait_for()
    assert page.locator("[role=menuitem]").count() > 20  # the side menu lists the operations
    screenshot(page, "docs-redoc", full_page=False)

    assert browser.blocked == [], "ReDoc tried to reach another host"
    # The logo, refused by the policy before any connection (so the route above never saw it), and nothing else.
    assert watched.failed == [(REDOC_LOGO, "csp")]
    assert len(watched.refused) == 1 and REDOC_LOGO in watched.refused[0], watched.refused
    assert browser.page_errors == []
