"""docs/API.md is the reference a user's clone carries: it must name exactly the routes the app serves,
and none it lists as not built yet may exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ragline.api.app import create_app
from ragline.config import Settings
from ragline.container import Container

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "API.md"
ROUTE_ROW = re.compile(r"^\| `(GET|POST|PUT|PATCH|DELETE)` \| `([^`]+)` \|", re.MULTILINE)


def _normalise(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)  # parameter names may differ: /documents/{id} vs {document_id}


def _documented() -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    text = REFERENCE.read_text()
    built, _, planned = text.partition("## Not built yet")
    rows = [(ROUTE_ROW.findall(part)) for part in (built, planned)]
    return tuple({(method, _normalise(path)) for method, path in part} for part in rows)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"))
    spec = create_app(Container(settings)).openapi()
    return {(method.upper(), _normalise(path)) for path, ops in spec["paths"].items() for method in ops}


def test_the_reference_lists_every_served_route_and_no_other(served: set[tuple[str, str]]) -> None:
    built, _ = _documented()
    assert served - built == set(), "served but not in docs/API.md"
    assert built - served == set(), "in docs/API.md but not served"


def test_routes_listed_as_not_built_are_not_served(served: set[tuple[str, str]]) -> None:
    _, planned = _documented()
    if "## Not built yet" in REFERENCE.read_text():  # every planned route may be built: then it is gone
        assert planned, "the 'Not built yet' table is empty or its rows lost their format"
    assert planned & served == set(), "built now: move these rows out of 'Not built yet'"
