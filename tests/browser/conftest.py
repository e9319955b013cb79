"""Headless Chromium for the browser tests: Debian's chromium driven by Playwright's Python package.

Every page runs with the network cut to 127.0.0.1 (a request anywhere else is aborted and recorded), so
a page that needs a CDN or a web font fails its test. Screenshots go to $RAGLINE_SCREENSHOT_DIR, else
tests/browser/screenshots/; the run's summary prints where.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
# Root in a container needs --no-sandbox; the background-networking flags stop Chromium calling home
# (those connections are refused here, and would be requests leaving the host).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1"}
SCREENSHOTS = Path(os.environ.get("RAGLINE_SCREENSHOT_DIR") or Path(__file__).parent / "screenshots").resolve()
_saved: list[Path] = []


# Package scope, not session: while Playwright's sync API is started, this thread counts as running an
# event loop, and every later test that runs one (Mangum, the async SDK) would fail with "already running".
@pytest.fixture(scope="package")
def browser() -> Iterator:
    executable = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if executable is None:
        pytest.fail(f"Chromium is not installed ({CHROMIUM}): `make browser` installs Debian's chromium", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Offline:
    """A browser context whose requests may only go to 127.0.0.1; the others, aborted, are listed here."""

    context: object
    blocked: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)


@pytest.fixture
def offline(browser) -> Iterator:
    """A factory of offline contexts (viewport and other new_context options as arguments), closed after the test."""
    made: list[Offline] = []

    def make(**options) -> Offline:
        context = browser.new_context(**options)
        offline = Offline(context)

        def guard(route) -> None:
            url = route.request.url
            if urlsplit(url).hostname in LOCAL_HOSTS or url.startswith(("data:", "blob:")):
                route.continue_()
            else:
                offline.blocked.append(url)
                route.abort("blockedbyclient")

        context.route("**/*", guard)
        context.on("weberror", lambda error: offline.page_errors.append(str(error.error)))
        made.append(offline)
        return offline

    yield make
    for offline in made:
        offline.context.close()


@pytest.fixture
def screenshot():
    """Saves a page's screenshot as NAME.png in the screenshot folder; returns its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def save(page, name: str, *, full_page: bool = True) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        _saved.append(path)
        return path

    return save


def pytest_terminal_summary(terminalreporter) -> None:
    if _saved:
        terminalreporter.write_line(f"browser screenshots ({len(_saved)}): {SCREENSHOTS}")
