"""shared/ragline is what ships: CoreLayer copies it and nothing else, so it must not need the checkout.

It does not read the checkout by path (functions/, template.yaml, tests/), never imports the tests,
and reaches the checkout's tooling (ragline_bench, ragline_emulator) only lazily, from the CLI, which
says in one line what is missing when a deployment does not have it.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from importlib.abc import MetaPathFinder
from pathlib import Path

import pytest

from ragline.cli import main
from tests.support import REPO

LIBRARY = REPO / "shared" / "ragline"
TOOLING = ("ragline_bench", "ragline_emulator")
CHECKOUT_PATHS = ("functions", "template.yaml", "tests")


def library_sources() -> list[Path]:
    sources = sorted(LIBRARY.rglob("*.py"))
    assert len(sources) > 40, f"found only {len(sources)} modules under {LIBRARY}"
    return sources


def imports(node: ast.AST, *, module_level: bool) -> Iterator[str]:
    """The modules a tree imports; with module_level, only those imported when the module is (not in functions)."""
    for child in ast.iter_child_nodes(node):
        if module_level and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(child, ast.Import):
            yield from (alias.name for alias in child.names)
        elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
            yield child.module
        yield from imports(child, module_level=module_level)


def top_package(module: str) -> str:
    return module.partition(".")[0]


def test_the_library_never_imports_the_tests() -> None:
    found = {
        f"{path.relative_to(REPO)}: {module}"
        for path in library_sources()
        for module in imports(ast.parse(path.read_text()), module_level=False)
        if top_package(module) == "tests"
    }
    assert not found


def test_the_library_imports_no_tooling_when_it_is_imported() -> None:
    found = {
        f"{path.relative_to(REPO)}: {module}"
        for path in library_sources()
        for module in imports(ast.parse(path.read_text()), module_level=True)
        if top_package(module) in TOOLING
    }
    assert not found


def test_the_library_does_not_find_files_by_path_from_itself() -> None:
    """Its own files are package data (importlib.resources); anything found from __file__ is the checkout's."""
    found = {
        f"{path.relative_to(REPO)}:{node.lineno}"
        for path in library_sources()
        for node in ast.walk(ast.parse(path.read_text()))
        if (isinstance(node, ast.Name) and node.id == "__file__")
        or (isinstance(node, ast.Attribute) and node.attr == "__file__")
    }
    assert not found


def test_the_library_names_no_checkout_path() -> None:
    pattern = re.compile(rf"^({'|'.join(map(re.escape, CHECKOUT_PATHS))})(/|$)")
    found = {
        f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}"
        for path in library_sources()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and pattern.match(node.value)
    }
    assert not found


def test_core_layer_copies_only_the_library() -> None:
    makefiles = sorted((REPO / "infra" / "layers").glob("*/Makefile"))
    assert [path.parent.name for path in makefiles] == ["core", "embedding"]
    copied = [
        source
        for makefile in makefiles
        for line in makefile.read_text().splitlines()
        for source in re.findall(r"\$\(REPO_ROOT\)/(\S+)", line)
    ]
    assert copied == ["shared/ragline"]
    # ...whole: nothing in it is tooling that the build would have to cut out again.
    assert "$(TARGET)/ragline/" not in (REPO / "infra" / "layers" / "core" / "Makefile").read_text()


class _Absent(MetaPathFinder):
    """Imports of the tooling packages fail as they do where they are not installed."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if top_package(name) in TOOLING:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


@pytest.fixture
def without_tooling(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in sys.modules if top_package(name) in TOOLING]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_Absent(), *sys.meta_path])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "ingest", "--repeats", "1"], "ragline bench needs the ragline_bench package"),
        (["bench"], "ragline bench needs the ragline_bench package"),
        (["serve", "--backend", "aws"], "ragline serve --backend aws needs the ragline_emulator package"),
    ],
)
@pytest.mark.usefixtures("without_tooling")
def test_without_the_tooling_the_cli_says_what_is_missing_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert "ModuleNotFoundError" not in err
